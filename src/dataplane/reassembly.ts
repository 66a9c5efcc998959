/**
 * IP reassembly for one worker's engine. FULLNAT, NAT and the session lookup of every mode
 * need a packet's ports, and only a datagram's first fragment has them; so, as IPVS does
 * (ip_vs_gather_frags), the fragments of a datagram to a VIP or a local address are kept
 * until the datagram is whole, and the engine then handles it as one packet and writes it out
 * as fragments again when it is larger than the MTU (nat/fragment.ts).
 *
 *   add            a fragment (IPv4 with MF or an offset; IPv6 with its fragment header
 *                  right after the fixed one or behind options headers): checked, copied
 *                  into chunks, and filed under its datagram (addresses, protocol,
 *                  identification); PENDING, WHOLE, or a drop reason
 *   build          the whole datagram: the first fragment's header (no fragment fields, the
 *                  new length; IPv6: its unfragmentable part, the fragment header taken out)
 *                  and every fragment's payload
 *   copyFragments  its fragments as they came, for the worker that owns the datagram (the
 *                  steering program sends all of a datagram's fragments to one worker, not to
 *                  its owner: only the first says whose it is)
 *   expire         datagrams not whole within FRAG_TIMEOUT_MS
 *
 * Overlapping fragments end their datagram (RFC 5722, as Linux does for both families).
 *
 * Memory is allocated once, at the first fragment, as the rest of the engine's: the fragments'
 * bytes in FRAG_BYTES_MAX of FRAG_CHUNK_BYTES chunks (a fragment is a chain of them), per
 * chunk and per datagram slot the fields below in typed arrays, and the index of datagrams by
 * key (open addressing in an Int32Array, the keys as words: no string per fragment). A whole
 * datagram's chunks stay readable until the next add or expire.
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
  IPPROTO_FRAGMENT,
  IPV6_FRAG_HEADER_LEN,
  IPV6_FRAG_MORE,
  IPV6_FRAG_OFFSET_MASK,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
  IPV6_PAYLOAD_LEN,
} from '../packet/headers.js';
import { lastOptionsHeader, optionsEnd } from '../packet/ipv6_ext.js';
import { DROP_FRAGMENT_TABLE_FULL, DROP_IPV4_FRAGMENT, DROP_IPV6_FRAGMENT } from '../nat/verdict.js';

/** add: the fragment is kept; its datagram is not whole yet. */
export const FRAG_PENDING = 0;
/** add: the fragment made its datagram whole (build, copyFragments). */
export const FRAG_WHOLE = 1;

const CHUNKS = FRAG_BYTES_MAX / FRAG_CHUNK_BYTES;
/** The end of a chain (chunks, fragments, free slots, the age list). */
const NONE = -1;
/** A datagram's key (RFC 791, RFC 8200 §4.5): the family (IPv4: and the protocol), the
 * identification, then source and destination address (IPv4: a word each; IPv6: four each). */
const KEY_WORDS = 10;
/** The index of datagrams by key: open addressing with linear probing, at most half full
 * (a power of two of at least twice FRAG_DATAGRAMS_MAX entries); an entry is slot + 1, 0 empty. */
