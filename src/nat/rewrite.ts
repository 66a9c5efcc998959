/**
 * Header rewrites shared by both directions: replace the IP addresses and the L4 ports of
 * the parsed packet with those stored in a session record, keeping the IPv4 header
 * checksum right and returning the running RFC 1624 sum for the L4 checksum (which covers
 * the addresses through the pseudo-header and the ports directly).
 */

import { recServer } from '../conn/layout.js';
import { RS_BASE, RS_FIELDS } from '../dataplane/counters.js';
import {
  csumFinish,
  csumReplace16,
  csumReplace32,
  csumStart,
  partialFinish,
  partialStart,
} from '../packet/checksum.js';
import { AF_INET, IPV4_CSUM, UDP_CSUM } from '../packet/headers.js';
import type { NatContext } from './context.js';

/**
 * Set source and destination address to the words of `rec`: word 0 of the source at
 * `src0`, its words 1–3 at `srcHi`, `srcHi + 2`, `srcHi + 4` (layout.ts: addrWord), and
 * likewise for the destination. Returns `acc` updated for the pseudo-header change.
 */
export function rewriteAddresses(
  c: NatContext,
  rec: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  acc: number,
): number {
  const dv = c.dv;
  const l3 = c.pL3;
  if (c.pAf === AF_INET) {
    const ns = rec[src0]!;
    const nd = rec[dst0]!;
    dv.setInt32(l3 + 12, ns);
    dv.setInt32(l3 + 16, nd);
    let ip = csumStart(dv.getUint16(l3 + IPV4_CSUM));
    ip = csumReplace32(ip, c.pS0, ns);
    ip = csumReplace32(ip, c.pD0, nd);
    dv.setUint16(l3 + IPV4_CSUM, csumFinish(ip));
    acc = csumReplace32(acc, c.pS0, ns);
    return csumReplace32(acc, c.pD0, nd);
  }
  let n = rec[src0]!;
  dv.setInt32(l3 + 8, n);
  acc = csumReplace32(acc, c.pS0, n);
  n = rec[srcHi]!;
  dv.setInt32(l3 + 12, n);
  acc = csumReplace32(acc, c.pS1, n);
  n = rec[srcHi + 2]!;
  dv.setInt32(l3 + 16, n);
  acc = csumReplace32(acc, c.pS2, n);
  n = rec[srcHi + 4]!;
  dv.setInt32(l3 + 20, n);
  acc = csumReplace32(acc, c.pS3, n);
  n = rec[dst0]!;
  dv.setInt32(l3 + 24, n);
  acc = csumReplace32(acc, c.pD0, n);
  n = rec[dstHi]!;
  dv.setInt32(l3 + 28, n);
  acc = csumReplace32(acc, c.pD1, n);
  n = rec[dstHi + 2]!;
  dv.setInt32(l3 + 32, n);
  acc = csumReplace32(acc, c.pD2, n);
  n = rec[dstHi + 4]!;
  dv.setInt32(l3 + 36, n);
  return csumReplace32(acc, c.pD3, n);
}

/** Set both ports (one 32-bit word: sport << 16 | dport) at the start of the L4 header. */
export function rewritePorts(c: NatContext, ports: number, acc: number): number {
  c.dv.setInt32(c.pL4, ports);
  return csumReplace32(acc, (c.pSport << 16) | c.pDport, ports);
}

/**
 * A partial L4 checksum (c.pPartial: virtio NEEDS_CSUM) holds only the folded
 * pseudo-header sum; the kernel sums the L4 bytes later. Rewriting such a packet updates
 * the field for the address change alone: ports, sequence numbers and options need no
 * checksum work. Callers take this path once per packet, so the full-checksum path stays
 * exactly as short as it was.
 */
export function rewritePartial(
  c: NatContext,
  rec: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  ports: number,
  csumAt: number,
): void {
  const dv = c.dv;
  const acc = rewriteAddresses(c, rec, src0, srcHi, dst0, dstHi, partialStart(dv.getUint16(csumAt)));
  dv.setUint16(csumAt, partialFinish(acc));
  dv.setInt32(c.pL4, ports);
}

/** Set the IP length field (IPv4 total length / IPv6 payload length) to fit end `end`. */
export function setIpLength(c: NatContext, end: number): void {
  const dv = c.dv;
  const l3 = c.pL3;
  if (c.pAf === AF_INET) {
    const old = dv.getUint16(l3 + 2);
    const neu = end - l3;
    dv.setUint16(l3 + 2, neu);
    dv.setUint16(l3 + IPV4_CSUM, csumFinish(csumReplace16(csumStart(dv.getUint16(l3 + IPV4_CSUM)), old, neu)));
  } else {
    dv.setUint16(l3 + 4, end - l3 - 40);
  }
}

/** A key block's ports word (peer << 16 | ours) turned into packet order (ours << 16 | peer). */
export function swapPorts(word: number): number {
  return ((word & 0xffff) << 16) | (word >>> 16);
}

/**
 * Rewrite a UDP packet toward the addresses of `rec` (as rewriteAddresses) and the ports
 * `ports` (packet order). An IPv4 UDP checksum of 0 means "none" and stays 0; a computed
 * 0 is written as 0xffff.
 */
export function rewriteUdp(
  c: NatContext,
  rec: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  ports: number,
): void {
  const dv = c.dv;
  const at = c.pL4 + UDP_CSUM;
  if (c.pPartial) {
    rewritePartial(c, rec, src0, srcHi, dst0, dstHi, ports, at);
    return;
  }
  const field = dv.getUint16(at);
  let acc = rewriteAddresses(c, rec, src0, srcHi, dst0, dstHi, csumStart(field));
  acc = rewritePorts(c, ports, acc);
  if (field !== 0 || c.pAf !== AF_INET) dv.setUint16(at, csumFinish(acc) || 0xffff);
}

/**
 * Count a forwarded packet of the session at `base` for its real server, `dirField` being
 * RS_PACKETS_IN (client → RS) or RS_PACKETS_OUT (the bytes field follows at +2), and in
 * the global counter `globalField`.
 */
export function countPacket(
  c: NatContext,
  rec: Int32Array,
  base: number,
  end: number,
  dirField: number,
  globalField: number,
): void {
  const ctr = c.counters;
  const at = RS_BASE + recServer(rec, base) * RS_FIELDS + dirField;
  ctr[at] = ctr[at]! + 1;
  ctr[at + 2] = ctr[at + 2]! + (end - c.pL3);
  ctr[globalField] = ctr[globalField]! + 1;
}
