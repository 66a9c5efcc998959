/**
 * exec: run `command` and judge its exit status (keepalived's MISC_CHECK): 0 passes; with
 * `dynamicWeight`, 2..255 passes too and sets the server's weight to the status − 2
 * (misc_dynamic); anything else fails, as does outliving the timeout. How the command runs
 * (no shell, `{address}` and `{port}`, its environment, its process group, `user`):
 * command.ts.
 */

import { failed, PASS, registerCheck } from './check.js';
import { runCommand } from './command.js';

registerCheck('exec', async (spec, t) => {
  const end = await runCommand(spec.command ?? [], t, spec.timeout, spec.user);
  if ('error' in end) return failed(`exec: ${end.error}`);
  if (end.status === 0) return PASS;
  if (end.status >= 2 && spec.dynamicWeight === true) return { ok: true, weight: end.status - 2 };
  return failed(`exec: exited with status ${end.status}`);
});
