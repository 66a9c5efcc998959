/**
 * `tunvs ha check`: exit 0 when tunvs answers on its admin socket and is ready to be master
 * (a cluster node: to announce), else 1. keepalived's track script is its C twin,
 * native/ha_check.c (tunvs-ha-check: ~4 ms of CPU per check instead of a Node start's ~0.16 s of
 * CPU); this one is for scripts and hands. It loads nothing but the admin client: bin/tunvs
 * comes here directly.
 */

import { ADMIN_SOCKET_DEFAULT } from '../constants.js';
import { adminRequest } from '../control/admin.js';

/** Answer within this, or count as not ready (keepalived's script timeout is longer).
 * native/ha_check.c has the same. */
const CHECK_TIMEOUT_MS = 900;

/** `args`: what follows `ha check` (--admin PATH, --token T). */
export async function haCheck(args: readonly string[]): Promise<number> {
  const value = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const ask = (cmd: string): Promise<Record<string, unknown>> =>
    adminRequest(
      value('--admin') ?? ADMIN_SOCKET_DEFAULT,
      { cmd },
      CHECK_TIMEOUT_MS,
      value('--token') ?? process.env.TUNVS_ADMIN_TOKEN,
    );
  try {
    const reply = (await ask('ready')) as { ready?: boolean };
    return reply.ready === true ? 0 : 1;
  } catch (e) {
    // A tunvs of the version before `ready` (its package upgraded under it): ask for `ha`.
    if (!(e as Error).message.startsWith('unknown command')) return 1;
    try {
      const reply = (await ask('ha')) as { ha?: { ready?: boolean } };
      return reply.ha?.ready === true ? 0 : 1;
    } catch {
      return 1;
    }
  }
}
