/**
 * TCP option work of both directions: TOA insertion and client-TOA scrubbing toward the
 * real server, timestamp stripping in client SYNs, and SACK translation and the MSS clamp
 * (SYN-ACK).
 *
 * TOA ("TCP option address") carries the client's address to the real server:
 *
 *   IPv4, length 8                 IPv6, length 20
 *  +------+------+-----------+    +------+------+-----------+---------------------+
 *  | kind | 8    | port (be) |    | kind | 20   | port (be) | address (16 bytes)  |
 *  +------+------+-----------+    +------+------+-----------+---------------------+
 *  | IPv4 address (4 bytes)  |
 *  +-------------------------+
 *
 * Where: right after the 20-byte TCP header (ours comes first), on every client → RS
 * packet that is not SYN/RST and whose ack == rs_isn + 1 (the handshake ACK, its
 * retransmits and data sent before the server speaks) until the server first acknowledges
 * a client byte (FLAG_TOA_OPEN, nat/fullnat_out.ts: its socket exists by then), and
 * optionally in the SYN.
 * A GSO super-packet gets it too: segmentation copies the TCP header into every segment,
 * and every segment of it has that ack, so each is owed TOA by the same rule. Its
 * virtio_net_hdr then grows hdr_len, and gso_size shrinks if a segment would pass the MTU
 * (rare: the MSS clamp already leaves room). Only a super-packet at the 64 KiB IP limit
 * goes without (counted as toa_skipped_gso).
 * No room: prune NOPs, then SACK blocks; still none: forward without TOA, counted.
 * A packet carrying TCP-AO gets no TOA: AO authenticates the options.
 * Protected (never pruned): MSS, window scale, SACK-permitted, timestamps, MD5, AO,
 * MPTCP, Fast Open and anything unknown — dropping those changes what the connection does.
 * A client-supplied TOA-like option (kind 253/254 or the service's kinds, length 8 or 20)
 * is always removed, so the real server can only ever read ours.
 *
 * With a partial checksum (virtio NEEDS_CSUM) option edits need no checksum update at
 * all: the kernel sums the TCP header when it completes the checksum.
 *
 * Option edits re-sum the (≤ 40-byte) option area before and after rather than tracking
 * each word: options start at any byte offset, the area is small, and this path runs on a
 * few packets per connection.
 */

import { addrWord, R_CIP0, R_CIP1, R_IN_PORTS } from '../conn/layout.js';
import {
  C_CLIENT_TOA_REMOVED,
  C_MSS_CLAMPED,
  C_TOA_INSERTED,
  C_TOA_NO_ROOM,
  C_TOA_PRUNED,
  C_TOA_SKIPPED_GSO,
  C_TS_STRIPPED,
} from '../dataplane/counters.js';
import {
  csumFinish,
  csumReplace16,
  csumReplaceSum,
  csumStart,
  partialFinish,
  partialStart,
  sumWords,
} from '../packet/checksum.js';
import {
  AF_INET,
  IP_LENGTH_MAX,
  IPV6_HEADER_LEN,
  TCP_CSUM,
  TCP_HEADER_MIN,
  TCP_SYN,
  TCPOPT_AO,
  TCPOPT_MSS,
  TCPOPT_NOP,
  TCPOPT_SACK,
  TCPOPT_TIMESTAMP,
} from '../packet/headers.js';
import { scanOptions } from '../packet/tcp_options.js';
import type { NatContext } from './context.js';
import { setIpLength } from './rewrite.js';
import { TS_OPTION_LEN } from './timestamps.js';

export const TOA_LEN_V4 = 8;
export const TOA_LEN_V6 = 20;

/** The option area every stack sends on segments of a connection with timestamps. */
const NOP_NOP_TS_LEN = 12;

/**
 * Scan the options of the parsed TCP packet into c.optOffsets, and note where its timestamp
 * is and whether it has other options (c.optTs, c.optOther). Returns the count or −1.
 * NOP NOP TS, the layout of nearly every segment with timestamps, is recognised without a scan.
 */
