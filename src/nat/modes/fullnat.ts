/**
 * FULLNAT, the default mode: both addresses change. Client → VIP:vport becomes
 * LIP:lport → RIP:rport and the reply the reverse, so replies reach the LB by ordinary
 * routing (the local addresses are routed to it) and real servers need no route to clients.
 *
 *   create    a local address and a port in the client's shard (service/laddr.ts: the port
 *             names the session's shard, so its replies' owner) and
 *             the ISN the real server sees (seq.ts: the client's ISN + SEQ_DELTA)
 *   inbound   fullnat_in.ts tcpInbound / udpInbound (TOA, seq and timestamp translation)
 *   outbound  fullnat_out.ts tcpOutbound / udpOutbound
 *   icmp      icmp_errors.ts translateIcmp
 *   owner     by the local port (dataplane/shard.ts localPortWorker)
 */

import { R_SEQ_DELTA, RECORD_WORDS } from '../../conn/layout.js';
import { C_LPORT_OTHER_OWNER, C_LPORT_OTHER_SHARD } from '../../dataplane/counters.js';
import { clientShard, localPortWorker } from '../../dataplane/shard.js';
import { IPPROTO_TCP } from '../../packet/headers.js';
import { tcpInbound, udpInbound } from '../fullnat_in.js';
import { tcpOutbound, udpOutbound } from '../fullnat_out.js';
import { translateIcmp } from '../icmp_errors.js';
import { DROP_LPORT_EXHAUSTED } from '../verdict.js';
import { MODE_FULLNAT, registerMode, type ForwardingMode } from './mode.js';

export const fullnat: ForwardingMode = {
  id: MODE_FULLNAT,
  name: 'fullnat',
  twoWay: true,
  create(c, svc, r, ok, blockWords, clientIsn) {
    const laddr = c.services.laddrs[svc]!;
    const shard = clientShard(c.pS0, c.pS1, c.pS2, c.pS3, c.pSport);
    if (laddr.acquire(c.table, ok, blockWords, shard) < 0) return DROP_LPORT_EXHAUSTED;
    if (laddr.otherShard) {
      c.counters[C_LPORT_OTHER_SHARD] = c.counters[C_LPORT_OTHER_SHARD]! + 1;
      if (laddr.otherOwner) c.counters[C_LPORT_OTHER_OWNER] = c.counters[C_LPORT_OTHER_OWNER]! + 1;
    }
    c.outHash = laddr.lastHash;
    if (c.pProto === IPPROTO_TCP) {
      const isn = c.isn.generate(ok, blockWords, c.nowMs);
      c.table.rec[r * RECORD_WORDS + R_SEQ_DELTA] = (isn - clientIsn) | 0;
    }
    return 0;
  },
  inbound(c, r, n) {
    return c.pProto === IPPROTO_TCP ? tcpInbound(c, r, n) : udpInbound(c, r);
  },
  outbound(c, r) {
    return c.pProto === IPPROTO_TCP ? tcpOutbound(c, r) : udpOutbound(c, r);
  },
  icmp: translateIcmp,
  owner(_a0, _a1, _a2, _a3, outPorts, workers) {
    return localPortWorker(outPorts & 0xffff, workers);
  },
};

registerMode(fullnat);
