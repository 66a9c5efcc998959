/**
 * ICMP and ICMPv6 for sessions: natIcmp finds the session an error quotes and hands it to
 * the session's mode (modes/mode.ts icmp): FULLNAT and NAT translate it (translateIcmp,
 * below; NAT's local address is the client), TUNNEL passes it on to the real server inside
 * the tunnel (the server sent the quoted packet itself). An error about one of TUNNEL's own
 * outer packets (no session: it quotes the LB's tunnel source → a real server) that says
 * "too big" is taken first, as that server's tunnel MTU (tunnel_pmtu.ts learnTunnelMtu).
 *
 * An ICMP error quotes the packet that caused it. For a session's packet to reach the
 * sender that can act on it (lower its path MTU, give up), both the outer header and the
 * quoted one must be translated, like the session's own packets but mirrored:
 *
 *   error to the VIP (about VIP → client):  outer → LIP → RIP; quoted becomes RIP → LIP,
 *       ports rport → lport, quoted ack += delta (back into the real server's space)
 *   error to a LIP (about LIP → RS):        outer → VIP → client; quoted becomes
 *       client → VIP, ports cport → vport, quoted seq −= delta
 *   a session the SYN proxy made also has the server's own space: quoted seq −= srv delta
 *       (to the VIP), quoted ack += srv delta (to a LIP)
 *
 * A quoted IPv6 packet's ports are found behind its options headers (packet/ipv6_ext.ts), as
 * in a packet itself. A quoted fragment is translated when it is a datagram's first (IPv6:
 * its ports after the fragment header); a later one has no ports and is dropped, as IPVS
 * ignores it.
 * The quoted IPv4 header checksum is recomputed, the quoted L4 checksum updated when the
 * quote holds it, and the ICMP checksum recomputed in full (errors are rare).
 * Echo requests to a VIP or local address are answered in place, so `ping VIP` works as it
 * does with LVS (an IPv6 request's options headers are not echoed). Other ICMP types are
 * dropped and counted.
 */

import {
  addrWord,
  DIR_IN,
  DIR_OUT,
  R_CIP0,
  R_CIP1,
  R_IN_PORTS,
  R_LIP0,
  R_LIP1,
  R_OUT_PORTS,
  R_RIP0,
  R_RIP1,
  R_SEQ_DELTA,
  R_SRV_DELTA,
  R_META,
  recMode,
  FLAG_PROXIED,
  META_FLAGS_SHIFT,
  R_VIP0,
  R_VIP1,
  RECORD_WORDS,
} from '../conn/layout.js';
import { C_ICMP_ECHO_REPLIED, C_ICMP_TRANSLATED } from '../dataplane/counters.js';
import {
  csumFinish,
  csumFromSum,
  csumReplace16,
  csumReplace32,
  csumStart,
  pseudoHeaderSum,
  sumWords,
} from '../packet/checksum.js';
import {
  AF_INET,
  ICMP_CSUM,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_PARAM_PROBLEM,
  ICMP_TIME_EXCEEDED,
  ICMPV6_DEST_UNREACH,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_PROBLEM,
  ICMPV6_TIME_EXCEEDED,
  IPPROTO_FRAGMENT,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CSUM,
  IPV4_FRAG,
  IPV4_FRAG_OFFSET_MASK,
  IPV6_FRAG_HEADER_LEN,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
  ORIGINATED_TTL,
} from '../packet/headers.js';
import { EXT_TRUNCATED, IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, lastOptionsHeader, optionsEnd } from '../packet/ipv6_ext.js';
import { clientWorker, localPortWorker } from '../dataplane/shard.js';
import type { NatContext } from './context.js';
import { learnTunnelMtu } from './tunnel_pmtu.js';
import { rewriteAddresses, setIpLength } from './rewrite.js';
import { DROP_BAD_ICMP, DROP_ICMP_NO_SESSION, DROP_ICMP_UNSUPPORTED, DROP_NOT_LOCAL } from './verdict.js';

function isError(af: number, type: number): boolean {
  if (af === AF_INET) return type === ICMP_DEST_UNREACH || type === ICMP_TIME_EXCEEDED || type === ICMP_PARAM_PROBLEM;
  return (
    type === ICMPV6_DEST_UNREACH ||
    type === ICMPV6_PACKET_TOO_BIG ||
    type === ICMPV6_TIME_EXCEEDED ||
    type === ICMPV6_PARAM_PROBLEM
  );
}

