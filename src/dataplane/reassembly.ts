/**
 * IP reassembly for one worker's engine. FULLNAT, NAT and the session lookup of every mode
 * need a packet's ports, and only a datagram's first fragment has them; so, as IPVS does
 * (ip_vs_gather_frags), the fragments of a datagram to a VIP or a local address are kept
 * until the datagram is whole, and the engine then handles it as one packet and writes it out
 * as fragments again when it is larger than the MTU (nat/fragment.ts).
 *
 *   add            a fragment (IPv4 with MF or an offset; IPv6 with its fragment header
 *                  right after the fixed one): checked, copied into chunks, and filed under
 *                  its datagram (addresses, protocol, identification); PENDING, WHOLE, or a
 *                  drop reason
 *   build          the whole datagram: the first fragment's header (no fragment fields, the
 *                  new length; IPv6: the fragment header taken out) and every fragment's
 *                  payload
 *   copyFragments  its fragments as they came, for the worker that owns the datagram (the
 *                  steering program sends all of a datagram's fragments to one worker, not to
 *                  its owner: only the first says whose it is)
 *   expire         datagrams not whole within FRAG_TIMEOUT_MS
 *
 * Overlapping fragments end their datagram (RFC 5722, as Linux does for both families).
 *
 * Memory is allocated once, at the first fragment, as the rest of the engine's: the fragments'
 * bytes in FRAG_BYTES_MAX of FRAG_CHUNK_BYTES chunks (a fragment is a chain of them), and
 * per chunk and per datagram slot the fields below in typed arrays. A whole datagram's chunks
 * stay readable until the next add or expire.
 */

import { FRAG_BYTES_MAX, FRAG_CHUNK_BYTES, FRAG_DATAGRAMS_MAX, FRAG_TIMEOUT_MS } from '../constants.js';
import { csumFromSum, sumWords } from '../packet/checksum.js';
import {
  IPV4_CSUM,
  IPV4_FRAG,
  IPV4_FRAG_MF,
  IPV4_FRAG_OFFSET_MASK,
  IPV4_ID,
  IPV4_TOTAL_LEN,
  IPV6_FRAG_HEADER_LEN,
  IPV6_FRAG_MORE,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
  IPV6_PAYLOAD_LEN,
} from '../packet/headers.js';
import { DROP_FRAGMENT_TABLE_FULL, DROP_IPV4_FRAGMENT, DROP_IPV6_FRAGMENT } from '../nat/verdict.js';

/** add: the fragment is kept; its datagram is not whole yet. */
export const FRAG_PENDING = 0;
/** add: the fragment made its datagram whole (build, copyFragments). */
export const FRAG_WHOLE = 1;

const CHUNKS = FRAG_BYTES_MAX / FRAG_CHUNK_BYTES;
/** The end of a chain (chunks, fragments, free slots). */
const NONE = -1;

export class Reassembly {
  private readonly store = new Uint8Array(FRAG_BYTES_MAX);
  /** Per chunk: the next chunk of its fragment (NONE after the last); the free list's link too. */
  private readonly chunkNext = new Int32Array(CHUNKS);
  private freeChunk = 0;
  private chunksFree = CHUNKS;
  /** Per fragment, at its first chunk: the next fragment of its datagram (in arrival order),
   * its place in the datagram's payload, its payload's length, where that starts in the
   * fragment (its headers' bytes), and its bytes. */
  private readonly fragNext = new Int32Array(CHUNKS);
  private readonly fragOffset = new Int32Array(CHUNKS);
  private readonly fragLength = new Int32Array(CHUNKS);
  private readonly fragPayload = new Int32Array(CHUNKS);
  private readonly fragBytes = new Int32Array(CHUNKS);
  /** Datagram slots by key, oldest first (a Map keeps insertion order): expire stops at the
   * first live one. */
  private readonly slots = new Map<string, number>();
  /** Per datagram slot: its key, family, first fragment's time, fragment list, the payload's
   * length once the last fragment came (−1 before), payload bytes held, fragments and
   * fragment bytes held. */
  private readonly dKey: string[] = new Array<string>(FRAG_DATAGRAMS_MAX).fill('');
  private readonly dV6 = new Uint8Array(FRAG_DATAGRAMS_MAX);
  private readonly dFirstMs = new Float64Array(FRAG_DATAGRAMS_MAX);
  private readonly dHead = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dTail = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dTotal = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dHave = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dCount = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dHeld = new Int32Array(FRAG_DATAGRAMS_MAX);
  /** Free datagram slots, a stack. */
  private readonly freeSlots = new Int32Array(FRAG_DATAGRAMS_MAX);
  private freeSlotCount = FRAG_DATAGRAMS_MAX;
  private heldBytes = 0;
  /** The slot the last add made whole (NONE: none); freed at the next add or expire. */
  private whole = NONE;
  /** Fragments already held of the datagram the last add ended (an overlap): dropped with it,
   * counted by the engine. */
  alsoDropped = 0;