const INDEX_SIZE = 1 << Math.ceil(Math.log2(2 * FRAG_DATAGRAMS_MAX));

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
  /** Datagram slots by key (no string or object per fragment: the engine allocates nothing
   * per packet, and a flood of fragments is what this table must take). The hash is keyed
   * with a random seed, so a sender cannot choose keys that pile up in one probe run. */
  private readonly index = new Int32Array(INDEX_SIZE);
  private readonly seed = (Math.random() * 0x100000000) | 0;
  /** The key of the fragment in hand, and how many of its words are used. */
  private readonly key = new Int32Array(KEY_WORDS);
  private keyLength = 0;
  /** Datagrams in the index, and the oldest and newest of them (a list by first fragment's
   * time: expire stops at the first live one). */
  private indexed = 0;
  private oldest = NONE;
  private newest = NONE;
  /** Per datagram slot: its key and its hash, whether it is in the index, its neighbours in
   * the age list, family, first fragment's time, fragment list, the payload's length once
   * the last fragment came (−1 before), payload bytes held, fragments and fragment bytes
   * held. */
  private readonly dKey = new Int32Array(FRAG_DATAGRAMS_MAX * KEY_WORDS);
  private readonly dHash = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dIndexed = new Uint8Array(FRAG_DATAGRAMS_MAX);
  private readonly dOlder = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dNewer = new Int32Array(FRAG_DATAGRAMS_MAX);
  private readonly dV6 = new Uint8Array(FRAG_DATAGRAMS_MAX);
  /** IPv6: the offset in the first fragment of the byte that names its fragment header. */
  private readonly dNamer = new Int32Array(FRAG_DATAGRAMS_MAX);
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
    return this.indexed;
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
    // IPv6: where the byte naming the fragment header is (the fixed header's next header, or
    // the last options header's).
    let namer = 0;
    const key = this.key;
    if (v6) {
      end = off + IPV6_HEADER_LEN + dv.getUint16(off + IPV6_PAYLOAD_LEN);
      // The fragment header: right after the fixed one, or behind options headers (the
      // unfragmentable part: a Hop-by-Hop header, as senders put it; parse looked past them).
      let fragment = off + IPV6_HEADER_LEN;
      namer = IPV6_NEXT;
      if (buf[off + IPV6_NEXT] !== IPPROTO_FRAGMENT) {
        const last = lastOptionsHeader(buf, off, end);
        if (last < 0) return -DROP_IPV6_FRAGMENT;
        fragment = optionsEnd(buf, last);
        namer = last - off;
      }
      if (fragment + IPV6_FRAG_HEADER_LEN > end) return -DROP_IPV6_FRAGMENT;
      header = fragment - off + IPV6_FRAG_HEADER_LEN;
      const field = dv.getUint16(fragment + 2);
      offset = field & IPV6_FRAG_OFFSET_MASK;
      more = (field & IPV6_FRAG_MORE) !== 0;
      key[0] = 6;
      key[1] = dv.getInt32(fragment + 4);
      for (let i = 0; i < 8; i++) key[2 + i] = dv.getInt32(off + 8 + 4 * i);
      this.keyLength = 10;
    } else {
      header = (buf[off]! & 15) << 2;
      end = off + dv.getUint16(off + IPV4_TOTAL_LEN);
      const field = dv.getUint16(off + IPV4_FRAG);
      offset = (field & IPV4_FRAG_OFFSET_MASK) << 3;
      more = (field & IPV4_FRAG_MF) !== 0;
      key[0] = (4 << 8) | buf[off + 9]!;
      key[1] = dv.getUint16(off + IPV4_ID);
      key[2] = dv.getInt32(off + 12);
      key[3] = dv.getInt32(off + 16);
      this.keyLength = 4;
    }
    const malformed = v6 ? -DROP_IPV6_FRAGMENT : -DROP_IPV4_FRAGMENT;
    const length = end - off - header;
    if (more && (length === 0 || length % 8 !== 0)) return malformed;
    // IPv4's total length and IPv6's payload length (the options headers in front included)
    // are 16 bits.
    if (offset + length + (v6 ? header - IPV6_HEADER_LEN - IPV6_FRAG_HEADER_LEN : header) > 0xffff) return malformed;
    const bytes = end - off;
    const hash = this.hashKey();
    let d = this.find(hash);
    if (chunksOf(bytes) > this.chunksFree || (d === NONE && this.freeSlotCount === 0)) return -DROP_FRAGMENT_TABLE_FULL;
    if (d === NONE) d = this.open(hash, v6, nowMs);
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
    if (offset === 0) this.dNamer[d] = namer;
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
    this.unindex(d);
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
      // The first fragment's unfragmentable part, its fragment header taken out: what named
      // that header names what it named.
      header = this.fragPayload[first]! - IPV6_FRAG_HEADER_LEN;
      this.read(first, 0, header, out, at);
      this.read(first, header, 1, out, at + this.dNamer[d]!);
      dv.setUint16(at + IPV6_PAYLOAD_LEN, header - IPV6_HEADER_LEN + this.dTotal[d]!);
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
    while (this.oldest !== NONE && nowMs - this.dFirstMs[this.oldest]! >= FRAG_TIMEOUT_MS) {
      dropped += this.dCount[this.oldest]!;
      this.close(this.oldest);
    }
    return dropped;
  }

  /** The key's hash (a seeded multiply-xor mix of its words, fmix32 to finish). */
  private hashKey(): number {
    const k = this.key;
    let h = this.seed;
    for (let i = 0; i < this.keyLength; i++) {
      h = Math.imul(h ^ k[i]!, 0xcc9e2d51);
      h = (h << 15) | (h >>> 17);
    }
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  /** The slot of the datagram whose key is the one in hand (its hash `hash`), or NONE. */
  private find(hash: number): number {
    const mask = INDEX_SIZE - 1;
    const n = this.keyLength;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const e = this.index[i]!;
      if (e === 0) return NONE;
      const d = e - 1;
      if (this.dHash[d] !== hash) continue;
      const at = d * KEY_WORDS;
      let same = true;
      for (let w = 0; w < n && same; w++) same = this.dKey[at + w] === this.key[w];
      if (same) return d;
    }
  }

  /** Take slot `d` out of the index and the age list (backward-shift deletion: the entries
   * after it in its probe run move up, so no tombstones are left). */
  private unindex(d: number): void {
    if (this.dIndexed[d] === 0) return;
    this.dIndexed[d] = 0;
    this.indexed--;
    const mask = INDEX_SIZE - 1;
    const index = this.index;
    let i = this.dHash[d]! & mask;
    while (index[i] !== d + 1) i = (i + 1) & mask;
    for (let j = (i + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      // The entry at j may fill the hole at i if its home is not in (i, j] (cyclically).
      const home = this.dHash[index[j]! - 1]! & mask;
      if (((j - home) & mask) >= ((j - i) & mask)) {
        index[i] = index[j]!;
        i = j;
      }
    }
    index[i] = 0;
    const older = this.dOlder[d]!;
    const newer = this.dNewer[d]!;
    if (older === NONE) this.oldest = newer;
    else this.dNewer[older] = newer;
    if (newer === NONE) this.newest = older;
    else this.dOlder[newer] = older;
  }

  private open(hash: number, v6: boolean, nowMs: number): number {
    const d = this.freeSlots[--this.freeSlotCount]!;
    this.dKey.set(this.key, d * KEY_WORDS);
    this.dHash[d] = hash;
    const mask = INDEX_SIZE - 1;
    let i = hash & mask;
    while (this.index[i] !== 0) i = (i + 1) & mask;
    this.index[i] = d + 1;
    this.dIndexed[d] = 1;
    this.indexed++;
    this.dOlder[d] = this.newest;
    this.dNewer[d] = NONE;
    if (this.newest === NONE) this.oldest = d;
    else this.dNewer[this.newest] = d;
    this.newest = d;
    this.dV6[d] = v6 ? 1 : 0;
    this.dFirstMs[d] = nowMs;
    this.dHead[d] = this.dTail[d] = NONE;
    this.dTotal[d] = -1;
    this.dHave[d] = this.dCount[d] = this.dHeld[d] = 0;
    return d;
  }

  /** Free slot `d` and its fragments' chunks. */
  private close(d: number): void {
    this.unindex(d);
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
