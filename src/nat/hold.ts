/**
 * Client segments the SYN proxy holds while the real server has not answered its SYN
 * (synproxy.ts): the data in the client's handshake ACK and whatever follows it. One pool
 * per worker, fixed at start (HOLD_SLOTS × HOLD_SLOT_BYTES); a session's segments form a
 * list from its record's HOLD word (first slot + 1; 0, as alloc() leaves it, is none), in
 * arrival order.
 *
 * A slot remembers the record it belongs to. Records end in many places (expiry, resets,
 * HA installs); rather than each of them freeing held segments, a slot whose record no
 * longer lists it is free for the taking: when the free list runs dry, one sweep takes those
 * back (reclaim()).
 */

import { HOLD_PER_SESSION_MAX, HOLD_SLOT_BYTES, HOLD_SLOTS, TCP_OPTIONS_MAX_BYTES } from '../constants.js';
import { R_HOLD, RECORD_WORDS } from '../conn/layout.js';

export class HoldPool {
  readonly bytes = new Uint8Array(HOLD_SLOTS * HOLD_SLOT_BYTES);
  /** Bytes held in each slot (from the start of its headroom). */
  readonly lens = new Int32Array(HOLD_SLOTS);
  /** Next slot of the same session, −1 at the end; the free list uses it too. */
  private readonly next = new Int32Array(HOLD_SLOTS);
  /** Record id of the session holding the slot, −1 when free. */
  private readonly owner = new Int32Array(HOLD_SLOTS).fill(-1);
  /** TCP sequence number of the held segment (a retransmission is not held twice). */
  private readonly seqs = new Int32Array(HOLD_SLOTS);
  private readonly listed = new Uint8Array(HOLD_SLOTS);
  private free = 0;
  inUse = 0;

  constructor() {
    for (let i = 0; i < HOLD_SLOTS; i++) this.next[i] = i + 1 < HOLD_SLOTS ? i + 1 : -1;
  }

  /**
   * Hold the `len` bytes at buf[off] for record `r` (its HOLD word heads its list): 1 when
   * held, 0 when a segment with that sequence number is held already, −1 when there is no
   * room (the pool, or the session's share).
   */
  hold(rec: Int32Array, r: number, buf: Uint8Array, off: number, len: number, seq: number): number {
    // Room is left for the TOA it gets when it is sent (into an emit slot of the same size).
    if (len > HOLD_SLOT_BYTES - TCP_OPTIONS_MAX_BYTES) return -1;
    const head = rec[r * RECORD_WORDS + R_HOLD]! - 1;
    let tail = -1;
    let count = 0;
    for (let s = head; s >= 0; s = this.next[s]!) {
      if (this.seqs[s] === seq && this.lens[s] === len) return 0;
      tail = s;
      count++;
    }
    if (count >= HOLD_PER_SESSION_MAX) return -1;
    if (this.free < 0) this.reclaim(rec);
    const s = this.free;
    if (s < 0) return -1;
    this.free = this.next[s]!;
    this.next[s] = -1;
    this.owner[s] = r;
    this.seqs[s] = seq;
    this.lens[s] = len;
    this.bytes.set(buf.subarray(off, off + len), s * HOLD_SLOT_BYTES);
    if (tail < 0) rec[r * RECORD_WORDS + R_HOLD] = s + 1;
    else this.next[tail] = s;
    this.inUse++;
    return 1;
  }

  /** Take record `r`'s list: its slots in order into `out` (returns how many). The slots stay
   * readable until the next hold(); call release() when done. */
  take(rec: Int32Array, r: number, out: Int32Array): number {
    let n = 0;
    for (let s = rec[r * RECORD_WORDS + R_HOLD]! - 1; s >= 0 && n < out.length; s = this.next[s]!) out[n++] = s;
    return n;
  }

  /** Free record `r`'s held segments. */
  release(rec: Int32Array, r: number): void {
    const base = r * RECORD_WORDS;
    let s = rec[base + R_HOLD]! - 1;
    rec[base + R_HOLD] = 0;
    while (s >= 0 && this.owner[s] === r) {
      const n = this.next[s]!;
      this.freeSlot(s);
      s = n;
    }
  }

  offsetOf(slot: number): number {
    return slot * HOLD_SLOT_BYTES;
  }

  private freeSlot(s: number): void {
    this.owner[s] = -1;
    this.next[s] = this.free;
    this.free = s;
    this.inUse--;
  }

  /** Free every slot whose record's list no longer includes it. */
  private reclaim(rec: Int32Array): void {
    const listed = this.listed;
    listed.fill(0);
    for (let s = 0; s < HOLD_SLOTS; s++) {
      const r = this.owner[s]!;
      if (r < 0 || listed[s] === 1) continue;
      for (let t = rec[r * RECORD_WORDS + R_HOLD]! - 1; t >= 0 && this.owner[t] === r; t = this.next[t]!) listed[t] = 1;
    }
    for (let s = 0; s < HOLD_SLOTS; s++) if (this.owner[s]! >= 0 && listed[s] === 0) this.freeSlot(s);
  }
}