export function scanPacketOptions(c: NatContext): number {
  c.optTs = -1;
  c.optOther = false;
  if (c.pThl === TCP_HEADER_MIN) return 0;
  const b = c.buf;
  const start = c.pL4 + TCP_HEADER_MIN;
  const offs = c.optOffsets;
  if (
    c.pThl === TCP_HEADER_MIN + NOP_NOP_TS_LEN &&
    b[start] === TCPOPT_NOP &&
    b[start + 1] === TCPOPT_NOP &&
    b[start + 2] === TCPOPT_TIMESTAMP &&
    b[start + 3] === TS_OPTION_LEN
  ) {
    offs[0] = start;
    offs[1] = start + 1;
    offs[2] = start + 2;
    c.optTs = start + 2;
    return 3;
  }
  const n = scanOptions(b, start, c.pL4 + c.pThl, offs);
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const kind = b[o]!;
    if (kind === TCPOPT_NOP) continue;
    if (kind === TCPOPT_TIMESTAMP && b[o + 1] === TS_OPTION_LEN && c.optTs < 0) c.optTs = o;
    else c.optOther = true;
  }
  return n;
}

function hasOption(b: Uint8Array, offs: Int32Array, n: number, kind: number): boolean {
  for (let i = 0; i < n; i++) if (b[offs[i]!] === kind) return true;
  return false;
}

function isToaLike(kind: number, len: number, k4: number, k6: number): boolean {
  return (len === TOA_LEN_V4 || len === TOA_LEN_V6) && (kind === 254 || kind === 253 || kind === k4 || kind === k6);
}

/** Whether the option at `o` is left out of a rebuilt option area at pruning `level`. */
function leftOut(b: Uint8Array, o: number, level: number, k4: number, k6: number, stripTs: boolean): boolean {
  const kind = b[o]!;
  if (kind === TCPOPT_NOP) return level >= 1;
  const len = b[o + 1]!;
  if (isToaLike(kind, len, k4, k6)) return true;
  if (kind === TCPOPT_TIMESTAMP) return stripTs;
  return kind === TCPOPT_SACK && level >= 2;
}

/**
 * Options of a client → RS packet after its headers were rewritten: insert TOA when
 * `wantToa`, remove any client TOA, strip timestamps from a SYN if the service says so.
 * `n` options were scanned into c.optOffsets. Returns the packet's new end offset.
 */
export function inboundOptions(
  c: NatContext,
  svc: number,
  rec: Int32Array,
  base: number,
  n: number,
  wantToa: boolean,
): number {
  const b = c.buf;
  const s = c.services;
  const k4 = s.toaKindV4[svc]!;
  const k6 = s.toaKindV6[svc]!;
  const stripTs = (c.pFlags & TCP_SYN) !== 0 && s.stripTs[svc] === 1;
  // Only NOPs and a timestamp that stays: nothing to add, remove or blank.
  if (!wantToa && !c.optOther && !(stripTs && c.optTs >= 0)) return c.pEnd;
  if (wantToa && hasOption(b, c.optOffsets, n, TCPOPT_AO)) {
    // TCP-AO authenticates the options (RFC 5925): adding one would break the connection.
    // (MD5, RFC 2385, excludes options and is unaffected.) Counted like no room.
    wantToa = false;
    c.counters[C_TOA_NO_ROOM] = c.counters[C_TOA_NO_ROOM]! + 1;
  }
  if (wantToa) {
    const end = insertToa(c, rec, base, n, stripTs, k4, k6);
    if (end >= 0) return end;
    c.counters[C_TOA_NO_ROOM] = c.counters[C_TOA_NO_ROOM]! + 1;
  }
  // No TOA this time: blank out what must not reach the real server, in place.
  const offs = c.optOffsets;
  let touched = false;
  const optStart = c.pL4 + TCP_HEADER_MIN;
  const optLen = c.pThl - TCP_HEADER_MIN;
  let oldSum = 0;
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const kind = b[o]!;
    if (kind === TCPOPT_NOP) continue;
    const len = b[o + 1]!;
    const toa = isToaLike(kind, len, k4, k6);
    if (toa || (stripTs && kind === TCPOPT_TIMESTAMP)) {
      if (!touched) {
        oldSum = sumWords(b, optStart, optLen);
        touched = true;
      }
      b.fill(TCPOPT_NOP, o, o + len);
      const ctr = toa ? C_CLIENT_TOA_REMOVED : C_TS_STRIPPED;
      c.counters[ctr] = c.counters[ctr]! + 1;
    }
  }
  if (touched && !c.pPartial) {
    const dv = c.dv;
    const at = c.pL4 + TCP_CSUM;
    dv.setUint16(at, csumFinish(csumReplaceSum(csumStart(dv.getUint16(at)), oldSum, sumWords(b, optStart, optLen))));
  }
  return c.pEnd;
}

