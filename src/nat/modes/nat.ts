/**
 * NAT (LVS "Masq"): only the destination changes. Client → VIP:vport becomes
 * client → RIP:rport; the real server sees the client's own address (no TOA needed; it can
 * still be inserted) and must route its replies through the LB (its default route), where
 * `tunvs run` steers them into the TUN device (control/system.ts natRules). The reply
 * RIP:rport → client becomes VIP:vport → client.
 *
 * The rewrite is FULLNAT's with the client standing in for the local address and port: the
 * OUT key is (RIP:rport, client:cport), the sequence delta 0, timestamps untouched.
 *
 *   create    the client's address and port as the OUT key's local half; a tuple already
 *             taken (the same client port to two VIPs of one real server) is refused
 *   inbound, outbound, icmp   FULLNAT's (fullnat.ts)
 *   owner     the client's address and port (dataplane/shard.ts clientWorker)
 */

import { DIR_OUT } from '../../conn/layout.js';
import { clientWorker } from '../../dataplane/shard.js';
import type { NatContext } from '../context.js';
import { fullnat } from './fullnat.js';
import { DROP_NAT_TUPLE_TAKEN } from '../verdict.js';
import { MODE_NAT, registerMode, type ForwardingMode } from './mode.js';

/** The IN key's client address and port (c.key) as the local half of OUT key `ok`. */
export function clientAsLocal(c: NatContext, ok: Int32Array): void {
  const key = c.key;
  ok[1] = (ok[1]! & ~0xffff) | (key[1]! >>> 16);
  ok[3] = key[2]!;
  ok[5] = key[4]!;
  ok[7] = key[6]!;
  ok[9] = key[8]!;
}

export const nat: ForwardingMode = {
  id: MODE_NAT,
  name: 'nat',
  twoWay: true,
  create(c, _svc, _r, ok, blockWords) {
    clientAsLocal(c, ok);
    const hash = c.table.hashKey(ok, blockWords);
    if (c.table.find(ok, blockWords, DIR_OUT, hash) >= 0) return DROP_NAT_TUPLE_TAKEN;
    c.outHash = hash;
    return 0;
  },
  // FULLNAT's rewrite: the OUT key's local half is the client's own.
  inbound: fullnat.inbound,
  outbound: fullnat.outbound,
  icmp: fullnat.icmp,
  owner(a0, a1, a2, a3, outPorts, workers) {
    return clientWorker(a0, a1, a2, a3, outPorts & 0xffff, workers);
  },
};

registerMode(nat);
