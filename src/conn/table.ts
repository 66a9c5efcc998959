/**
 * One shard of the session table: open addressing over an Int32Array in a
 * SharedArrayBuffer, two index entries per session (IN key, OUT key) pointing at one
 * record, linear probing with backward-shift delete, and a timer wheel whose lists run
 * through the records (no timer object per session). Layout: `layout.ts`.
 *
 * Single writer: only the worker that owns the shard calls the mutating methods. Other
 * threads may read records (listing, stats) and must tolerate a record changing under them.
 *
 * Index entry (int32, 0 = empty):
 *
 *   31            lowBits | lowBits-1            1 | 0
 *  +----------------------+-----------------------+-----+
 *  | hash tag (high bits) |     record id + 1     | dir |
 *  +----------------------+-----------------------+-----+
 *
 * The tag lets a probe skip most foreign entries without touching their record.
 */

import { SESSIONS_PER_SHARD_MAX, TABLE_LOAD_MAX, TIMER_WHEEL_SLOTS } from '../constants.js';
import { hashSplitKey } from './hash.js';
import {
  DIR_OUT,
  H_CAPACITY,
  H_CURSOR,
  H_FREE_HEAD,
  H_FRESH,
  H_INDEX_SLOTS,
  H_LIVE,
  H_TICK,
  H_TIMER_TICK_MS,
  HEADER_WORDS,
  KEY_BLOCK_WORDS,
  KEY_LO_WORDS,
  META_KEY_MASK,
  R_EXPIRE,
  R_IN,
  R_IN_HI,
  R_META,
  R_OUT,
  R_OUT_HI,
  R_SCHED,
  R_TIMER_NEXT,
  R_TIMER_PREV,
  RECORD_WORDS,
} from './layout.js';

export interface ShardGeometry {
  capacity: number;
  indexSlots: number;
  bytes: number;
}

function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Size a shard for `capacity` sessions (two index entries each, load ≤ TABLE_LOAD_MAX). */
export function shardGeometry(capacity: number): ShardGeometry {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > SESSIONS_PER_SHARD_MAX) {
    throw new RangeError(`shard capacity ${capacity} must be an integer in 1..${SESSIONS_PER_SHARD_MAX}`);
  }
  const indexSlots = nextPowerOfTwo(Math.ceil((2 * capacity) / TABLE_LOAD_MAX));
  const words = HEADER_WORDS + indexSlots + TIMER_WHEEL_SLOTS + capacity * RECORD_WORDS;
  return { capacity, indexSlots, bytes: words * 4 };
}

/** Called by `advance()` for each expired session, before the record is freed. */
export interface ExpiryHandler {
  /** Session `rec`'s time is up. Return true to keep it: the handler has moved its EXPIRE
   * on (the SYN proxy's retransmission timer); anything else frees it. */
  onExpire(rec: number): boolean | void;
}

export class SessionTable {
  readonly sab: SharedArrayBuffer;
  readonly header: Int32Array;
  readonly index: Int32Array;
  readonly wheel: Int32Array;
  /** All records; record r occupies words [r * RECORD_WORDS, (r + 1) * RECORD_WORDS). */
  readonly rec: Int32Array;
  readonly capacity: number;
  readonly indexMask: number;
  private readonly lowMask: number;
  /** Mask of the record-id-and-direction bits of an index entry (for prefetching readers). */
  get entryLowMask(): number {
    return this.lowMask;
  }
  private readonly wheelMask: number;
  private readonly seed: number;

  /** Create a shard, or attach to one another thread created (`sab` given). */
  constructor(capacity: number, seed: number, tickMs: number, sab?: SharedArrayBuffer) {
    const g = shardGeometry(capacity);
    this.sab = sab ?? new SharedArrayBuffer(g.bytes);
    if (this.sab.byteLength !== g.bytes) throw new RangeError('shard buffer does not match its capacity');
    this.capacity = capacity;
    this.header = new Int32Array(this.sab, 0, HEADER_WORDS);
    this.index = new Int32Array(this.sab, HEADER_WORDS * 4, g.indexSlots);
    this.wheel = new Int32Array(this.sab, (HEADER_WORDS + g.indexSlots) * 4, TIMER_WHEEL_SLOTS);
    this.rec = new Int32Array(this.sab, (HEADER_WORDS + g.indexSlots + TIMER_WHEEL_SLOTS) * 4, capacity * RECORD_WORDS);
    this.indexMask = g.indexSlots - 1;
    const lowBits = 32 - Math.clz32((capacity + 1) * 2);
    this.lowMask = lowBits >= 32 ? -1 : (1 << lowBits) - 1;
    this.wheelMask = TIMER_WHEEL_SLOTS - 1;
    this.seed = seed;
    if (sab === undefined) {
      this.header[H_CAPACITY] = capacity;
      this.header[H_INDEX_SLOTS] = g.indexSlots;
      this.header[H_FREE_HEAD] = -1;
      this.header[H_FRESH] = 0;
      this.header[H_LIVE] = 0;
      this.header[H_CURSOR] = -1;
      this.header[H_TIMER_TICK_MS] = tickMs;
      this.wheel.fill(-1);
    }
  }

