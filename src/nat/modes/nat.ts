/**
 * NAT (LVS "Masq"): only the destination changes. Client → VIP:vport becomes
 * client → RIP:rport; the real server sees the client's own address (no TOA needed; it can
 * still be inserted) and must route its replies through the LB (its default route), where
 * `tunvs run` steers them into the TUN device (control/system.ts natReplyRules). The reply
 * RIP:rport → client becomes VIP:vport → client.
 *
 * The rewrite is FULLNAT's with the client standing in for the local address and port: the
 * OUT key is (RIP:rport, client:cport), the sequence delta 0, timestamps untouched.
 *
 *   create    the client's address and port as the OUT key's local half; a tuple already
 *             taken (the same client port to two VIPs of one real server) is refused
 *   inbound, outbound, icmp   FULLNAT's (fullnat.ts)
 *   owner     the client's address and port (client_side.ts)
 */

import { DIR_OUT } from '../../conn/layout.js';
import { fullnat } from './fullnat.js';
import { clientAsLocal, ownerByClient } from './client_side.js';
import { DROP_NAT_TUPLE_TAKEN } from '../verdict.js';
import { MODE_NAT, registerMode, type ForwardingMode } from './mode.js';

export const nat: ForwardingMode = {
  id: MODE_NAT,
  name: 'nat',
  twoWay: true,
  create(c, _svc, _r, ok, blockWords) {
    clientAsLocal(c, ok);
    // The hash is left in c.outHash also when the tuple is taken (nat/session.ts
    // sharedNatSession looks the taker up by it).
    const hash = c.table.hashKey(ok, blockWords);
    c.outHash = hash;
    return c.table.find(ok, blockWords, DIR_OUT, hash) >= 0 ? DROP_NAT_TUPLE_TAKEN : 0;
  },
  // FULLNAT's rewrite: the OUT key's local half is the client's own.
  inbound: fullnat.inbound,
  outbound: fullnat.outbound,
  icmp: fullnat.icmp,
  owner: ownerByClient,
};

registerMode(nat);