  constructor() {
    for (let i = 0; i < CHUNKS; i++) this.chunkNext[i] = i + 1 < CHUNKS ? i + 1 : NONE;
    for (let i = 0; i < FRAG_DATAGRAMS_MAX; i++) this.freeSlots[i] = FRAG_DATAGRAMS_MAX - 1 - i;
  }

  /** Datagrams being reassembled. */
  get size(): number {
    return this.slots.size;
  }

  /** Bytes of fragments held (of datagrams being reassembled). */
  get bytes(): number {
    return this.whole === NONE ? this.heldBytes : this.heldBytes - this.dHeld[this.whole]!;
  }

  /** File the fragment at `off` in `buf` (its IP header parsed as a fragment's by
   * NatContext.parse: its lengths are within what was read). */
  add(buf: Uint8Array, dv: DataView, off: number, nowMs: number): number {
    this.alsoDropped = 0;
    this.releaseWhole();
    const v6 = buf[off]! >>> 4 === 6;
    let header: number; // bytes before the payload
    let end: number;
    let offset: number;
    let more: boolean;
    let key: string;
    if (v6) {
      const plen = dv.getUint16(off + IPV6_PAYLOAD_LEN);
      if (plen < IPV6_FRAG_HEADER_LEN) return -DROP_IPV6_FRAGMENT;
      header = IPV6_HEADER_LEN + IPV6_FRAG_HEADER_LEN;
      end = off + IPV6_HEADER_LEN + plen;
      const field = dv.getUint16(off + IPV6_HEADER_LEN + 2);
      offset = field & IPV6_FRAG_OFFSET_MASK;
      more = (field & IPV6_FRAG_MORE) !== 0;
      key = `6 ${dv.getUint32(off + IPV6_HEADER_LEN + 4)} ${addressText(dv, off + 8, 8)}`;
    } else {
      header = (buf[off]! & 15) << 2;
      end = off + dv.getUint16(off + IPV4_TOTAL_LEN);
      const field = dv.getUint16(off + IPV4_FRAG);
      offset = (field & IPV4_FRAG_OFFSET_MASK) << 3;
      more = (field & IPV4_FRAG_MF) !== 0;
      key = `4 ${buf[off + 9]} ${dv.getUint16(off + IPV4_ID)} ${addressText(dv, off + 12, 2)}`;
    }
    const malformed = v6 ? -DROP_IPV6_FRAGMENT : -DROP_IPV4_FRAGMENT;
    const length = end - off - header;
    if (more && (length === 0 || length % 8 !== 0)) return malformed;
    // IPv4's total length and IPv6's payload length are 16 bits.
    if (offset + length + (v6 ? 0 : header) > 0xffff) return malformed;
    const bytes = end - off;
    let d = this.slots.get(key) ?? NONE;
    if (chunksOf(bytes) > this.chunksFree || (d === NONE && this.freeSlotCount === 0)) return -DROP_FRAGMENT_TABLE_FULL;
    if (d === NONE) d = this.open(key, v6, nowMs);
    const stop = offset + length;
    const total = this.dTotal[d]!;
    let bad = (!more && total >= 0) || (total >= 0 && stop > total);
    for (let f = this.dHead[d]!; f !== NONE; f = this.fragNext[f]!) {
      const from = this.fragOffset[f]!;
      const to = from + this.fragLength[f]!;
      if (offset < to && from < stop) bad = true;
      if (!more && to > stop) bad = true;
    }
    if (bad) {
      this.alsoDropped = this.dCount[d]!;
      this.close(d);
      return malformed;
    }
    const f = this.write(buf, off, bytes);
    this.fragOffset[f] = offset;
    this.fragLength[f] = length;
    this.fragPayload[f] = header;
    this.fragBytes[f] = bytes;
    this.fragNext[f] = NONE;
    if (this.dTail[d] === NONE) this.dHead[d] = f;
    else this.fragNext[this.dTail[d]!] = f;
    this.dTail[d] = f;
    this.dCount[d]!++;
    this.dHave[d]! += length;
    this.dHeld[d]! += bytes;
    this.heldBytes += bytes;
    if (!more) this.dTotal[d] = stop;
    if (this.dTotal[d]! < 0 || this.dHave[d] !== this.dTotal[d]) return FRAG_PENDING;
    this.slots.delete(key);
    this.whole = d;
    return FRAG_WHOLE;
  }

  /** Write the datagram the last add made whole into `out` (`dv` its view) at `at`; its
   * length. */
  build(out: Uint8Array, dv: DataView, at: number): number {
    const d = this.whole;
    let first = this.dHead[d]!;
    while (this.fragOffset[first] !== 0) first = this.fragNext[first]!;
    let header: number;
    if (this.dV6[d]) {
      header = IPV6_HEADER_LEN;
      this.read(first, 0, IPV6_HEADER_LEN, out, at);
      this.read(first, IPV6_HEADER_LEN, 1, out, at + IPV6_NEXT); // the fragment header's next header
      dv.setUint16(at + IPV6_PAYLOAD_LEN, this.dTotal[d]!);
    } else {
      header = this.fragPayload[first]!;
      this.read(first, 0, header, out, at);
      dv.setUint16(at + IPV4_TOTAL_LEN, header + this.dTotal[d]!);
      dv.setUint16(at + IPV4_FRAG, 0);
      dv.setUint16(at + IPV4_CSUM, 0);
      dv.setUint16(at + IPV4_CSUM, csumFromSum(sumWords(out, at, header)));
    }
    for (let f = this.dHead[d]!; f !== NONE; f = this.fragNext[f]!)
      this.read(f, this.fragPayload[f]!, this.fragLength[f]!, out, at + header + this.fragOffset[f]!);
    return header + this.dTotal[d]!;
  }

