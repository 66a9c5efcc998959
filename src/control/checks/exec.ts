/**
 * exec: run `command` (no shell) and judge its exit status (keepalived's MISC_CHECK): 0 passes;
 * with `dynamicWeight`, 2..255 passes too and sets the server's weight to the status − 2
 * (misc_dynamic); anything else fails. The command learns which server it checks from its
 * arguments, where `{address}` and `{port}` stand for the server's, and from its environment:
 * TUNVS_CHECK_ADDRESS, TUNVS_CHECK_PORT, TUNVS_CHECK_SERVICE. It runs in a process
 * group of its own, as `user` when one is named; past the timeout the group gets SIGTERM, then
 * SIGKILL (HEALTH_EXEC_KILL_GRACE_MS later) if it is still there, and the check fails.
 */

import { spawn } from 'node:child_process';
import { HEALTH_EXEC_KILL_GRACE_MS } from '../../constants.js';
import { systemUser } from '../../config/system_user.js';
import { errorText, failed, PASS, registerCheck, type CheckResult } from './check.js';

/** Signal the process group `pid` leads; it may be gone already. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: every process of the group has exited.
  }
}

registerCheck(
  'exec',
  (spec, t) =>
    new Promise((resolve) => {
      const [file, ...args] = (spec.command ?? []).map((a) =>
        a.replaceAll('{address}', t.address).replaceAll('{port}', String(t.port)),
      );
      if (file === undefined) return resolve(failed('exec: no command'));
      const user = spec.user !== undefined ? systemUser(spec.user) : undefined;
      if (spec.user !== undefined && !user) return resolve(failed(`exec: no user ${spec.user}`));
      const child = spawn(file, args, {
        stdio: 'ignore',
        detached: true,
        env: {
          ...process.env,
          TUNVS_CHECK_ADDRESS: t.address,
          TUNVS_CHECK_PORT: String(t.port),
          TUNVS_CHECK_SERVICE: t.service,
        },
        ...(user ? { uid: user.uid, gid: user.gid } : {}),
      });
      let result: CheckResult | undefined;
      const finish = (r: CheckResult): void => {
        if (result) return;
        result = r;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        const pid = child.pid;
        finish(failed(`exec: timed out after ${spec.timeout} s`));
        if (pid === undefined) return;
        signalGroup(pid, 'SIGTERM');
        // The leader's exit says nothing of the others in its group: KILL the group regardless.
        setTimeout(() => signalGroup(pid, 'SIGKILL'), HEALTH_EXEC_KILL_GRACE_MS).unref();
      }, spec.timeout * 1000);
      child.once('error', (e) => finish(failed(`exec: ${errorText(e)}`)));
      child.once('exit', (code, signal) => {
        if (code === 0) finish(PASS);
        else if (code !== null && code >= 2 && spec.dynamicWeight === true) finish({ ok: true, weight: code - 2 });
        else finish(failed(code !== null ? `exec: exited with status ${code}` : `exec: killed by ${signal}`));
      });
    }),
);