/** Parse the quoted header and build the session key into c.key. 0 or a drop reason. */
function parseQuote(c: NatContext): number {
  const q = c.quote;
  const b = c.buf;
  const dv = c.dv;
  const inner = c.pL4 + 8;
  const end = c.pEnd;
  let l4: number;
  let proto: number;
  const key = c.key;
  if (c.pAf === AF_INET) {
    if (inner + 20 > end || b[inner]! >>> 4 !== 4) return DROP_BAD_ICMP;
    const ihl = (b[inner]! & 15) << 2;
    if (ihl < 20) return DROP_BAD_ICMP;
    // A fragment past the first has no ports to find its session by (IPVS ignores it too).
    if ((dv.getUint16(inner + IPV4_FRAG) & IPV4_FRAG_OFFSET_MASK) !== 0) return DROP_ICMP_UNSUPPORTED;
    l4 = inner + ihl;
    proto = b[inner + 9]!;
    // Key from the quoted packet reversed: its destination is the flow's source.
    key[2] = dv.getInt32(inner + 16);
    key[3] = dv.getInt32(inner + 12);
    key[4] = key[5] = key[6] = key[7] = key[8] = key[9] = 0;
  } else {
    if (inner + 40 > end || b[inner]! >>> 4 !== 6) return DROP_BAD_ICMP;
    l4 = inner + IPV6_HEADER_LEN;
    proto = b[inner + IPV6_NEXT]!;
    // Options headers (packet/ipv6_ext.ts), as the engine looks past them in a packet.
    if (proto === IPPROTO_HOPOPTS || proto === IPPROTO_DSTOPTS) {
      const last = lastOptionsHeader(b, inner, end);
      if (last < 0) return last === EXT_TRUNCATED ? DROP_BAD_ICMP : DROP_ICMP_UNSUPPORTED;
      proto = b[last]!;
      l4 = optionsEnd(b, last);
    }
    // A fragment (what the LB cut for the MTU, or a sender's): the first one's ports follow its
    // fragment header, and its quote is translated with the header left as it is.
    if (proto === IPPROTO_FRAGMENT) {
      if (l4 + IPV6_FRAG_HEADER_LEN > end) return DROP_BAD_ICMP;
      if ((dv.getUint16(l4 + 2) & IPV6_FRAG_OFFSET_MASK) !== 0) return DROP_ICMP_UNSUPPORTED;
      proto = b[l4]!;
      l4 += IPV6_FRAG_HEADER_LEN;
    }
    for (let k = 0; k < 4; k++) {
      key[2 + 2 * k] = dv.getInt32(inner + 24 + 4 * k);
      key[3 + 2 * k] = dv.getInt32(inner + 8 + 4 * k);
    }
  }
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return DROP_ICMP_UNSUPPORTED;
  if (l4 + 8 > end) return DROP_BAD_ICMP;
  q.l3 = inner;
  q.l4 = l4;
  q.proto = proto;
  q.sport = dv.getUint16(l4);
  q.dport = dv.getUint16(l4 + 2);
  key[0] = (c.pAf << 8) | proto;
  key[1] = (q.dport << 16) | q.sport;
  q.toVip = c.services.isVip(c.pAf, c.pD0, c.pD1, c.pD2, c.pD3);
  return 0;
}

/**
 * Owner worker of an ICMP packet (the shard of the session its quote belongs to), or the
 * local worker when it cannot tell (the packet is then handled and dropped here).
 */
export function icmpOwner(c: NatContext): number {
  const workers = c.opts.workers;
  if (!isError(c.pAf, c.pFlags) || parseQuote(c) !== 0) return c.opts.worker;
  const key = c.key;
  if (c.quote.toVip) return clientWorker(key[2]!, key[4]!, key[6]!, key[8]!, key[1]! >>> 16, workers);
  return localPortWorker(c.quote.sport, workers);
}