  /** Fragments of the datagram the last add made whole. */
  get wholeFragments(): number {
    return this.whole === NONE ? 0 : this.dCount[this.whole]!;
  }

  /** Copy the fragments of the datagram the last add made whole, as they came, one after
   * another into `out` from `at`; views of them there, or null when they do not fit. */
  copyFragments(out: Uint8Array, at: number): Uint8Array[] | null {
    const d = this.whole;
    if (d === NONE || at + this.dHeld[d]! > out.length) return null;
    const views: Uint8Array[] = [];
    for (let f = this.dHead[d]!; f !== NONE; f = this.fragNext[f]!) {
      const bytes = this.fragBytes[f]!;
      this.read(f, 0, bytes, out, at);
      views.push(out.subarray(at, at + bytes));
      at += bytes;
    }
    return views;
  }

  /** Drop the datagrams whose first fragment came FRAG_TIMEOUT_MS or more before `nowMs`;
   * how many fragments went with them. */
  expire(nowMs: number): number {
    this.releaseWhole();
    let dropped = 0;
    for (const d of this.slots.values()) {
      if (nowMs - this.dFirstMs[d]! < FRAG_TIMEOUT_MS) break;
      dropped += this.dCount[d]!;
      this.close(d);
    }
    return dropped;
  }

  private open(key: string, v6: boolean, nowMs: number): number {
    const d = this.freeSlots[--this.freeSlotCount]!;
    this.dKey[d] = key;
    this.dV6[d] = v6 ? 1 : 0;
    this.dFirstMs[d] = nowMs;
    this.dHead[d] = this.dTail[d] = NONE;
    this.dTotal[d] = -1;
    this.dHave[d] = this.dCount[d] = this.dHeld[d] = 0;
    this.slots.set(key, d);
    return d;
  }

  /** Free slot `d` and its fragments' chunks. */
  private close(d: number): void {
    if (this.slots.get(this.dKey[d]!) === d) this.slots.delete(this.dKey[d]!);
    for (let f = this.dHead[d]!; f !== NONE;) {
      const next = this.fragNext[f]!;
      let last = f;
      let chunks = 1;
      while (this.chunkNext[last] !== NONE) {
        last = this.chunkNext[last]!;
        chunks++;
      }
      this.chunkNext[last] = this.freeChunk;
      this.freeChunk = f;
      this.chunksFree += chunks;
      f = next;
    }
    this.heldBytes -= this.dHeld[d]!;
    this.dKey[d] = '';
    this.freeSlots[this.freeSlotCount++] = d;
  }

  private releaseWhole(): void {
    if (this.whole === NONE) return;
    this.close(this.whole);
    this.whole = NONE;
  }

  /** Copy `bytes` at buf[off] into a chain of free chunks (the caller saw there are enough);
   * its first chunk. */
  private write(buf: Uint8Array, off: number, bytes: number): number {
    const first = this.freeChunk;
    let chunk = first;
    let last = first;
    for (let done = 0; done < bytes; done += FRAG_CHUNK_BYTES) {
      const n = Math.min(FRAG_CHUNK_BYTES, bytes - done);
      this.store.set(buf.subarray(off + done, off + done + n), chunk * FRAG_CHUNK_BYTES);
      this.chunksFree--;
      last = chunk;
      chunk = this.chunkNext[chunk]!;
    }
    this.freeChunk = chunk;
    this.chunkNext[last] = NONE;
    return first;
  }

  /** Copy `length` bytes of fragment `f`, from its byte `from`, into `out` at `at`. */
  private read(f: number, from: number, length: number, out: Uint8Array, at: number): void {
    let chunk = f;
    for (; from >= FRAG_CHUNK_BYTES; from -= FRAG_CHUNK_BYTES) chunk = this.chunkNext[chunk]!;
    while (length > 0) {
      const n = Math.min(FRAG_CHUNK_BYTES - from, length);
      const s = chunk * FRAG_CHUNK_BYTES + from;
      out.set(this.store.subarray(s, s + n), at);
      at += n;
      length -= n;
      from = 0;
      chunk = this.chunkNext[chunk]!;
    }
  }
}

function chunksOf(bytes: number): number {
  return Math.ceil(bytes / FRAG_CHUNK_BYTES);
}

/** `words` big-endian 32-bit words from `at` as text (source then destination address). */
function addressText(dv: DataView, at: number, words: number): string {
  let s = '';
  for (let i = 0; i < words; i++) s += `${dv.getUint32(at + 4 * i).toString(16)}.`;
  return s;
}
