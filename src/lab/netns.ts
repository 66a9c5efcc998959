/**
 * Thin helpers over iproute2 for the lab and the namespace tests: run a command in a
 * namespace, start a long-running process there (recording its PID so that only it is ever
 * stopped), and tear down.
 */

import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

export function sh(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], input });
}

/** Run `args` inside namespace `ns` and return its stdout. */
export function inNs(ns: string, args: string[], timeoutMs = 30_000): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  });
}

/** Run `args` inside namespace `ns` without waiting: resolves with the exit code and the
 * output (stdout; stderr too when `withStderr`). */
export function runInNs(ns: string, args: string[], withStderr = false): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...args], {
      stdio: ['ignore', 'pipe', withStderr ? 'pipe' : 'ignore'],
    });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
}

/** Apply many `ip` commands at once (ip -batch), optionally inside a namespace. */
export function ipBatch(lines: string[], ns?: string): void {
  if (lines.length === 0) return;
  const args = ns ? ['-n', ns, '-batch', '-'] : ['-batch', '-'];
  execFileSync('ip', args, { input: `${lines.join('\n')}\n`, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function listNamespaces(): string[] {
  try {
    return sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n.length > 0);
  } catch {
    return [];
  }
}

/** Start a detached process in `ns`, output to `logFile`. Returns its PID. With `wrapper`
 * (a command that ends by exec'ing its arguments, e.g. `tunvs rs exec --cgroup P --`), that
 * runs first and `ip netns exec` under it, so the PID is still the process's own. */
export function spawnInNs(
  ns: string,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
  wrapper: string[] = [],
): number {
  const out = openSync(logFile, 'a');
  const command = [...wrapper, 'ip', 'netns', 'exec', ns, ...args];
  const child = spawn(command[0]!, command.slice(1), {
    detached: true,
    stdio: ['ignore', out, out],
    env,
  });
  closeSync(out);
  child.unref();
  if (child.pid === undefined) throw new Error(`could not start ${args.join(' ')} in ${ns}`);
  return child.pid;
}

/**
 * Whether `pid` still runs. A zombie (exited, not yet reaped) counts as gone: a lab started
 * by one command and stopped by another leaves its processes to PID 1, and where that is not
 * an init that reaps (a container's shell, some sandboxes) they stay zombies, so `lab down`
 * waited out every process's grace period and the failover demo timed a dead tunvs late.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const state = procStatFields(pid)?.[0];
  return state !== undefined && state !== 'Z'; // undefined: reaped meanwhile
}

/** The fields of /proc/PID/stat after the command name (its field 3, the state, first), or
 * undefined when there is no such process. The name may hold spaces and parentheses: it ends
 * at the last ")". */
export function procStatFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** Stop a process we started, by PID: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopPid(pid: number, graceMs = 3000): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
