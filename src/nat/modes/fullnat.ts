/**
 * FULLNAT, the default mode: both addresses change. Client → VIP:vport becomes
 * LIP:lport → RIP:rport and the reply the reverse, so replies reach the LB by ordinary
 * routing (the local addresses are routed to it) and real servers need no route to clients.
 *
 *   create    a local address and port (service/laddr.ts; the port names the worker) and
 *             the ISN the real server sees (seq.ts: the client's ISN + SEQ_DELTA)
 *   inbound   fullnat_in.ts tcpInbound / udpInbound (TOA, seq and timestamp translation)
 *   outbound  fullnat_out.ts tcpOutbound / udpOutbound
 *   icmp      icmp_errors.ts translateIcmp
 *   owner     the local port (`port % workers`, as laddr.ts hands ports out)
 */

import { R_SEQ_DELTA, RECORD_WORDS } from '../../conn/layout.js';
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
    if (laddr.acquire(c.table, ok, blockWords) < 0) return DROP_LPORT_EXHAUSTED;
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
    return (outPorts & 0xffff) % workers;
  },
};

registerMode(fullnat);
