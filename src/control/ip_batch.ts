/**
 * Many `ip` commands in one process (`ip -force -batch -`), for the cluster watchdog
 * (ha/watchdog.ts, a small process of its own). Each execFileSync forks the caller whole:
 * ~10 ms for a small process, ~20–30 ms at the size of a session table of a million records
 * (page tables copied under fork), the calling thread blocked meanwhile; batched it is one
 * fork per batch. (tunvs itself changes its routes through rtnetlink, no fork:
 * control/system.ts, native/tun.c routeChange.)
 *
 *   add()   a command (ip's arguments without the family option: the address says it) and
 *           what to do with its outcome (undefined: it succeeded; else the error ip printed)
 *   run()   run every command in order, each whatever the others did (-force), then call
 *           each outcome in order
 */

import { execFileSync } from 'node:child_process';

type Outcome = (err: string | undefined) => void;

export class IpBatch {
  private readonly lines: string[] = [];
  private readonly outcomes: (Outcome | undefined)[] = [];

  /** `netns`: run in that network namespace (`ip -n`), else in tunvs's own. */
  constructor(private readonly netns?: string) {}

  get size(): number {
    return this.lines.length;
  }

  add(args: readonly string[], outcome?: Outcome): void {
    for (const a of args) {
      if (a === '' || /\s/.test(a)) throw new Error(`ip batch: argument ${JSON.stringify(a)} cannot be batched`);
    }
    this.lines.push(args.join(' '));
    this.outcomes.push(outcome);
  }

  run(): void {
    if (this.lines.length === 0) return;
    const input = `${this.lines.join('\n')}\n`;
    let failed = new Map<number, string>();
    try {
      execFileSync('ip', [...(this.netns === undefined ? [] : ['-n', this.netns]), '-force', '-batch', '-'], {
        input,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
    } catch (e) {
      const stderr = String((e as { stderr?: Buffer | string }).stderr ?? '');
      failed = failedLines(stderr);
      // ip did not run, or failed outside any command: every command failed with that.
      if (failed.size === 0) {
        const why = stderr.trim() || (e as Error).message;
        for (let i = 1; i <= this.lines.length; i++) failed.set(i, why);
      }
    }
    const outcomes = this.outcomes.splice(0);
    this.lines.length = 0;
    outcomes.forEach((o, i) => o?.(failed.get(i + 1)));
  }
}

/** ip's report of a batch: each failed command's messages, then `Command failed -:N`. */
export function failedLines(stderr: string): Map<number, string> {
  const failed = new Map<number, string>();
  let said: string[] = [];
  for (const line of stderr.split('\n')) {
    const m = /^Command failed -:(\d+)$/.exec(line.trim());
    if (m) {
      failed.set(Number(m[1]), said.join('; ') || 'failed');
      said = [];
    } else if (line.trim() !== '') {
      said.push(line.trim());
    }
  }
  return failed;
}
