/**
 * Hand-over of packets between workers: one single-producer/single-consumer ring per
 * (sender, owner) pair in a SharedArrayBuffer. With the steering program attached this
 * path carries almost nothing (ICMP errors, packets of a flow whose owner the kernel could
 * not compute); it exists so that no packet is ever processed by the wrong shard.
 *
 *   header (int32): [0] head (next slot to read, consumer-owned)
 *                   [1] tail (next slot to write, producer-owned)
 *                   [2] wake pending (1: the consumer has been told to drain)
 *   then slots × HANDOFF_SLOT_BYTES of packet bytes, then slots × int32 lengths.
 *
 * head and tail only grow (mod 2^31 wrap is fine: only their difference is used).
 * The producer publishes a packet by storing tail after the bytes (Atomics.store is
 * sequentially consistent), the consumer frees a slot by storing head after reading.
 */

import { SLOT_SIZE_BYTES } from '../constants.js';
import type { PacketRing } from './ring.js';

export const HANDOFF_SLOTS = 256;
const HEAD = 0;
const TAIL = 1;
const WAKE = 2;
const HEADER_BYTES = 16;

export class HandoffRing {
  readonly sab: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly lens: Int32Array;

  constructor(sab?: SharedArrayBuffer) {
    const total = HEADER_BYTES + HANDOFF_SLOTS * SLOT_SIZE_BYTES + HANDOFF_SLOTS * 4;
    this.sab = sab ?? new SharedArrayBuffer(total);
    if (this.sab.byteLength !== total) throw new RangeError('hand-off ring size mismatch');
    this.ctl = new Int32Array(this.sab, 0, 4);
    this.bytes = new Uint8Array(this.sab, HEADER_BYTES, HANDOFF_SLOTS * SLOT_SIZE_BYTES);
    this.lens = new Int32Array(this.sab, HEADER_BYTES + HANDOFF_SLOTS * SLOT_SIZE_BYTES, HANDOFF_SLOTS);
  }

  /**
   * Producer: copy slot `i` of `from` in. Returns false when the ring is full, or when the
   * packet is larger than a hand-off slot (a GSO super-packet: with steering on, those are
   * TCP and reach their owner directly).
   * Sets `needsWake` when the consumer must be told (no wake-up pending).
   */
  push(from: PacketRing, i: number): boolean {
    const tail = this.ctl[TAIL]!;
    if (tail - Atomics.load(this.ctl, HEAD) >= HANDOFF_SLOTS) return false;
    const len = from.lens[i]!;
    if (len > SLOT_SIZE_BYTES) return false;
    const slot = tail & (HANDOFF_SLOTS - 1);
    const off = i * from.slotSize;
    // A view per handed-over packet: this path is rare (see the header), not per packet.
    this.bytes.set(from.bytes.subarray(off, off + len), slot * SLOT_SIZE_BYTES);
    this.lens[slot] = len;
    Atomics.store(this.ctl, TAIL, (tail + 1) | 0);
    return true;
  }

  /** Producer: true exactly once per drain cycle (the caller then sends the wake-up). */
  claimWake(): boolean {
    return Atomics.compareExchange(this.ctl, WAKE, 0, 1) === 0;
  }

  /** Consumer: move up to `into.slots` packets into `into`; returns how many. */
  drain(into: PacketRing): number {
    // Clear the flag first: a push after this point sends a new wake-up.
    Atomics.store(this.ctl, WAKE, 0);
    const head = this.ctl[HEAD]!;
    const avail = Atomics.load(this.ctl, TAIL) - head;
    const n = Math.min(avail, into.slots);
    for (let k = 0; k < n; k++) {
      const slot = (head + k) & (HANDOFF_SLOTS - 1);
      const len = this.lens[slot]!;
      into.bytes.set(this.bytes.subarray(slot * SLOT_SIZE_BYTES, slot * SLOT_SIZE_BYTES + len), k * into.slotSize);
      into.lens[k] = len;
    }
    Atomics.store(this.ctl, HEAD, (head + n) | 0);
    return n;
  }

  get pending(): number {
    return Atomics.load(this.ctl, TAIL) - Atomics.load(this.ctl, HEAD);
  }
}
