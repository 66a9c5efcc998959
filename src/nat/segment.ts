/**
 * TCP segments the LB writes itself (RSTs on expiry, the SYN proxy's SYN-ACK, SYN and ACK):
 * a whole IPv4 or IPv6 + TCP packet with complete checksums. Addresses come from int32 words
 * in the session record's layout: word 0 at `src0`/`dst0`, words 1–3 at `srcHi`/`dstHi`,
 * +2, +4 (layout.ts addrWord) — a session record, or a packet's lookup key.
 */

import { addrWord } from '../conn/layout.js';
import { csumFromSum, pseudoHeaderSum, sumWords } from '../packet/checksum.js';
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
  dv.setUint32(t, (f.sport << 16) | f.dport);
  dv.setInt32(t + 4, f.seq);
  dv.setInt32(t + 8, f.ack);
  dv.setUint32(t + 12, ((tcpLen >>> 2) << 28) | (f.flags << 16) | f.window);
  dv.setUint32(t + 16, 0); // checksum (below), urgent pointer
  for (let i = 0; i < optLen; i++) buf[t + 20 + i] = opts[i]!;
  const pseudo = pseudoHeaderSum(buf, off, v4, IPPROTO_TCP, tcpLen);
  dv.setUint16(t + 16, csumFromSum(pseudo + sumWords(buf, t, tcpLen)));
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
