/**
 * `tunvs ha check`: exit 0 when tunvs answers on its admin socket and is ready to be master
 * (a cluster node: to announce), else 1. keepalived runs it every second per node as its
 * track script, so it loads nothing but the admin client: bin/tunvs comes here directly,
 * ~4× less CPU per check than the whole CLI (which shows on a small machine running a pair).
 */

import { ADMIN_SOCKET_DEFAULT } from '../constants.js';
import { adminRequest } from '../control/admin.js';

/** Answer within this, or count as not ready (keepalived's script timeout is longer). */
const CHECK_TIMEOUT_MS = 900;

/** `args`: what follows `ha check` (--admin PATH, --token T). */
export async function haCheck(args: readonly string[]): Promise<number> {
  const value = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  try {
    const reply = (await adminRequest(
      value('--admin') ?? ADMIN_SOCKET_DEFAULT,
      { cmd: 'ha' },
      CHECK_TIMEOUT_MS,
      value('--token') ?? process.env.TUNVS_ADMIN_TOKEN,
    )) as { ha?: { ready?: boolean } };
    return reply.ha?.ready === true ? 0 : 1;
  } catch {
    return 1;
  }
}
