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

import { HANDOFF_BUDGET_BYTES, HANDOFF_SLOTS_MAX, SLOT_SIZE_BYTES } from '../constants.js';
import type { PacketRing } from './ring.js';

/** The default (and smallest) ring: what tests and a many-worker LB use. */
export const HANDOFF_SLOTS = 256;
const HEAD = 0;
const TAIL = 1;
const WAKE = 2;
const HEADER_BYTES = 16;

function ringBytes(slots: number): number {
  return HEADER_BYTES + slots * SLOT_SIZE_BYTES + slots * 4;
}

/** Slots per ring for `workers` forwarders: HANDOFF_BUDGET_BYTES over the n × (n − 1)
 * rings, a power of two between HANDOFF_SLOTS and HANDOFF_SLOTS_MAX. */
export function handoffSlots(workers: number): number {
  const pairs = Math.max(1, workers * (workers - 1));
  let slots = HANDOFF_SLOTS;
  while (slots * 2 <= HANDOFF_SLOTS_MAX && pairs * ringBytes(slots * 2) <= HANDOFF_BUDGET_BYTES) slots *= 2;
  return slots;
}

export class HandoffRing {
  readonly sab: SharedArrayBuffer;
  readonly slots: number;
  private readonly mask: number;
  private readonly ctl: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly lens: Int32Array;

  /** A new ring of `slots` slots (a power of two), or a view of another thread's `sab`. */
  constructor(sab?: SharedArrayBuffer, slots = HANDOFF_SLOTS) {
    if (sab) slots = (sab.byteLength - HEADER_BYTES) / (SLOT_SIZE_BYTES + 4);
    if (!Number.isInteger(slots) || slots < 1 || (slots & (slots - 1)) !== 0)
      throw new RangeError('hand-off ring size mismatch');
    this.slots = slots;
    this.mask = slots - 1;
    this.sab = sab ?? new SharedArrayBuffer(ringBytes(slots));
    this.ctl = new Int32Array(this.sab, 0, 4);
    this.bytes = new Uint8Array(this.sab, HEADER_BYTES, slots * SLOT_SIZE_BYTES);
    this.lens = new Int32Array(this.sab, HEADER_BYTES + slots * SLOT_SIZE_BYTES, slots);
  }

  /**
   * Producer: copy slot `i` of `from` in. Returns false when the ring is full, or when the
   * packet is larger than a hand-off slot (a GSO super-packet: with steering on, those are
   * TCP and reach their owner directly).
   * Sets `needsWake` when the consumer must be told (no wake-up pending).
   */
  push(from: PacketRing, i: number): boolean {
    const tail = this.ctl[TAIL]!;
    if (tail - Atomics.load(this.ctl, HEAD) >= this.slots) return false;
    const len = from.lens[i]!;
    if (len > SLOT_SIZE_BYTES) return false;
    const slot = tail & this.mask;
    const off = from.offsets[i]!;
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
      const slot = (head + k) & this.mask;
      const len = this.lens[slot]!;
      into.bytes.set(this.bytes.subarray(slot * SLOT_SIZE_BYTES, slot * SLOT_SIZE_BYTES + len), into.offsets[k]);
      into.lens[k] = len;
    }
    Atomics.store(this.ctl, HEAD, (head + n) | 0);
    return n;
  }

  get pending(): number {
    return Atomics.load(this.ctl, TAIL) - Atomics.load(this.ctl, HEAD);
  }
}
