/**
 * The process the operator's commands (exec checks, notifyUp/notifyDown, quorumUp/quorumDown)
 * are started from, instead of tunvs itself. A fork copies the forking process's page
 * tables, write-protects its private memory (the forwarders' heaps fault page by page after
 * each one) and holds the forking thread until the child has exec'd: from tunvs's main
 * thread that measured 9–20 ms a command, up to 95 ms on a loaded machine, with the admin
 * socket, HA sync and keepalived's check waiting meanwhile; fifty servers checked every two
 * seconds would have blocked it a quarter of the time. This small process pays that instead
 * (keepalived's checkers run in a child process of their own for the same reason).
 * command.ts starts it at the first command and talks to it:
 *
 *   stdin    one request per line (JSON, RunRequest): the program, its arguments, what to
 *            add to the environment, the user's ids, the timeout
 *   spawn    no shell, stdio ignored, in a process group of its own (detached)
 *   timeout  the end is reported at once; the group gets SIGTERM, and SIGKILL
 *            HEALTH_EXEC_KILL_GRACE_MS later (the leader's exit says nothing of the rest)
 *   stdout   one line per end (JSON, RunEnd): the exit status, or why there is none
 *   EOF      tunvs is gone (stopped, or killed: the pipe closes either way): every group still
 *            running gets SIGKILL, and this process exits
 */

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { HEALTH_EXEC_KILL_GRACE_MS } from '../../constants.js';
import { errorText } from './check.js';

export interface RunRequest {
  id: number;
  file: string;
  args: string[];
  env: Record<string, string>;
  uid?: number;
  gid?: number;
  timeoutMs: number;
}

export type RunEnd = { id: number; status: number } | { id: number; error: string };

/** Signal the process group `pid` leads; it may be gone already. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: every process of the group has exited.
  }
}

function serve(): void {
  const running = new Set<number>();
  const reply = (end: RunEnd): void => void process.stdout.write(`${JSON.stringify(end)}\n`);
  const run = (r: RunRequest): void => {
    const child = spawn(r.file, r.args, {
      stdio: 'ignore',
      detached: true,
      env: { ...process.env, ...r.env },
      ...(r.uid !== undefined && r.gid !== undefined ? { uid: r.uid, gid: r.gid } : {}),
    });
    const pid = child.pid;
    if (pid !== undefined) running.add(pid);
    let ended = false;
    const finish = (end: RunEnd): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      reply(end);
    };
    const timer = setTimeout(() => {
      finish({ id: r.id, error: `timed out after ${r.timeoutMs / 1000} s` });
      if (pid === undefined) return;
      signalGroup(pid, 'SIGTERM');
      setTimeout(() => signalGroup(pid, 'SIGKILL'), HEALTH_EXEC_KILL_GRACE_MS).unref();
    }, r.timeoutMs);
    child.once('error', (e) => finish({ id: r.id, error: errorText(e) }));
    child.once('exit', (code, signal) => {
      if (pid !== undefined) running.delete(pid);
      finish(code !== null ? { id: r.id, status: code } : { id: r.id, error: `killed by ${signal}` });
    });
  };
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let r: RunRequest;
    try {
      r = JSON.parse(line) as RunRequest;
    } catch {
      return; // not tunvs's: nothing to answer
    }
    try {
      run(r);
    } catch (e) {
      reply({ id: r.id, error: errorText(e as Error) });
    }
  });
  lines.on('close', () => {
    for (const pid of running) signalGroup(pid, 'SIGKILL');
    process.exit(0);
  });
}

serve();