/** Rebuild the option area with TOA first. Returns the new end, or −1 if it cannot fit. */
function insertToa(
  c: NatContext,
  rec: Int32Array,
  base: number,
  n: number,
  stripTs: boolean,
  k4: number,
  k6: number,
): number {
  const b = c.buf;
  const offs = c.optOffsets;
  const v4 = c.pAf === AF_INET;
  const toaLen = v4 ? TOA_LEN_V4 : TOA_LEN_V6;
  const oldOptLen = c.pThl - TCP_HEADER_MIN;
  let level = 0;
  let newOptLen = 0;
  let newEnd = 0;
  for (; level <= 2; level++) {
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const o = offs[i]!;
      if (!leftOut(b, o, level, k4, k6, stripTs)) kept += b[o] === TCPOPT_NOP ? 1 : b[o + 1]!;
    }
    newOptLen = (toaLen + kept + 3) & ~3;
    newEnd = c.pEnd + newOptLen - oldOptLen;
    if (newOptLen > 40 || newEnd > c.slotEnd) continue;
    // A GSO super-packet is checked per segment (below); only the IP length limit applies.
    if (c.pGso ? newEnd - c.pL3 - (v4 ? 0 : IPV6_HEADER_LEN) <= IP_LENGTH_MAX : newEnd - c.pL3 <= c.opts.mtu) break;
  }
  if (level > 2) {
    if (c.pGso) c.counters[C_TOA_SKIPPED_GSO] = c.counters[C_TOA_SKIPPED_GSO]! + 1;
    return -1;
  }

  // Assemble the new option area in scratch: TOA, then the kept client options, NOP padding.
  const o2 = c.optScratch;
  let w = putToa(o2, 0, v4 ? k4 : k6, rec, base, v4);
  let removedToa = 0;
  let removedTs = 0;
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const len = b[o] === TCPOPT_NOP ? 1 : b[o + 1]!;
    if (leftOut(b, o, level, k4, k6, stripTs)) {
      if (b[o] === TCPOPT_TIMESTAMP) removedTs++;
      else if (b[o] !== TCPOPT_NOP && b[o] !== TCPOPT_SACK) removedToa++;
      continue;
    }
    for (let j = 0; j < len; j++) o2[w++] = b[o + j]!;
  }
  while (w < newOptLen) o2[w++] = TCPOPT_NOP;

  const optStart = c.pL4 + TCP_HEADER_MIN;
  const oldSum = sumWords(b, optStart, oldOptLen);
  const newSum = sumWords(o2, 0, newOptLen);
  // Move the payload (an even shift keeps its checksum words aligned: its sum is unchanged).
  b.copyWithin(optStart + newOptLen, optStart + oldOptLen, c.pEnd);
  for (let j = 0; j < newOptLen; j++) b[optStart + j] = o2[j]!;

  const dv = c.dv;
  const l4 = c.pL4;
  const oldDoff = dv.getUint16(l4 + 12);
  const newDoff = (((TCP_HEADER_MIN + newOptLen) >>> 2) << 12) | (oldDoff & 0x0fff);
  dv.setUint16(l4 + 12, newDoff);
  if (c.pPartial) {
    // Only the pseudo-header's TCP length is in a partial field; the kernel sums the rest.
    const field = dv.getUint16(l4 + TCP_CSUM);
    dv.setUint16(l4 + TCP_CSUM, partialFinish(csumReplace16(partialStart(field), c.pEnd - l4, newEnd - l4)));
  } else {
    let acc = csumStart(dv.getUint16(l4 + TCP_CSUM));
    acc = csumReplaceSum(acc, oldSum, newSum);
    acc = csumReplace16(acc, oldDoff, newDoff);
    acc = csumReplace16(acc, c.pEnd - l4, newEnd - l4); // pseudo-header TCP length
    dv.setUint16(l4 + TCP_CSUM, csumFinish(acc));
  }
  setIpLength(c, newEnd);
  if (c.pGso) fixGsoHeader(c, newOptLen - oldOptLen, TCP_HEADER_MIN + newOptLen);
  c.pThl = TCP_HEADER_MIN + newOptLen;
  c.pEnd = newEnd;

  const ctr = c.counters;
  ctr[C_TOA_INSERTED] = ctr[C_TOA_INSERTED]! + 1;
  if (level > 0) ctr[C_TOA_PRUNED] = ctr[C_TOA_PRUNED]! + 1;
  if (removedToa > 0) ctr[C_CLIENT_TOA_REMOVED] = ctr[C_CLIENT_TOA_REMOVED]! + removedToa;
  if (removedTs > 0) ctr[C_TS_STRIPPED] = ctr[C_TS_STRIPPED]! + removedTs;
  return newEnd;
}

