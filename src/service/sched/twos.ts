/**
 * Weighted random twos (IPVS's twos, "power of two choices"): two servers drawn at random,
 * each with a chance proportional to its weight, and the one of them with the lower
 * load per weight (wlc's load: an active session weighs 256 inactive ones) takes the
 * session; a tie goes to the first draw. Nearly as even as wlc, without every new session
 * of a burst piling onto the one server that was least loaded a moment ago (what wlc does
 * while the counts lag). Counts are this worker's own, as lc's. The draws come from a
 * small generator of this scheduler (xorshift32), seeded at random: not a secret, only
 * spread.
 */

import { randomBytes } from 'node:crypto';
import { overhead } from './lc.js';
import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedRandomTwos implements Scheduler {
  readonly name = 'twos' as const;
  private state: number;

  constructor(
    private readonly pool: ServerPool,
    seed = randomBytes(4).readUInt32LE(0),
  ) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  pick(): number {
    const pool = this.pool;
    const w = pool.weights;
    let total = 0;
    for (let i = 0; i < pool.count; i++) if (available(pool, i)) total += w[i]!;
    if (total === 0) return -1;
    const a = this.draw(total);
    const b = this.draw(total);
    if (a === b) return a;
    return overhead(pool, b) * w[a]! < overhead(pool, a) * w[b]! ? b : a;
  }

  update(): void {}

  /** The position whose share of the `total` weight holds a uniform draw below it. */
  private draw(total: number): number {
    const pool = this.pool;
    let r = this.next() % total;
    let last = -1;
    for (let i = 0; i < pool.count; i++) {
      if (!available(pool, i)) continue;
      last = i;
      r -= pool.weights[i]!;
      if (r < 0) return i;
    }
    return last;
  }

  private next(): number {
    let x = this.state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.state;
  }
}

registerScheduler('twos', (pool) => new WeightedRandomTwos(pool));
