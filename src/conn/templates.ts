/**
 * Persistence templates (LVS `ipvsadm -p`): a client, or its prefix, of a persistent
 * service → the real server its connections go to, for as long as it has connections and
 * `timeout` after the last one ends (LVS semantics: a template outlives its connections by the
 * timeout, and a new connection restarts it).
 *
 * One table per LB, in a SharedArrayBuffer every worker maps: a client's connections land on
 * different workers (the owner rule hashes the client port), and all of them must find the
 * same template. Only the first packet of a session of a persistent service comes here, never
 * a packet of a running one, so the table is guarded by one spinlock (Atomics) rather than
 * anything finer. The main thread reads it (`tunvs conns`) and installs a peer's templates
 * (HA) under the same lock.
 *
 * Slot (TEMPLATE_WORDS int32, open addressing, linear probing; nothing is ever unlinked, so
 * probing needs no tombstones — a dead slot is reused in place):
 *
 *   0  STATE    0 empty, 1 used (the key is valid; live or dead by REFS and the expiry)
 *   1  KEY0     af << 16 | persistence key (the service's id, or its persistence group's:
 *               ResolvedService.persistKey)
 *   2–5         the client address masked to the service's prefix (4 words; IPv4 word 0)
 *   6  RS       real-server id
 *   7  REFS     sessions made through it that are still in the table
 *   8  TIMEOUT  seconds it outlives its last session
 *   9  SYNCED   HA: second (wall clock) it was last published; 0 never. A dead slot with
 *               SYNCED set is reused only after sweepPublished has handed its key over for
 *               the Redis delete.
 *   and expireMs (Float64, per slot): while REFS is 0, dead after this time.
 */

import { TEMPLATE_SLOTS_DEFAULT } from '../constants.js';

export const TEMPLATE_WORDS = 10;
const T_STATE = 0;
const T_KEY = 1;
const T_RS = 6;
const T_REFS = 7;
const T_TIMEOUT = 8;
const T_SYNCED = 9;
export const TEMPLATE_KEY_WORDS = 5;

const H_LOCK = 0;
const H_SLOTS = 1;
const HEADER_WORDS = 4;

/** A template as the control plane shows it. */
export interface TemplateInfo {
  slot: number;
  af: number;
  /** ResolvedService.persistKey of the services it serves. */
  key: number;
  /** The masked client address words. */
  client: number[];
  realServerId: number;
  sessions: number;
  /** Until it is dead if no session comes (the timeout while sessions run). */
  expiresInMs: number;
}

export class TemplateTable {
  readonly sab: SharedArrayBuffer;
  readonly slots: number;
  private readonly words: Int32Array;
  private readonly header: Int32Array;
  private readonly expire: Float64Array;
  private readonly mask: number;

  /** A new table of `slots` slots (a power of two), or a view of the table in `sab`. */
  constructor(slots = TEMPLATE_SLOTS_DEFAULT, sab?: SharedArrayBuffer) {
    if (sab === undefined) {
      if ((slots & (slots - 1)) !== 0 || slots < 2) throw new RangeError('template slots must be a power of two');
      sab = new SharedArrayBuffer(TemplateTable.bytes(slots));
      new Int32Array(sab, 0, HEADER_WORDS)[H_SLOTS] = slots;
    } else {
      slots = new Int32Array(sab, 0, HEADER_WORDS)[H_SLOTS]!;
    }
    this.sab = sab;
    this.slots = slots;
    this.mask = slots - 1;
    this.header = new Int32Array(sab, 0, HEADER_WORDS);
    this.words = new Int32Array(sab, HEADER_WORDS * 4, slots * TEMPLATE_WORDS);
    this.expire = new Float64Array(sab, (HEADER_WORDS + slots * TEMPLATE_WORDS) * 4, slots);
  }

  /** Bytes a table of `slots` slots takes. */
  static bytes(slots: number): number {
    return (HEADER_WORDS + slots * TEMPLATE_WORDS) * 4 + slots * 8;
  }

  lock(): void {
    while (Atomics.compareExchange(this.header, H_LOCK, 0, 1) !== 0) {
      // Held for a few hundred nanoseconds by another thread: spin.
    }
  }

  unlock(): void {
    Atomics.store(this.header, H_LOCK, 0);
  }

