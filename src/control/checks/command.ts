/**
 * Running an operator's command for the health checks: the exec check's (exec.ts) and the
 * notifications of a server going up or down (notifyUp, notifyDown). No shell: the program
 * and its arguments as given, `{address}` and `{port}` in them standing for the server's, and
 * TUNVS_CHECK_ADDRESS / _PORT / _SERVICE in the environment. It runs in a process group of
 * its own, as `user` when one is named; past its timeout the group gets SIGTERM, then SIGKILL
 * HEALTH_EXEC_KILL_GRACE_MS later (the leader's exit says nothing of the rest of its group).
 */

import { spawn } from 'node:child_process';
import { HEALTH_EXEC_KILL_GRACE_MS } from '../../constants.js';
import { systemUser } from '../../config/system_user.js';
import { errorText, type CheckTarget } from './check.js';

/** How a command ended: its exit status, or why it has none. */
export type CommandEnd = { status: number } | { error: string };

/** Signal the process group `pid` leads; it may be gone already. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: every process of the group has exited.
  }
}

export function runCommand(
  argv: readonly string[],
  t: CheckTarget,
  timeoutSec: number,
  userName: string | undefined,
  env: Record<string, string> = {},
): Promise<CommandEnd> {
  return new Promise((resolve) => {
    const [file, ...args] = argv.map((a) => a.replaceAll('{address}', t.address).replaceAll('{port}', String(t.port)));
    if (file === undefined) return resolve({ error: 'no command' });
    const user = userName !== undefined ? systemUser(userName) : undefined;
    if (userName !== undefined && !user) return resolve({ error: `no user ${userName}` });
    const child = spawn(file, args, {
      stdio: 'ignore',
      detached: true,
      env: {
        ...process.env,
        TUNVS_CHECK_ADDRESS: t.address,
        TUNVS_CHECK_PORT: String(t.port),
        TUNVS_CHECK_SERVICE: t.service,
        ...env,
      },
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
    });
    let ended = false;
    const finish = (r: CommandEnd): void => {
      if (ended) return;
      ended = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      const pid = child.pid;
      finish({ error: `timed out after ${timeoutSec} s` });
      if (pid === undefined) return;
      signalGroup(pid, 'SIGTERM');
      setTimeout(() => signalGroup(pid, 'SIGKILL'), HEALTH_EXEC_KILL_GRACE_MS).unref();
    }, timeoutSec * 1000);
    child.once('error', (e) => finish({ error: errorText(e) }));
    child.once('exit', (code, signal) => finish(code !== null ? { status: code } : { error: `killed by ${signal}` }));
  });
}
