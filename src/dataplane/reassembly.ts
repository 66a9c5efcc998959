/**
 * IP reassembly for one worker's engine. FULLNAT, NAT and the session lookup of every mode
 * need a packet's ports, and only a datagram's first fragment has them; so, as IPVS does
 * (ip_vs_gather_frags), the fragments of a datagram to a VIP or a local address are kept
 * until the datagram is whole, and the engine then handles it as one packet and writes it out
 * as fragments again when it is larger than the MTU (nat/fragment.ts).
 *
 *   add      a fragment (IPv4 with MF or an offset; IPv6 with its fragment header right after
 *            the fixed one): checked, copied, and filed under its datagram (addresses,
 *            protocol, identification); PENDING, WHOLE, or a drop reason
 *   build    the whole datagram: the first fragment's header (no fragment fields, the new
 *            length; IPv6: the fragment header taken out) and every fragment's payload
 *   taken    its fragments as they came, for the worker that owns the datagram (the steering
 *            program sends all of a datagram's fragments to one worker, not to its owner: only
 *            the first says whose it is)
 *   expire   datagrams not whole within FRAG_TIMEOUT_MS
 *
 * Overlapping fragments end their datagram (RFC 5722, as Linux does for both families).
 * Fragments are rare next to whole packets: this path allocates (a copy per fragment) and
 * the hot path never reaches it.
 */

import { FRAG_BYTES_MAX, FRAG_DATAGRAMS_MAX, FRAG_TIMEOUT_MS } from '../constants.js';
import { csumFromSum, sumWords } from '../packet/checksum.js';
import {
  IPV4_CSUM,
  IPV4_FRAG,
  IPV4_FRAG_MF,
  IPV4_FRAG_OFFSET_MASK,
  IPV4_ID,
  IPV4_TOTAL_LEN,
  IPV6_FRAG_HEADER_LEN,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
  IPV6_PAYLOAD_LEN,
} from '../packet/headers.js';
import { DROP_FRAGMENT_TABLE_FULL, DROP_IPV4_FRAGMENT, DROP_IPV6_FRAGMENT } from '../nat/verdict.js';

/** add: the fragment is kept; its datagram is not whole yet. */
export const FRAG_PENDING = 0;
/** add: the fragment made its datagram whole (build, taken). */
export const FRAG_WHOLE = 1;

interface Fragment {
  /** The fragment as it came (IP header on). */
  raw: Uint8Array;
  /** Its place in the datagram's payload, and where its payload starts in `raw`. */
  offset: number;
  length: number;
  payload: number;
}

interface Datagram {
  key: string;
  v6: boolean;
  firstMs: number;
  fragments: Fragment[];
  /** The payload's length, once the last fragment came (−1 before). */
  total: number;
  /** Payload bytes held, and bytes of fragments held. */
  have: number;
  held: number;
}

export class Reassembly {
  /** By key, oldest first (a Map keeps insertion order): expire stops at the first live one. */
  private readonly datagrams = new Map<string, Datagram>();
  private heldBytes = 0;
  private whole: Datagram | null = null;
  /** Fragments already held of the datagram the last add ended (an overlap): dropped with it,
   * counted by the engine. */
  alsoDropped = 0;

  /** Datagrams being reassembled. */
  get size(): number {
    return this.datagrams.size;
  }

  /** Bytes of fragments held. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** File the fragment at `off` in `buf` (its IP header parsed as a fragment's by
   * NatContext.parse: its lengths are within what was read). */
  add(buf: Uint8Array, dv: DataView, off: number, nowMs: number): number {
    this.alsoDropped = 0;
    this.whole = null;
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
      offset = field & 0xfff8;
      more = (field & 1) !== 0;
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
    let d = this.datagrams.get(key);
    const bytes = end - off;
    if (this.heldBytes + bytes > FRAG_BYTES_MAX || (!d && this.datagrams.size >= FRAG_DATAGRAMS_MAX))
      return -DROP_FRAGMENT_TABLE_FULL;
    if (!d) {
      d = { key, v6, firstMs: nowMs, fragments: [], total: -1, have: 0, held: 0 };
      this.datagrams.set(key, d);
    }
    const stop = offset + length;
    let bad = (!more && d.total >= 0) || (d.total >= 0 && stop > d.total);
    for (const f of d.fragments) {
      if (offset < f.offset + f.length && f.offset < stop) bad = true;
      if (!more && f.offset + f.length > stop) bad = true;
    }
    if (bad) {
      this.alsoDropped = d.fragments.length;
      this.forget(d);
      return malformed;
    }
    const raw = buf.slice(off, end);
    d.fragments.push({ raw, offset, length, payload: header });
    d.have += length;
    d.held += bytes;
    this.heldBytes += bytes;
    if (!more) d.total = stop;
    if (d.total < 0 || d.have !== d.total) return FRAG_PENDING;
    this.forget(d);
    this.whole = d;
    return FRAG_WHOLE;
  }

  /** Write the datagram the last add made whole into `out` at `at`; its length. */
  build(out: Uint8Array, at: number): number {
    const d = this.whole!;
    const first = d.fragments.find((f) => f.offset === 0)!;
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    let header: number;
    if (d.v6) {
      header = IPV6_HEADER_LEN;
      out.set(first.raw.subarray(0, IPV6_HEADER_LEN), at);
      out[at + IPV6_NEXT] = first.raw[IPV6_HEADER_LEN]!; // the fragment header's next header
      dv.setUint16(at + IPV6_PAYLOAD_LEN, d.total);
    } else {
      header = first.payload;
      out.set(first.raw.subarray(0, header), at);
      dv.setUint16(at + IPV4_TOTAL_LEN, header + d.total);
      dv.setUint16(at + IPV4_FRAG, 0);
      dv.setUint16(at + IPV4_CSUM, 0);
      dv.setUint16(at + IPV4_CSUM, csumFromSum(sumWords(out, at, header)));
    }
    for (const f of d.fragments) out.set(f.raw.subarray(f.payload, f.payload + f.length), at + header + f.offset);
    return header + d.total;
  }

  /** The fragments of the datagram the last add made whole, as they came. */
  taken(): Uint8Array[] {
    return this.whole ? this.whole.fragments.map((f) => f.raw) : [];
  }

  /** Drop the datagrams whose first fragment came FRAG_TIMEOUT_MS or more before `nowMs`;
   * how many fragments went with them. */
  expire(nowMs: number): number {
    let dropped = 0;
    for (const d of this.datagrams.values()) {
      if (nowMs - d.firstMs < FRAG_TIMEOUT_MS) break;
      dropped += d.fragments.length;
      this.forget(d);
    }
    return dropped;
  }

  private forget(d: Datagram): void {
    this.datagrams.delete(d.key);
    this.heldBytes -= d.held;
  }
}

/** `words` big-endian 32-bit words from `at` as text (source then destination address). */
function addressText(dv: DataView, at: number, words: number): string {
  let s = '';
  for (let i = 0; i < words; i++) s += `${dv.getUint32(at + 4 * i).toString(16)}.`;
  return s;
}
