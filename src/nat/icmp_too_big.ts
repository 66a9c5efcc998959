/**
 * "Too big" errors the LB sends a client itself: ICMP destination unreachable /
 * fragmentation needed (RFC 792, RFC 1191) for IPv4, ICMPv6 packet too big (RFC 4443) for
 * IPv6, from the address the client sent to (the VIP), quoting the start of its packet, so
 * its path MTU discovery lowers what it sends. TUNNEL mode sends them (modes/tunnel.ts)
 * when the outer header would push a packet past the MTU.
 */

import { csumFromSum, pseudoHeaderSum, sumWords } from '../packet/checksum.js';
import {
  AF_INET,
  ICMP_DEST_UNREACH,
  ICMP_FRAG_NEEDED,
  ICMPV6_PACKET_TOO_BIG,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPV4_DST,
  IPV4_SRC,
  IPV6_DST,
  IPV6_SRC,
  ORIGINATED_TTL,
} from '../packet/headers.js';
import type { NatContext } from './context.js';
import { writeIpv4Header } from './segment.js';

/** An ICMPv4 error stays within 576 bytes (RFC 1812 4.3.2.3); an ICMPv6 error within the
 * IPv6 minimum MTU (RFC 4443 2.4 c). */
const ICMP4_ERROR_MAX = 576;
const ICMP6_ERROR_MAX = 1280;

/** Tell the sender of the packet in hand that at most `mtu` bytes fit. False when the emit
 * ring is full (counted there). */
export function sendTooBig(c: NatContext, mtu: number): boolean {
  const off = c.emitSlot();
  if (off < 0) return false;
  const e = c.emit;
  const b = e.bytes;
  const dv = e.view;
  const p = off + e.headroom;
  const inLen = c.pEnd - c.pL3;
  const v4 = c.pAf === AF_INET;
  const ipLen = v4 ? 20 : 40;
  const quote = Math.min(inLen, (v4 ? ICMP4_ERROR_MAX : ICMP6_ERROR_MAX) - ipLen - 8);
  const icmpLen = 8 + quote;
  const icmp = p + ipLen;
  b.set(c.buf.subarray(c.pL3, c.pL3 + quote), icmp + 8);
  if (v4) {
    // Back to where it came from: source and destination swapped.
    const src = c.dv.getInt32(c.pL3 + IPV4_DST);
    const dst = c.dv.getInt32(c.pL3 + IPV4_SRC);
    writeIpv4Header(dv, p, 0, ipLen + icmpLen, 0, 0, IPPROTO_ICMP, src, dst);
    dv.setUint32(icmp, (ICMP_DEST_UNREACH << 24) | (ICMP_FRAG_NEEDED << 16));
    dv.setUint32(icmp + 4, mtu & 0xffff);
    dv.setUint16(icmp + 2, csumFromSum(sumWords(b, icmp, icmpLen)));
  } else {
    dv.setUint32(p, 0x60000000);
    dv.setUint32(p + 4, (icmpLen << 16) | (IPPROTO_ICMPV6 << 8) | ORIGINATED_TTL);
    b.set(c.buf.subarray(c.pL3 + IPV6_DST, c.pL3 + IPV6_DST + 16), p + IPV6_SRC);
    b.set(c.buf.subarray(c.pL3 + IPV6_SRC, c.pL3 + IPV6_SRC + 16), p + IPV6_DST);
    dv.setUint32(icmp, ICMPV6_PACKET_TOO_BIG << 24);
    dv.setUint32(icmp + 4, mtu);
    const pseudo = pseudoHeaderSum(b, p, false, IPPROTO_ICMPV6, icmpLen);
    dv.setUint16(icmp + 2, csumFromSum(pseudo + sumWords(b, icmp, icmpLen)));
  }
  c.emitted(ipLen + icmpLen);
  return true;
}