/** ICMP / ICMPv6 packet. Returns the new length, or −reason. */
export function natIcmp(c: NatContext): number {
  const type = c.pFlags;
  const v4 = c.pAf === AF_INET;
  if (type === (v4 ? ICMP_ECHO_REQUEST : ICMPV6_ECHO_REQUEST)) return echoReply(c);
  if (!isError(c.pAf, type)) return -DROP_ICMP_UNSUPPORTED;
  // About a TUNNEL outer packet (no session quoted): its real server's path MTU.
  const learned = learnTunnelMtu(c);
  if (learned !== 0) return learned;
  const why = parseQuote(c);
  if (why !== 0) return -why;
  const q = c.quote;
  const table = c.table;
  const blockWords = v4 ? 3 : 9;
  const dir = q.toVip ? DIR_IN : DIR_OUT;
  const r = table.find(c.key, blockWords, dir, table.hashKey(c.key, blockWords));
  if (r < 0) return -DROP_ICMP_NO_SESSION;
  return c.modes[recMode(table.rec, r * RECORD_WORDS)]!.icmp(c, r);
}

/** The ICMP error in hand quotes a packet of session `r` (FULLNAT, NAT): translate it. */
export function translateIcmp(c: NatContext, r: number): number {
  const q = c.quote;
  const v4 = c.pAf === AF_INET;
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const dv = c.dv;
  const end = c.pEnd;
  const delta = rec[base + R_SEQ_DELTA]!;

  // Outer header (the L4 sum returned is not needed: the ICMP checksum is recomputed).
  if (q.toVip) rewriteAddresses(c, rec, base + R_LIP0, base + R_LIP1, base + R_RIP0, base + R_RIP1, 0);
  else rewriteAddresses(c, rec, base + R_VIP0, base + R_VIP1, base + R_CIP0, base + R_CIP1, 0);

  // Quoted header: what the far side sent, as its peer saw it.
  const ql3 = q.l3;
  const ql4 = q.l4;
  let acc = 0;
  const src0 = q.toVip ? base + R_RIP0 : base + R_CIP0;
  const srcHi = q.toVip ? base + R_RIP1 : base + R_CIP1;
  const dst0 = q.toVip ? base + R_LIP0 : base + R_VIP0;
  const dstHi = q.toVip ? base + R_LIP1 : base + R_VIP1;
  if (v4) {
    acc = csumReplace32(acc, dv.getInt32(ql3 + 12), rec[src0]!);
    acc = csumReplace32(acc, dv.getInt32(ql3 + 16), rec[dst0]!);
    dv.setInt32(ql3 + 12, rec[src0]!);
    dv.setInt32(ql3 + 16, rec[dst0]!);
    const ihl = ql4 - ql3;
    dv.setUint16(ql3 + IPV4_CSUM, 0);
    dv.setUint16(ql3 + IPV4_CSUM, csumFromSum(sumWords(c.buf, ql3, ihl)));
  } else {
    for (let k = 0; k < 4; k++) {
      const s = rec[addrWord(src0, srcHi, k)]!;
      const d = rec[addrWord(dst0, dstHi, k)]!;
      acc = csumReplace32(acc, dv.getInt32(ql3 + 8 + 4 * k), s);
      acc = csumReplace32(acc, dv.getInt32(ql3 + 24 + 4 * k), d);
      dv.setInt32(ql3 + 8 + 4 * k, s);
      dv.setInt32(ql3 + 24 + 4 * k, d);
    }
  }
  // Quoted ports become rport → lport (the OUT key's order) or cport → vport (the IN key's).
  const newPorts = q.toVip ? rec[base + R_OUT_PORTS]! : rec[base + R_IN_PORTS]!;
  acc = csumReplace32(acc, (q.sport << 16) | q.dport, newPorts);
  dv.setInt32(ql4, newPorts);
  if (q.proto === IPPROTO_TCP) {
    // A proxied session's server side has a sequence space of its own (synproxy.ts).
    const srvDelta = ((rec[base + R_META]! >>> META_FLAGS_SHIFT) & FLAG_PROXIED) !== 0 ? rec[base + R_SRV_DELTA]! : 0;
    if (q.toVip) {
      if (srvDelta !== 0) {
        const seq = dv.getInt32(ql4 + 4);
        const nseq = (seq - srvDelta) | 0;
        dv.setInt32(ql4 + 4, nseq);
        acc = csumReplace32(acc, seq, nseq);
      }
      if (ql4 + 12 <= end) {
        const ack = dv.getInt32(ql4 + 8);
        const nack = (ack + delta) | 0;
        dv.setInt32(ql4 + 8, nack);
        acc = csumReplace32(acc, ack, nack);
      }
    } else {
      const seq = dv.getInt32(ql4 + 4);
      const nseq = (seq - delta) | 0;
      dv.setInt32(ql4 + 4, nseq);
      acc = csumReplace32(acc, seq, nseq);
      if (srvDelta !== 0 && ql4 + 12 <= end) {
        const ack = dv.getInt32(ql4 + 8);
        const nack = (ack + srvDelta) | 0;
        dv.setInt32(ql4 + 8, nack);
        acc = csumReplace32(acc, ack, nack);
      }
    }
    if (ql4 + 18 <= end) dv.setUint16(ql4 + 16, csumFinish(acc + csumStart(dv.getUint16(ql4 + 16))));
  } else if (ql4 + 8 <= end) {
    const field = dv.getUint16(ql4 + 6);
    if (field !== 0 || !v4) dv.setUint16(ql4 + 6, csumFinish(acc + csumStart(field)) || 0xffff);
  }

  icmpChecksum(c);
  c.counters[C_ICMP_TRANSLATED] = c.counters[C_ICMP_TRANSLATED]! + 1;
  return end - c.pL3;
}

