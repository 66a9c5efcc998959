/**
 * Source hashing: a client address always maps to the same server while the pool is
 * unchanged. A table of SH_TABLE_SIZE slots is filled in smooth weighted order, so each
 * server owns a share of slots proportional to its weight; pick = table[hash % size].
 * Unlike Maglev, a pool change reshuffles most clients: use mh when that matters.
 */

import { SH_TABLE_SIZE } from '../../constants.js';
import { available, hashFallback, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';
import { WeightedRoundRobin } from './wrr.js';

export class SourceHash implements Scheduler {
  readonly name = 'sh' as const;
  private readonly table = new Int32Array(SH_TABLE_SIZE);
  private empty = true;

  constructor(
    private readonly pool: ServerPool,
    private readonly fallback = false,
  ) {
    this.update();
  }

  /** An overloaded server's clients get none, as IPVS's sh without sh-fallback: another
   * server would break their affinity. With `fallback` they get another (hashFallback). */
  pick(sourceHash: number): number {
    if (this.empty) return -1;
    const i = this.table[(sourceHash >>> 0) % SH_TABLE_SIZE]!;
    if (available(this.pool, i)) return i;
    return this.fallback ? hashFallback(this.pool, this.table, sourceHash) : -1;
  }

  update(): void {
    const wrr = new WeightedRoundRobin(this.pool, true);
    for (let s = 0; s < SH_TABLE_SIZE; s++) this.table[s] = wrr.pick();
    this.empty = this.table[0]! < 0;
  }
}

registerScheduler('sh', (pool, opts) => new SourceHash(pool, opts.fallback === true));
