/**
 * Hand-over of packets between workers: one single-producer/single-consumer ring per
 * (sender, owner) pair in a SharedArrayBuffer. With the steering program attached this
 * path carries almost nothing (ICMP errors, packets of a flow whose owner the kernel could
 * not compute); without it (`tun.steering: false`, no CAP_BPF) and with `io: xdp`, whose
 * receive queues the NIC picks, it carries what lands on the wrong worker. It exists so that
 * no packet is ever processed by the wrong shard, and takes any packet a queue can deliver:
 * a 64 KiB GSO super-packet as well as a frame.
 *
 *   header (int32): [0] head (bytes read, consumer-owned)
 *                   [1] tail (bytes written, producer-owned)
 *                   [2] wake pending (1: the consumer has been told to drain)
 *   then `capacity` bytes of records, each at an 8-byte boundary:
 *     int32 length, int32 unused, the packet's bytes, padding to 8.
 *   A record that would run past the end is not split: the producer writes WRAP in the
 *   length word where it would have started and puts the record at offset 0.
 *
 * head and tail only grow (mod 2^31 wrap is fine: the capacity divides 2^32, and only their
 * difference and their offset in the ring are used). The producer publishes a record by
 * storing tail after its bytes (Atomics.store is sequentially consistent), the consumer frees
 * it by storing head after reading.
 *
 *   push / pushBytes (producer) → claimWake → … → drain (consumer)
 */

import { HANDOFF_BUDGET_BYTES, HANDOFF_RING_MAX_BYTES, HANDOFF_RING_MIN_BYTES } from '../constants.js';
import type { PacketRing } from './ring.js';

const HEAD = 0;
const TAIL = 1;
const WAKE = 2;
const HEADER_BYTES = 16;
/** Bytes before a record's packet: its length word and a word that keeps records 8-aligned. */
const RECORD_HEADER_BYTES = 8;
/** The length word of a skipped ring end: the next record is at offset 0. */
const WRAP = -1;

function recordBytes(len: number): number {
  return RECORD_HEADER_BYTES + ((len + 7) & ~7);
}

/** Bytes per ring for `workers` forwarders: HANDOFF_BUDGET_BYTES over the n × (n − 1)
 * rings, a power of two between HANDOFF_RING_MIN_BYTES and HANDOFF_RING_MAX_BYTES. */
export function handoffRingBytes(workers: number): number {
  const pairs = Math.max(1, workers * (workers - 1));
  let bytes = HANDOFF_RING_MIN_BYTES;
  while (bytes * 2 <= HANDOFF_RING_MAX_BYTES && pairs * (HEADER_BYTES + bytes * 2) <= HANDOFF_BUDGET_BYTES) bytes *= 2;
  return bytes;
}

export class HandoffRing {
  readonly sab: SharedArrayBuffer;
  /** Bytes of records the ring holds (a power of two). */
  readonly capacity: number;
  private readonly mask: number;
  private readonly ctl: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly words: Int32Array;

  /** A new ring of `capacity` bytes (a power of two), or a view of another thread's `sab`. */
  constructor(sab?: SharedArrayBuffer, capacity = HANDOFF_RING_MIN_BYTES) {
    if (sab) capacity = sab.byteLength - HEADER_BYTES;
    if (!Number.isInteger(capacity) || capacity < 64 || (capacity & (capacity - 1)) !== 0)
      throw new RangeError('hand-off ring size mismatch');
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.sab = sab ?? new SharedArrayBuffer(HEADER_BYTES + capacity);
    this.ctl = new Int32Array(this.sab, 0, 4);
    this.bytes = new Uint8Array(this.sab, HEADER_BYTES, capacity);
    this.words = new Int32Array(this.sab, HEADER_BYTES, capacity >> 2);
  }

  /** The largest packet `push` takes: an empty ring must hold it wherever its tail is. */
  get maxPacket(): number {
    return (this.capacity >> 1) - RECORD_HEADER_BYTES;
  }

  /**
   * Producer: copy slot `i` of `from` in (headroom included). Returns false when the ring
   * has no room for it now.
   */
  push(from: PacketRing, i: number): boolean {
    const off = from.offsets[i]!;
    // A view per handed-over packet: a subarray is cheap beside the copy of the packet.
    return this.pushBytes(from.bytes.subarray(off, off + from.lens[i]!), 0);
  }

  /** Producer: `headroom` bytes of zeros (an empty virtio_net_hdr), then `packet`. */
  pushBytes(packet: Uint8Array, headroom: number): boolean {
    const len = headroom + packet.length;
    if (len > this.maxPacket) return false;
    const tail = this.ctl[TAIL]!;
    const used = (tail - Atomics.load(this.ctl, HEAD)) | 0;
    const at = tail & this.mask;
    const need = recordBytes(len);
    const skip = at + need > this.capacity ? this.capacity - at : 0;
    if (used + skip + need > this.capacity) return false;
    if (skip > 0) this.words[at >> 2] = WRAP;
    const start = skip > 0 ? 0 : at;
    const data = start + RECORD_HEADER_BYTES;
    if (headroom > 0) this.bytes.fill(0, data, data + headroom);
    this.bytes.set(packet, data + headroom);
    this.words[start >> 2] = len;
    Atomics.store(this.ctl, TAIL, (tail + skip + need) | 0);
    return true;
  }

  /** Producer: true exactly once per drain cycle (the caller then sends the wake-up). */
  claimWake(): boolean {
    return Atomics.compareExchange(this.ctl, WAKE, 0, 1) === 0;
  }

  /** Consumer: move up to `into.slots` packets into `into` (its slots must hold
   * `maxPacket` bytes); returns how many. */
  drain(into: PacketRing): number {
    // Clear the flag first: a push after this point sends a new wake-up.
    Atomics.store(this.ctl, WAKE, 0);
    let head = this.ctl[HEAD]!;
    const tail = Atomics.load(this.ctl, TAIL);
    let n = 0;
    while (n < into.slots && head !== tail) {
      let at = head & this.mask;
      let len = this.words[at >> 2]!;
      if (len === WRAP) {
        head = (head + this.capacity - at) | 0;
        at = 0;
        len = this.words[0]!;
      }
      into.bytes.set(this.bytes.subarray(at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + len), into.offsets[n]);
      into.lens[n++] = len;
      head = (head + recordBytes(len)) | 0;
    }
    Atomics.store(this.ctl, HEAD, head);
    return n;
  }

  /** Bytes of records not yet drained (0: empty). */
  get pending(): number {
    return (Atomics.load(this.ctl, TAIL) - Atomics.load(this.ctl, HEAD)) | 0;
  }
}