/** Recompute the ICMP (IPv4) or ICMPv6 (with pseudo-header) checksum of the packet in hand. */
function icmpChecksum(c: NatContext): void {
  const dv = c.dv;
  const l4 = c.pL4;
  const len = c.pEnd - l4;
  dv.setUint16(l4 + ICMP_CSUM, 0);
  let sum = sumWords(c.buf, l4, len);
  if (c.pAf !== AF_INET) {
    sum += pseudoHeaderSum(c.buf, c.pL3, false, IPPROTO_ICMPV6, len);
  }
  dv.setUint16(l4 + ICMP_CSUM, csumFromSum(sum));
}

/** Answer an echo request to a VIP or local address in place. */
function echoReply(c: NatContext): number {
  const s = c.services;
  const af = c.pAf;
  if (!s.isVip(af, c.pD0, c.pD1, c.pD2, c.pD3) && !s.isLocalAddress(af, c.pD0, c.pD1, c.pD2, c.pD3)) {
    return -DROP_NOT_LOCAL;
  }
  const dv = c.dv;
  const l3 = c.pL3;
  let l4 = c.pL4;
  if (af !== AF_INET && l4 !== l3 + IPV6_HEADER_LEN) {
    // The request's options headers were for the way here: the reply goes without them.
    // The ICMPv6 sum is unchanged (same message, same length, the same two addresses).
    c.buf.copyWithin(l3 + IPV6_HEADER_LEN, l4, c.pEnd);
    c.pEnd -= l4 - l3 - IPV6_HEADER_LEN;
    c.pL4 = l4 = l3 + IPV6_HEADER_LEN;
    c.buf[l3 + IPV6_NEXT] = IPPROTO_ICMPV6;
    setIpLength(c, c.pEnd);
  }
  // Swapping source and destination leaves every checksum unchanged (a sum is symmetric).
  if (af === AF_INET) {
    dv.setInt32(l3 + 12, c.pD0);
    dv.setInt32(l3 + 16, c.pS0);
    const oldTtl = dv.getUint16(l3 + 8);
    const newTtl = (ORIGINATED_TTL << 8) | (oldTtl & 0xff);
    dv.setUint16(l3 + 8, newTtl);
    dv.setUint16(l3 + IPV4_CSUM, csumFinish(csumReplace16(csumStart(dv.getUint16(l3 + IPV4_CSUM)), oldTtl, newTtl)));
  } else {
    for (let k = 0; k < 16; k += 4) {
      const sw = dv.getInt32(l3 + 8 + k);
      dv.setInt32(l3 + 8 + k, dv.getInt32(l3 + 24 + k));
      dv.setInt32(l3 + 24 + k, sw);
    }
    c.buf[l3 + 7] = ORIGINATED_TTL;
  }
  const oldType = dv.getUint16(l4);
  const newType = ((af === AF_INET ? ICMP_ECHO_REPLY : ICMPV6_ECHO_REPLY) << 8) | (oldType & 0xff);
  dv.setUint16(l4, newType);
  dv.setUint16(l4 + ICMP_CSUM, csumFinish(csumReplace16(csumStart(dv.getUint16(l4 + ICMP_CSUM)), oldType, newType)));
  c.counters[C_ICMP_ECHO_REPLIED] = c.counters[C_ICMP_ECHO_REPLIED]! + 1;
  return c.pEnd - l3;
}