  /** Under the lock: the slot holding `key` (live or dead), or −1. */
  find(key: Int32Array): number {
    const w = this.words;
    let s = hashKey(key) & this.mask;
    for (let n = 0; n < this.slots; n++) {
      const b = s * TEMPLATE_WORDS;
      if (w[b + T_STATE] === 0) return -1;
      if (sameKey(w, b, key)) return s;
      s = (s + 1) & this.mask;
    }
    return -1;
  }

  /** Is template `slot` live at `nowMs` (sessions running, or within its timeout)? */
  live(slot: number, nowMs: number): boolean {
    return this.words[slot * TEMPLATE_WORDS + T_REFS]! > 0 || this.expire[slot]! > nowMs;
  }

  rsOf(slot: number): number {
    return this.words[slot * TEMPLATE_WORDS + T_RS]!;
  }

  /**
   * Under the lock: a template of `key` → real server `rs`: the key's own slot if it has one,
   * else the first dead or empty slot on its probe path. −1 when the table is full of live
   * templates (the session then goes without one).
   */
  put(key: Int32Array, rs: number, nowMs: number): number {
    const w = this.words;
    let s = hashKey(key) & this.mask;
    let free = -1;
    for (let n = 0; n < this.slots; n++) {
      const b = s * TEMPLATE_WORDS;
      if (w[b + T_STATE] === 0) {
        if (free < 0) free = s;
        break;
      }
      if (sameKey(w, b, key)) {
        free = s;
        break;
      }
      // A dead template this node published waits for sweepPublished (its Redis field must
      // be deleted by its own key first).
      if (free < 0 && !this.live(s, nowMs) && w[b + T_SYNCED] === 0) free = s;
      s = (s + 1) & this.mask;
    }
    if (free < 0) return -1;
    const b = free * TEMPLATE_WORDS;
    // A dead slot of another key has no sessions; the key's own keeps its count.
    if (w[b + T_STATE] === 0 || !sameKey(w, b, key) || w[b + T_RS] !== rs) this.changed(free);
    for (let i = 0; i < TEMPLATE_KEY_WORDS; i++) w[b + T_KEY + i] = key[i]!;
    w[b + T_RS] = rs;
    w[b + T_STATE] = 1;
    return free;
  }

  /** Under the lock: should this node publish template `slot` (HA) — never published, or
   * not for half its timeout? Then it counts as published now. */
  duePublish(slot: number, nowMs: number): boolean {
    const b = slot * TEMPLATE_WORDS;
    const sec = Math.floor(nowMs / 1000);
    if (this.words[b + T_SYNCED] !== 0 && sec - this.words[b + T_SYNCED]! < this.words[b + T_TIMEOUT]! / 2)
      return false;
    this.words[b + T_SYNCED] = sec || 1;
    return true;
  }

  /**
   * HA: the templates this node published that are dead at `nowMs`, among `count` slots from
   * `from` (wrapping): for each, under the lock, `gone(slot)` (the key is still in the slot:
   * the caller publishes the delete), then it counts as never published, which lets put()
   * reuse the slot. Returns the slot to go on from.
   */
  sweepPublished(from: number, count: number, nowMs: number, gone: (slot: number) => void): number {
    const w = this.words;
    let s = from & this.mask;
    this.lock();
    try {
      for (let n = 0; n < count; n++) {
        const b = s * TEMPLATE_WORDS;
        if (w[b + T_STATE] !== 0 && w[b + T_SYNCED] !== 0 && !this.live(s, nowMs)) {
          gone(s);
          w[b + T_SYNCED] = 0;
        }
        s = (s + 1) & this.mask;
      }
    } finally {
      this.unlock();
    }
    return s;
  }

  /** HA resync: `each(slot, rs, timeoutSec)` for every live template this node has published
   * among slots [from, to), under the lock. */
  eachPublished(
    from: number,
    to: number,
    nowMs: number,
    each: (slot: number, rs: number, timeoutSec: number) => void,
  ): void {
    const w = this.words;
    this.lock();
    try {
      for (let s = from; s < to; s++) {
        const b = s * TEMPLATE_WORDS;
        if (w[b + T_STATE] !== 0 && w[b + T_SYNCED] !== 0 && this.live(s, nowMs))
          each(s, w[b + T_RS]!, w[b + T_TIMEOUT]!);
      }
    } finally {
      this.unlock();
    }
  }

