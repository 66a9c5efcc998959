/**
 * Software offloads, for packets the kernel cannot finish after tunvs wrote them: TUNNEL's
 * encapsulated packets (a virtio_net_hdr has no "IPIP" type, and the kernel's IPIP
 * segmentation refuses GSO without it). With the TUN offloads on, the kernel hands tunvs
 * GSO super-packets and partial checksums; for these, tunvs does what the kernel's GSO and
 * checksum offload would have done, as the kernel does it (net/ipv4/tcp_offload.c):
 *
 *   completeChecksum   a partial TCP or UDP checksum (virtio NEEDS_CSUM) finished in place
 *   gsoSegments        how many segments a TCP super-packet makes (its gso_size each)
 *   writeGsoSegment    segment k of it, a whole packet with complete checksums, written
 *                      elsewhere: IPv4 ID + k, seq + k × gso_size, FIN and PSH on the last
 *                      segment only, CWR on the first only
 */

import { csumFromSum, pseudoHeaderSum, sumWords } from '../packet/checksum.js';
import {
  AF_INET,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_CSUM,
  IPV4_ID,
  IPV4_TOTAL_LEN,
  IPV6_HEADER_LEN,
  IPV6_PAYLOAD_LEN,
  TCP_CSUM,
  TCP_CWR,
  TCP_FIN,
  TCP_FLAGS,
  TCP_PSH,
  TCP_SEQ,
  UDP_CSUM,
} from '../packet/headers.js';
import type { NatContext } from './context.js';

/** Finish the partial L4 checksum of the packet in hand: the field holds the folded
 * pseudo-header sum; the whole sum over the L4 bytes (that field included) is the answer. */
export function completeChecksum(c: NatContext): void {
  const tcp = c.pProto === IPPROTO_TCP;
  if (!tcp && c.pProto !== IPPROTO_UDP) return;
  const l4 = c.pL4;
  let csum = csumFromSum(sumWords(c.buf, l4, c.pEnd - l4));
  // UDP: 0 means "no checksum"; a computed 0 is sent as 0xffff (RFC 768).
  if (csum === 0 && !tcp) csum = 0xffff;
  c.dv.setUint16(l4 + (tcp ? TCP_CSUM : UDP_CSUM), csum);
}

/** The super-packet in hand's segment payload size (virtio_net_hdr gso_size). */
export function gsoSize(c: NatContext): number {
  return c.dv.getUint16(c.pVnet + 4, true);
}

/** How many segments of `mss` payload bytes the TCP super-packet in hand makes. */
export function gsoSegments(c: NatContext, mss: number): number {
  const payload = c.pEnd - c.pL4 - c.pThl;
  return payload <= 0 || mss <= 0 ? 1 : Math.ceil(payload / mss);
}

/**
 * Segment `k` of `n` (payload `mss` bytes each, the last what is left) of the TCP
 * super-packet in hand, written at `at` of `out` / `dv`: its IP and TCP headers with the
 * fields a segment changes, its payload, complete checksums. Returns its length.
 */
export function writeGsoSegment(
  c: NatContext,
  k: number,
  n: number,
  mss: number,
  out: Uint8Array,
  dv: DataView,
  at: number,
): number {
  const src = c.buf;
  const l3len = c.pL4 - c.pL3;
  const hdrs = l3len + c.pThl;
  const from = c.pL4 + c.pThl + k * mss;
  const payload = Math.min(mss, c.pEnd - from);
  const tcpLen = c.pThl + payload;
  out.set(src.subarray(c.pL3, c.pL3 + hdrs), at);
  out.set(src.subarray(from, from + payload), at + hdrs);
  if (c.pAf === AF_INET) {
    dv.setUint16(at + IPV4_TOTAL_LEN, hdrs + payload);
    dv.setUint16(at + IPV4_ID, (c.dv.getUint16(c.pL3 + IPV4_ID) + k) & 0xffff);
    dv.setUint16(at + IPV4_CSUM, 0);
    dv.setUint16(at + IPV4_CSUM, csumFromSum(sumWords(out, at, l3len)));
  } else {
    dv.setUint16(at + IPV6_PAYLOAD_LEN, l3len - IPV6_HEADER_LEN + tcpLen); // options headers too
  }
  const t = at + l3len;
  dv.setInt32(t + TCP_SEQ, (c.dv.getInt32(c.pL4 + TCP_SEQ) + k * mss) | 0);
  let flags = out[t + TCP_FLAGS]!;
  if (k < n - 1) flags &= ~(TCP_FIN | TCP_PSH);
  if (k > 0) flags &= ~TCP_CWR;
  out[t + TCP_FLAGS] = flags;
  dv.setUint16(t + TCP_CSUM, 0);
  dv.setUint16(
    t + TCP_CSUM,
    csumFromSum(pseudoHeaderSum(src, c.pL3, c.pAf === AF_INET, IPPROTO_TCP, tcpLen) + sumWords(out, t, tcpLen)),
  );
  return hdrs + payload;
}
