/**
 * TCP segments the LB writes itself (RSTs on expiry, the SYN proxy's SYN-ACK, SYN and ACK):
 * a whole IPv4 or IPv6 + TCP packet with complete checksums. Addresses come from int32 words
 * in the session record's layout: word 0 at `src0`/`dst0`, words 1–3 at `srcHi`/`dstHi`,
 * +2, +4 (layout.ts addrWord) — a session record, or a packet's lookup key.
 */

import { addrWord } from '../conn/layout.js';
import { csumFromSum } from '../packet/checksum.js';
import { AF_INET, IPPROTO_TCP, ORIGINATED_TTL } from '../packet/headers.js';

export interface SegmentFields {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
}

/**
 * Write a segment into buf at `off`: header fields from `f`, the first `optLen` bytes of
 * `opts` as its options (a multiple of 4). Returns the packet length.
 */
export function writeSegment(
  buf: Uint8Array,
  dv: DataView,
  off: number,
  af: number,
  words: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  f: SegmentFields,
  opts: Uint8Array,
  optLen: number,
): number {
  const v4 = af === AF_INET;
  const l3len = v4 ? 20 : 40;
  const tcpLen = 20 + optLen;
  const len = l3len + tcpLen;
  if (v4) {
    writeIpv4Header(dv, off, 0, len, 0, IPV4_DF, IPPROTO_TCP, words[src0]!, words[dst0]!);
  } else {
    dv.setUint32(off, 0x60000000);
    dv.setUint16(off + 4, tcpLen);
    dv.setUint8(off + 6, IPPROTO_TCP);
    dv.setUint8(off + 7, ORIGINATED_TTL);
    for (let k = 0; k < 4; k++) {
      dv.setInt32(off + 8 + 4 * k, words[addrWord(src0, srcHi, k)]!);
      dv.setInt32(off + 24 + 4 * k, words[addrWord(dst0, dstHi, k)]!);
    }
  }
  const t = off + l3len;
  const offFlags = ((tcpLen >>> 2) << 12) | f.flags;
  dv.setUint32(t, (f.sport << 16) | f.dport);
  dv.setInt32(t + 4, f.seq);
  dv.setInt32(t + 8, f.ack);
  dv.setUint32(t + 12, (offFlags << 16) | f.window);
  // The checksum from the values as they are written, not summed back from the packet:
  // the pseudo-header (addresses, protocol, length), the header's words, the options.
  let sum = IPPROTO_TCP + tcpLen + f.sport + f.dport + offFlags + f.window;
  sum += (f.seq >>> 16) + (f.seq & 0xffff) + (f.ack >>> 16) + (f.ack & 0xffff);
  for (let k = 0; k < (v4 ? 1 : 4); k++) {
    const a = words[addrWord(src0, srcHi, k)]!;
    const b = words[addrWord(dst0, dstHi, k)]!;
    sum += (a >>> 16) + (a & 0xffff) + (b >>> 16) + (b & 0xffff);
  }
  const o = t + 20;
  for (let i = 0; i < optLen; i += 4) {
    const a = opts[i]!;
    const b = opts[i + 1]!;
    const x = opts[i + 2]!;
    const y = opts[i + 3]!;
    buf[o + i] = a;
    buf[o + i + 1] = b;
    buf[o + i + 2] = x;
    buf[o + i + 3] = y;
    sum += ((a << 8) | b) + ((x << 8) | y);
  }
  dv.setUint32(t + 16, csumFromSum(sum) << 16); // checksum, urgent pointer 0
  return len;
}

/** IPv4 DF bit (flags/fragment word). */
export const IPV4_DF = 0x4000;

/**
 * A 20-byte IPv4 header at `off` that the LB originates (TTL ORIGINATED_TTL): every word set
 * (no fill), the checksum summed from the words as they are set. `frag` is the flags and
 * fragment-offset word (IPV4_DF or 0).
 */
export function writeIpv4Header(
  dv: DataView,
  off: number,
  tos: number,
  totalLen: number,
  id: number,
  frag: number,
  proto: number,
  src: number,
  dst: number,
): void {
  const ttlProto = (ORIGINATED_TTL << 8) | proto;
  dv.setUint32(off, 0x45000000 | (tos << 16) | totalLen);
  dv.setUint32(off + 4, (id << 16) | frag);
  dv.setInt32(off + 12, src);
  dv.setInt32(off + 16, dst);
  const sum =
    (0x4500 | tos) + totalLen + id + frag + ttlProto + (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff);
  dv.setUint32(off + 8, (ttlProto << 16) | csumFromSum(sum));
}