  /** The key words of template `slot` (into `out`). */
  keyOf(slot: number, out: Int32Array): Int32Array {
    for (let i = 0; i < TEMPLATE_KEY_WORDS; i++) out[i] = this.words[slot * TEMPLATE_WORDS + T_KEY + i]!;
    return out;
  }

  /** A template changes server: it is to be published again. */
  private changed(slot: number): void {
    this.words[slot * TEMPLATE_WORDS + T_SYNCED] = 0;
  }

  /** Under the lock: a session starts through template `slot`. */
  acquire(slot: number, nowMs: number, timeoutSec: number): void {
    const b = slot * TEMPLATE_WORDS;
    this.words[b + T_REFS] = this.words[b + T_REFS]! + 1;
    this.words[b + T_TIMEOUT] = timeoutSec;
    this.expire[slot] = nowMs + timeoutSec * 1000;
  }

  /** A session made through template `slot` ends: the last one starts the timeout. */
  release(slot: number, nowMs: number): void {
    this.lock();
    const b = slot * TEMPLATE_WORDS;
    const refs = this.words[b + T_REFS]! - 1;
    this.words[b + T_REFS] = refs > 0 ? refs : 0;
    if (refs <= 0) this.expire[slot] = Math.max(this.expire[slot]!, nowMs + this.words[b + T_TIMEOUT]! * 1000);
    this.unlock();
  }

  /**
   * Under the lock: a peer's template (HA), or one read back: `key` → `rs` until `expireMs`
   * unless sessions of its own come. Keeps a live local template of the key as it is.
   */
  install(key: Int32Array, rs: number, expireMs: number, timeoutSec: number, nowMs: number): boolean {
    const have = this.find(key);
    if (have >= 0 && this.live(have, nowMs) && this.words[have * TEMPLATE_WORDS + T_REFS]! > 0) return false;
    // If this node published the key itself (the field is in its hash), it still has to
    // delete that field when the template dies: a peer's server does not change that.
    const synced = have >= 0 ? this.words[have * TEMPLATE_WORDS + T_SYNCED]! : 0;
    const slot = this.put(key, rs, nowMs);
    if (slot < 0) return false;
    if (slot === have) this.words[slot * TEMPLATE_WORDS + T_SYNCED] = synced;
    this.words[slot * TEMPLATE_WORDS + T_TIMEOUT] = timeoutSec;
    this.expire[slot] = Math.max(have === slot ? this.expire[slot]! : 0, expireMs);
    return true;
  }

  /** The live templates (control plane; takes the lock while it copies them). */
  list(nowMs: number): TemplateInfo[] {
    const out: TemplateInfo[] = [];
    const w = this.words;
    this.lock();
    try {
      for (let s = 0; s < this.slots; s++) {
        const b = s * TEMPLATE_WORDS;
        if (w[b + T_STATE] === 0 || !this.live(s, nowMs)) continue;
        const refs = w[b + T_REFS]!;
        out.push({
          slot: s,
          af: w[b + T_KEY]! >>> 16,
          key: w[b + T_KEY]! & 0xffff,
          client: [w[b + T_KEY + 1]!, w[b + T_KEY + 2]!, w[b + T_KEY + 3]!, w[b + T_KEY + 4]!],
          realServerId: w[b + T_RS]!,
          sessions: refs,
          expiresInMs: refs > 0 ? w[b + T_TIMEOUT]! * 1000 : this.expire[s]! - nowMs,
        });
      }
    } finally {
      this.unlock();
    }
    return out;
  }
}

function hashKey(k: Int32Array): number {
  let h = Math.imul(k[0]! ^ 0x9e3779b9, 0x85ebca6b);
  for (let i = 1; i < TEMPLATE_KEY_WORDS; i++) h = Math.imul(h ^ (h >>> 15) ^ k[i]!, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function sameKey(w: Int32Array, b: number, key: Int32Array): boolean {
  for (let i = 0; i < TEMPLATE_KEY_WORDS; i++) if (w[b + T_KEY + i] !== key[i]) return false;
  return true;
}
