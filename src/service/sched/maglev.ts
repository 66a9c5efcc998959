/**
 * Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).
 *
 * Each server derives a permutation of the M table slots from two hashes of its identity
 * (offset, skip; M prime so every skip walks all slots). Servers take turns claiming their
 * next preferred free slot until the table is full. When a server leaves, only its slots
 * and a few others change owner, so most clients keep their server ("minimal disruption").
 * Weights: in each round a server takes weight/gcd(weights) turns, so its share of the
 * table follows its weight. Two LBs with the same pool build the same table.
 */

import {
  available,
  hashFallback,
  registerScheduler,
  type Scheduler,
  type SchedulerOptions,
  type ServerPool,
  gcd,
  hashString,
} from './scheduler.js';

export function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

export class Maglev implements Scheduler {
  readonly name = 'mh' as const;
  readonly table: Int32Array;
  private empty = true;

  constructor(
    private readonly pool: ServerPool,
    readonly tableSize: number,
    private readonly fallback = false,
  ) {
    if (!isPrime(tableSize)) throw new RangeError(`Maglev table size ${tableSize} must be prime`);
    this.table = new Int32Array(tableSize);
    this.update();
  }

  /** An overloaded server's clients get none (as sh): another server would break their
   * affinity, and a sloppy connection must meet the server its SYN went to. With
   * `fallback` they get another (hashFallback). */
  pick(sourceHash: number): number {
    if (this.empty) return -1;
    const i = this.table[(sourceHash >>> 0) % this.tableSize]!;
    if (available(this.pool, i)) return i;
    return this.fallback ? hashFallback(this.pool, this.table, sourceHash) : -1;
  }

  update(): void {
    const m = this.tableSize;
    const table = this.table;
    table.fill(-1);
    const live: number[] = [];
    let g = 0;
    for (let i = 0; i < this.pool.count; i++) {
      const w = this.pool.weights[i]!;
      if (w > 0) {
        live.push(i);
        g = gcd(g, w);
      }
    }
    this.empty = live.length === 0;
    if (this.empty) return;
    const n = live.length;
    // Slots and steps are below m (MAGLEV_TABLE_SIZE_MAX): int32 arithmetic, and a step past
    // the end wraps by one subtraction, not a division — the same walk as (c + skip) % m, so
    // the same table, in 1.6 ms instead of 6.7 for 65,537 slots and 10 servers (~M·ln M probes;
    // 2.1 instead of 10.4 ms for 100 servers).
    const cursor = new Int32Array(n); // current slot of each server's permutation
    const skip = new Int32Array(n);
    const turns = new Int32Array(n);
    for (let k = 0; k < n; k++) {
      const key = this.pool.keys[live[k]!]!;
      cursor[k] = hashString(key, 0x5bd1e995) % m;
      skip[k] = (hashString(key, 0x27d4eb2f) % (m - 1)) + 1;
      turns[k] = this.pool.weights[live[k]!]! / g;
    }
    let filled = 0;
    for (;;) {
      for (let k = 0; k < n; k++) {
        const step = skip[k]!;
        const owner = live[k]!;
        for (let t = turns[k]!; t > 0; t--) {
          let c = cursor[k]!;
          while (table[c] !== -1) {
            c += step;
            if (c >= m) c -= m;
          }
          table[c] = owner;
          c += step;
          cursor[k] = c >= m ? c - m : c;
          if (++filled === m) return;
        }
      }
    }
  }
}

registerScheduler(
  'mh',
  (pool: ServerPool, opts: SchedulerOptions) => new Maglev(pool, opts.maglevTableSize, opts.fallback === true),
);