  get live(): number {
    return this.header[H_LIVE]!;
  }

  /** Bytes of shared memory per session at full capacity (records + both index entries). */
  get bytesPerSession(): number {
    return (this.index.length * 4 + this.capacity * RECORD_WORDS * 4) / this.capacity;
  }

  /** Hash of a lookup key: key[0] = af << 8 | proto, key[1..] = `blockWords` key words. */
  hashKey(key: Int32Array, blockWords: number): number {
    return hashSplitKey(this.seed, key[0]!, key, 1, 1 + KEY_LO_WORDS, blockWords - KEY_LO_WORDS);
  }

  /** Hash of the IN (dir 0) or OUT (dir 1) key stored in record `r`. */
  hashRecord(r: number, dir: number): number {
    const base = r * RECORD_WORDS;
    const meta = this.rec[base + R_META]! & META_KEY_MASK;
    const hiWords = meta >>> 8 === 4 ? 0 : KEY_BLOCK_WORDS - KEY_LO_WORDS;
    return dir === DIR_OUT
      ? hashSplitKey(this.seed, meta, this.rec, base + R_OUT, base + R_OUT_HI, hiWords)
      : hashSplitKey(this.seed, meta, this.rec, base + R_IN, base + R_IN_HI, hiWords);
  }

  /** Write a lookup key's words (key[1..9]) into record `r` as its `dir` key. */
  setKey(r: number, dir: number, key: Int32Array): void {
    const base = r * RECORD_WORDS;
    const lo = base + (dir === DIR_OUT ? R_OUT : R_IN);
    const hi = base + (dir === DIR_OUT ? R_OUT_HI : R_IN_HI);
    const rec = this.rec;
    rec[lo] = key[1]!;
    rec[lo + 1] = key[2]!;
    rec[lo + 2] = key[3]!;
    for (let i = 0; i < KEY_BLOCK_WORDS - KEY_LO_WORDS; i++) rec[hi + i] = key[4 + i]!;
  }