/** The TOA option of session `base` (its client's address and port) at o[w]; returns the new w. */
function putToa(o: Uint8Array, w: number, kind: number, rec: Int32Array, base: number, v4: boolean): number {
  o[w++] = kind;
  o[w++] = v4 ? TOA_LEN_V4 : TOA_LEN_V6;
  const cport = rec[base + R_IN_PORTS]! >>> 16;
  o[w++] = cport >>> 8;
  o[w++] = cport & 0xff;
  for (let k = 0; k < (v4 ? 1 : 4); k++) {
    const word = rec[addrWord(base + R_CIP0, base + R_CIP1, k)]!;
    o[w++] = word >>> 24;
    o[w++] = (word >>> 16) & 0xff;
    o[w++] = (word >>> 8) & 0xff;
    o[w++] = word & 0xff;
  }
  return w;
}

/** TOA of service `svc` for session `base` (family `af`) at o[w], for segments the LB writes
 * itself (synproxy.ts); returns the new w. */
export function writeToa(
  c: NatContext,
  o: Uint8Array,
  w: number,
  svc: number,
  rec: Int32Array,
  base: number,
  af: number,
): number {
  const v4 = af === AF_INET;
  const w2 = putToa(o, w, v4 ? c.services.toaKindV4[svc]! : c.services.toaKindV6[svc]!, rec, base, v4);
  c.counters[C_TOA_INSERTED] = c.counters[C_TOA_INSERTED]! + 1;
  return w2;
}

/**
 * virtio_net_hdr of a GSO packet whose TCP header grew by `growth`: hdr_len follows, and
 * gso_size shrinks when header + segment would no longer fit the MTU. The header's 16-bit
 * fields are little-endian (legacy virtio, host order on the hosts tunvs runs on).
 */
function fixGsoHeader(c: NatContext, growth: number, thl: number): void {
  const dv = c.dv;
  const v = c.pVnet;
  dv.setUint16(v + 2, dv.getUint16(v + 2, true) + growth, true);
  const gsoSize = dv.getUint16(v + 4, true);
  const segment = c.pL4 - c.pL3 + thl + gsoSize;
  if (segment > c.opts.mtu) dv.setUint16(v + 4, gsoSize - (segment - c.opts.mtu), true);
}

/**
 * Shift both edges of every SACK block by −`sackDelta`, and lower the MSS of a SYN-ACK by
 * `clampBy` so the client's segments still fit once TOA is added. RS → client: SACK blocks
 * back into the client's sequence space (−delta); client → RS of a proxied session: into the
 * real server's (−srv delta).
 */
export function shiftSackClampMss(c: NatContext, n: number, sackDelta: number, clampBy: number): void {
  if (!c.optOther) return; // neither SACK nor MSS
  const b = c.buf;
  const dv = c.dv;
  const offs = c.optOffsets;
  const optStart = c.pL4 + TCP_HEADER_MIN;
  const optLen = c.pThl - TCP_HEADER_MIN;
  let oldSum = -1;
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const kind = b[o]!;
    if (kind === TCPOPT_SACK && sackDelta !== 0) {
      if (oldSum < 0) oldSum = sumWords(b, optStart, optLen);
      const edges = (b[o + 1]! - 2) >>> 2;
      for (let e = 0; e < edges; e++) {
        const at = o + 2 + 4 * e;
        dv.setInt32(at, (dv.getInt32(at) - sackDelta) | 0);
      }
    } else if (kind === TCPOPT_MSS && clampBy > 0 && b[o + 1] === 4) {
      const mss = dv.getUint16(o + 2);
      // Never clamp below the IPv4 minimum MSS; a server announcing less is left alone.
      if (mss - clampBy >= 536) {
        if (oldSum < 0) oldSum = sumWords(b, optStart, optLen);
        dv.setUint16(o + 2, mss - clampBy);
        c.counters[C_MSS_CLAMPED] = c.counters[C_MSS_CLAMPED]! + 1;
      }
    }
  }
  if (oldSum >= 0 && !c.pPartial) {
    const at = c.pL4 + TCP_CSUM;
    dv.setUint16(at, csumFinish(csumReplaceSum(csumStart(dv.getUint16(at)), oldSum, sumWords(b, optStart, optLen))));
  }
}
