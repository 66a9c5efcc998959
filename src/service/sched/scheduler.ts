/**
 * The scheduler interface and the registry that names them. Each scheduler lives in its
 * own file, fills this interface, and registers itself by name (as DPVS's do).
 *
 * A scheduler picks a position in its service's server list for a new session. It runs
 * only on the first packet of a session, never per packet, and must not allocate there.
 * Weight 0 means "drain": no new sessions; existing ones are untouched (they are in the
 * session table, not here). A server over its session cap (maxConns, ipvsadm -x) is skipped
 * the same way until it is back under its floor (available).
 */

import { HASH_FALLBACK_TRIES } from '../../constants.js';

/** The real servers of one service as a scheduler sees them (positions 0..count−1). */
export interface ServerPool {
  readonly count: number;
  /** Weight per position; 0 = drain (or down, once health checks mark it). */
  readonly weights: Int32Array;
  /** Real-server id per position (index into the per-worker connection counters). */
  readonly ids: Int32Array;
  /** Stable text identity per position ("address|port"): Maglev and sh hash it, so two LBs
   * with the same config build the same tables and a failover keeps affinity. */
  readonly keys: readonly string[];
  /** Per-worker active / inactive session counts, indexed by real-server id. */
  readonly active: Int32Array;
  readonly inactive: Int32Array;
  /** Every forwarder's counts on this LB, this one's included (each written only by its
   * worker, all shared memory): a session cap counts the node's sessions. */
  readonly node: readonly { readonly active: Int32Array; readonly inactive: Int32Array }[];
  /** Per position, the server's session cap (0: none; ipvsadm -x), the count it must fall
   * under to take new sessions again (-y), and whether this worker has seen it over its
   * cap (available keeps it). */
  readonly maxConns: Int32Array;
  readonly minConns: Int32Array;
  readonly overloaded: Uint8Array;
}

/**
 * Whether position `i` may take a new session: weight above 0 and not overloaded. A server
 * whose sessions on this LB (active + inactive, as IPVS counts them, summed over the
 * forwarders) reach its maxConns is overloaded until they fall under its minConns: IPVS's
 * IP_VS_DEST_F_OVERLOAD, with the same hysteresis, so it does not flap at the cap. As in
 * IPVS the count is read, not reserved: forwarders deciding at the same instant may each
 * add one past the cap.
 */
export function available(pool: ServerPool, i: number): boolean {
  if (pool.weights[i]! <= 0) return false;
  const max = pool.maxConns[i]!;
  if (max === 0) return true;
  const id = pool.ids[i]!;
  let total = 0;
  for (const c of pool.node) total += c.active[id]! + c.inactive[id]!;
  if (total >= max) {
    pool.overloaded[i] = 1;
    return false;
  }
  if (pool.overloaded[i] !== 0) {
    if (total >= pool.minConns[i]!) return false;
    pool.overloaded[i] = 0;
  }
  return true;
}

/** Active sessions to position `i`'s server on this LB, every forwarder's summed: for the
 * schedulers that compare a count with a fixed bar (nq's idle server, ovf's weight), where
 * a forwarder's own share would move the bar by the number of forwarders. */
export function nodeActive(pool: ServerPool, i: number): number {
  const id = pool.ids[i]!;
  let total = 0;
  for (const c of pool.node) total += c.active[id]!;
  return total;
}

/** The position of the highest weight among those `accept` takes (ties: the first), or −1:
 * fo's and ovf's pick. */
export function heaviest(pool: ServerPool, accept: (i: number) => boolean): number {
  const w = pool.weights;
  let best = -1;
  for (let i = 0; i < pool.count; i++) {
    if (!accept(i)) continue;
    if (best < 0 || w[i]! > w[best]!) best = i;
  }
  return best;
}

export interface Scheduler {
  readonly name: SchedulerName;
  /** Position of the server for a new session, or −1 if none has weight > 0.
   * `sourceHash` is a hash of the client address (used by sh and mh). */
  pick(sourceHash: number): number;
  /** Weights or the pool changed: rebuild any derived table. */
  update(): void;
}

export type SchedulerName = 'rr' | 'wrr' | 'lc' | 'wlc' | 'sed' | 'nq' | 'twos' | 'fo' | 'ovf' | 'sh' | 'mh';

export interface SchedulerOptions {
  /** Maglev lookup table size (a prime). */
  maglevTableSize: number;
  /** sh and mh: another server for a client whose own is at its cap (hashFallback). */
  fallback?: boolean;
}

type Factory = (pool: ServerPool, opts: SchedulerOptions) => Scheduler;
const registry = new Map<SchedulerName, Factory>();

export function registerScheduler(name: SchedulerName, factory: Factory): void {
  registry.set(name, factory);
}

export function createScheduler(name: SchedulerName, pool: ServerPool, opts: SchedulerOptions): Scheduler {
  const f = registry.get(name);
  if (f === undefined) throw new Error(`unknown scheduler ${name}`);
  return f(pool, opts);
}

export const SCHEDULER_NAMES: readonly SchedulerName[] = [
  'rr',
  'wrr',
  'lc',
  'wlc',
  'sed',
  'nq',
  'twos',
  'fo',
  'ovf',
  'sh',
  'mh',
];

/**
 * sh and mh with fallback (IPVS's sh-fallback, mh-fallback): the client's own slot's server
 * cannot take a new session, so try the slots of further hashes of the client
 * (HASH_FALLBACK_TRIES), then the first available position. The same client gets the same
 * answer while the caps stay as they are. −1 when no server is available.
 */
export function hashFallback(pool: ServerPool, table: Int32Array, sourceHash: number): number {
  for (let k = 1; k <= HASH_FALLBACK_TRIES; k++) {
    let h = Math.imul(sourceHash ^ Math.imul(k, 0x9e3779b9), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    const i = table[(h >>> 0) % table.length]!;
    if (available(pool, i)) return i;
  }
  for (let i = 0; i < pool.count; i++) if (available(pool, i)) return i;
  return -1;
}

/** Stable 32-bit FNV-1a hash of a string, for table-building schedulers (not per packet). */
export function hashString(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  h ^= h >>> 12;
  return h >>> 0;
}

export function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