  /** Record id whose `dir` key equals `key`, or −1. `hash` is `hashKey(key, …)`. */
  find(key: Int32Array, blockWords: number, dir: number, hash: number): number {
    const index = this.index;
    const rec = this.rec;
    const mask = this.indexMask;
    const lowMask = this.lowMask;
    const tag = hash & ~lowMask;
    const meta = key[0]!;
    const k1 = key[1]!;
    const k2 = key[2]!;
    const k3 = key[3]!;
    const loOff = dir === DIR_OUT ? R_OUT : R_IN;
    const hiOff = dir === DIR_OUT ? R_OUT_HI : R_IN_HI;
    let slot = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      const e = index[slot]!;
      if (e === 0) return -1;
      if ((e & ~lowMask) === tag && (e & 1) === dir) {
        const r = ((e & lowMask) >>> 1) - 1;
        const base = r * RECORD_WORDS;
        const lo = base + loOff;
        if (
          (rec[base + R_META]! & META_KEY_MASK) === meta &&
          rec[lo] === k1 &&
          rec[lo + 1] === k2 &&
          rec[lo + 2] === k3
        ) {
          if (blockWords === KEY_LO_WORDS) return r;
          const hi = base + hiOff;
          let i = 0;
          while (i < KEY_BLOCK_WORDS - KEY_LO_WORDS && rec[hi + i] === key[4 + i]) i++;
          if (i === KEY_BLOCK_WORDS - KEY_LO_WORDS) return r;
        }
      }
      slot = (slot + 1) & mask;
    }
    return -1;
  }

  /** Records handed out so far (live or freed): every live record is below it, so a walk
   * over the sessions stops here rather than at the capacity. */
  get used(): number {
    return this.header[H_FRESH]!;
  }

  /** Take a free record, or −1 when the shard is full. The record is zeroed. */
  alloc(): number {
    const h = this.header;
    let r = h[H_FREE_HEAD]!;
    if (r >= 0) {
      h[H_FREE_HEAD] = this.rec[r * RECORD_WORDS + R_TIMER_NEXT]!;
    } else {
      r = h[H_FRESH]!;
      if (r >= this.capacity) return -1;
      h[H_FRESH] = r + 1;
    }
    this.rec.fill(0, r * RECORD_WORDS, (r + 1) * RECORD_WORDS);
    h[H_LIVE] = h[H_LIVE]! + 1;
    return r;
  }

  /** Free a record taken by alloc() that was never inserted or scheduled. */
  release(r: number): void {
    const h = this.header;
    this.rec[r * RECORD_WORDS + R_META] = 0;
    this.rec[r * RECORD_WORDS + R_TIMER_NEXT] = h[H_FREE_HEAD]!;
    h[H_FREE_HEAD] = r;
    h[H_LIVE] = h[H_LIVE]! - 1;
  }

  /** Link record `r` under its `dir` key; the key must already be written into the record. */
  insert(r: number, dir: number, hash: number): void {
    const index = this.index;
    const mask = this.indexMask;
    const entry = (hash & ~this.lowMask) | (((r + 1) << 1) | dir);
    let slot = hash & mask;
    for (let probes = 0; probes <= mask; probes++) {
      if (index[slot] === 0) {
        index[slot] = entry;
        return;
      }
      slot = (slot + 1) & mask;
    }
    // Unreachable while live ≤ capacity: the index is sized for load ≤ TABLE_LOAD_MAX.
    throw new Error('session index full: capacity accounting is broken');
  }

  /** Unlink the `dir` entry of record `r`, closing the gap by backward shift. */
  private unlink(r: number, dir: number): void {
    const index = this.index;
    const mask = this.indexMask;
    const lowMask = this.lowMask;
    const want = ((r + 1) << 1) | dir;
    let slot = this.hashRecord(r, dir) & mask;
    let probes = 0;
    while ((index[slot]! & lowMask) !== want) {
      if (index[slot] === 0 || ++probes > mask) return; // not linked (insert never happened)
      slot = (slot + 1) & mask;
    }
    let hole = slot;
    index[hole] = 0;
    let j = (hole + 1) & mask;
    while (index[j] !== 0) {
      const e = index[j]!;
      const home = this.hashRecord(((e & lowMask) >>> 1) - 1, e & 1) & mask;
      // Move e into the hole unless its home lies cyclically in (hole, j].
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        index[hole] = e;
        index[j] = 0;
        hole = j;
      }
      j = (j + 1) & mask;
    }
  }

  /** Remove record `r` from both indexes and the wheel, and free it. */
  remove(r: number): void {
    this.unlink(r, 0);
    this.unlink(r, 1);
    this.wheelUnlink(r);
    this.release(r);
  }

  // --- timer wheel --------------------------------------------------------------------
  //
  // Each record is linked in the slot of tick SCHED. A packet only moves EXPIRE forward
  // (one store); when the wheel reaches a record whose EXPIRE is later, it relinks it.
  // A state change that shortens the timeout relinks at once (`setExpire`).

  /** Current tick of the wheel. */
  get tick(): number {
    return this.header[H_TICK]!;
  }

  /** Start the wheel at `tick` (before any session is scheduled). */
  startTicks(tick: number): void {
    this.header[H_TICK] = tick;
  }

  /** Schedule a new record to expire at `expire` (it must not be linked yet). */
  schedule(r: number, expire: number): void {
    const base = r * RECORD_WORDS;
    this.rec[base + R_EXPIRE] = expire;
    this.wheelLink(r, expire);
  }

  /** The tick record `r` expires at. */
  expireOf(r: number): number {
    return this.rec[r * RECORD_WORDS + R_EXPIRE]!;
  }

  /** Set a linked record's expiry; relinks only when it moves earlier than its slot. */
  setExpire(r: number, expire: number): void {
    const base = r * RECORD_WORDS;
    this.rec[base + R_EXPIRE] = expire;
    if (expire < this.rec[base + R_SCHED]!) {
      this.wheelUnlink(r);
      this.wheelLink(r, expire);
    }
  }

  private wheelLink(r: number, tick: number): void {
    const base = r * RECORD_WORDS;
    // Never link into a slot the wheel has already passed in this turn.
    const now = this.header[H_TICK]!;
    const at = tick <= now ? now + 1 : tick;
    const slot = at & this.wheelMask;
    const head = this.wheel[slot]!;
    this.rec[base + R_SCHED] = at;
    this.rec[base + R_TIMER_PREV] = -1;
    this.rec[base + R_TIMER_NEXT] = head;
    if (head >= 0) this.rec[head * RECORD_WORDS + R_TIMER_PREV] = r;
    this.wheel[slot] = r;
  }

  private wheelUnlink(r: number): void {
    const base = r * RECORD_WORDS;
    const prev = this.rec[base + R_TIMER_PREV]!;
    const next = this.rec[base + R_TIMER_NEXT]!;
    if (prev >= 0) this.rec[prev * RECORD_WORDS + R_TIMER_NEXT] = next;
    else {
      const slot = this.rec[base + R_SCHED]! & this.wheelMask;
      if (this.wheel[slot] === r) this.wheel[slot] = next;
    }
    if (next >= 0) this.rec[next * RECORD_WORDS + R_TIMER_PREV] = prev;
    this.rec[base + R_TIMER_PREV] = -1;
    this.rec[base + R_TIMER_NEXT] = -1;
  }

  /**
   * Move the wheel up to tick `now`, expiring what is due. At most `budget` records are
   * visited; the rest waits for the next call. Returns the number of sessions expired.
   */
  advance(now: number, budget: number, handler: ExpiryHandler): number {
    const h = this.header;
    let tick = h[H_TICK]!;
    if (now <= tick) return 0;
    // After a long pause, one turn of the wheel visits every record once.
    if (now - tick > TIMER_WHEEL_SLOTS) tick = now - TIMER_WHEEL_SLOTS;
    let expired = 0;
    let visited = 0;
    while (tick < now) {
      const t = tick + 1;
      const slot = t & this.wheelMask;
      let r = this.wheel[slot]!;
      this.wheel[slot] = -1;
      // Records relinked below land in other slots or, one turn later, in this one.
      h[H_TICK] = t;
      while (r >= 0) {
        if (visited >= budget) {
          // Put the unvisited rest back behind anything relinked into this slot during
          // this call (timeouts longer than one wheel turn); the tick is redone next time.
          const relinked = this.wheel[slot];
          if (relinked < 0) {
            this.wheel[slot] = r;
            this.rec[r * RECORD_WORDS + R_TIMER_PREV] = -1;
          } else {
            let tail = relinked;
            while (this.rec[tail * RECORD_WORDS + R_TIMER_NEXT]! >= 0)
              tail = this.rec[tail * RECORD_WORDS + R_TIMER_NEXT]!;
            this.rec[tail * RECORD_WORDS + R_TIMER_NEXT] = r;
            this.rec[r * RECORD_WORDS + R_TIMER_PREV] = tail;
          }
          h[H_TICK] = tick;
          return expired;
        }
        visited++;
        const base = r * RECORD_WORDS;
        const next = this.rec[base + R_TIMER_NEXT]!;
        if (next >= 0) this.rec[next * RECORD_WORDS + R_TIMER_PREV] = -1;
        this.rec[base + R_TIMER_PREV] = -1;
        this.rec[base + R_TIMER_NEXT] = -1;
        if (this.rec[base + R_EXPIRE]! <= t) {
          // Not linked any more: mark the slot so remove()'s unlink is a no-op.
          this.rec[base + R_SCHED] = t;
          if (handler.onExpire(r) === true) {
            this.wheelLink(r, this.rec[base + R_EXPIRE]!);
          } else {
            this.removeUnlinked(r);
            expired++;
          }
        } else {
          this.wheelLink(r, this.rec[base + R_EXPIRE]!);
        }
        r = next;
      }
      tick = t;
    }
    return expired;
  }

  /** remove() for a record already taken off the wheel. */
  private removeUnlinked(r: number): void {
    this.unlink(r, 0);
    this.unlink(r, 1);
    this.release(r);
  }
}
