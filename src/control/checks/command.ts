/**
 * Running an operator's command for the health checks: the exec check's (exec.ts) and the
 * notifications of a server going up or down (notifyUp, notifyDown) or a service's quorum.
 * No shell: the program and its arguments as given, `{address}` and `{port}` in them standing
 * for the server's, and TUNVS_CHECK_ADDRESS / _PORT / _SERVICE in the environment. It runs in
 * a process group of its own, as `user` when one is named; past its timeout the group gets
 * SIGTERM, then SIGKILL HEALTH_EXEC_KILL_GRACE_MS later (the leader's exit says nothing of the
 * rest of its group). The commands are started by a small process of their own
 * (command_runner.ts: why), which this starts at the first command, and again if it dies.
 */

import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { HEALTH_EXEC_KILL_GRACE_MS } from '../../constants.js';
import { systemUser } from '../../config/system_user.js';
import { distSrc } from '../../paths.js';
import type { CheckTarget } from './check.js';
import type { RunEnd, RunRequest } from './command_runner.js';

/** How a command ended: its exit status, or why it has none. */
export type CommandEnd = { status: number } | { error: string };

/** Past its timeout and the group's kill grace, a command's end is waited for this much
 * longer before the runner counts as stuck (its answer would come first) and is replaced. */
const RUNNER_SLACK_MS = 2000;

/** The runner process and the commands it has not answered yet. */
class Runner {
  private readonly child: ChildProcessByStdio<Writable, Readable, null>;
  private readonly waiting = new Map<number, { done: (end: CommandEnd) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  exited = false;

  constructor() {
    this.child = spawn(process.execPath, [join(distSrc(), 'control', 'checks', 'command_runner.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    // Neither the process nor its pipes keep tunvs alive; a command waited for does (its timer).
    this.child.unref();
    (this.child.stdin as Writable & { unref?: () => void }).unref?.();
    (this.child.stdout as Readable & { unref?: () => void }).unref?.();
    this.child.stdin.on('error', () => undefined); // it died: 'exit' answers for it
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let end: RunEnd;
      try {
        end = JSON.parse(line) as RunEnd;
      } catch {
        return; // not the runner's answer
      }
      const w = this.waiting.get(end.id);
      if (!w) return;
      this.waiting.delete(end.id);
      clearTimeout(w.timer);
      w.done('status' in end ? { status: end.status } : { error: end.error });
    });
    this.child.once('exit', (code, signal) => {
      this.exited = true;
      this.failAll(`the command runner exited (${code !== null ? `status ${code}` : signal})`);
    });
    this.child.once('error', (e) => {
      this.exited = true;
      this.failAll(`the command runner did not start: ${e.message}`);
    });
  }

  run(r: Omit<RunRequest, 'id'>): Promise<CommandEnd> {
    return new Promise((done) => {
      const id = this.nextId++;
      const timer = setTimeout(
        () => {
          // The runner answers a command's timeout itself: it is stuck. Its successor runs the
          // next command.
          this.waiting.delete(id);
          done({ error: `timed out after ${r.timeoutMs / 1000} s (the command runner did not answer)` });
          this.exited = true;
          this.child.kill('SIGKILL');
        },
        r.timeoutMs + HEALTH_EXEC_KILL_GRACE_MS + RUNNER_SLACK_MS,
      );
      this.waiting.set(id, { done, timer });
      this.child.stdin.write(`${JSON.stringify({ ...r, id })}\n`);
    });
  }

  private failAll(why: string): void {
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.done({ error: why });
    }
    this.waiting.clear();
  }
}

let runner: Runner | undefined;

export function runCommand(
  argv: readonly string[],
  t: CheckTarget,
  timeoutSec: number,
  userName: string | undefined,
  env: Record<string, string> = {},
): Promise<CommandEnd> {
  const [file, ...args] = argv.map((a) => a.replaceAll('{address}', t.address).replaceAll('{port}', String(t.port)));
  if (file === undefined) return Promise.resolve({ error: 'no command' });
  const user = userName !== undefined ? systemUser(userName) : undefined;
  if (userName !== undefined && !user) return Promise.resolve({ error: `no user ${userName}` });
  if (!runner || runner.exited) runner = new Runner();
  return runner.run({
    file,
    args,
    env: {
      TUNVS_CHECK_ADDRESS: t.address,
      TUNVS_CHECK_PORT: String(t.port),
      TUNVS_CHECK_SERVICE: t.service,
      ...env,
    },
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    timeoutMs: timeoutSec * 1000,
  });
}
