/**
 * Weighted failover (IPVS's fo): every new session to the available server of the highest
 * weight (ties: the first position); the others are spares that take over, by weight, when
 * it is down (weight 0 from its health check), drained or at its session cap. Sessions a
 * spare took stay there when the heavier server comes back.
 */

import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedFailover implements Scheduler {
  readonly name = 'fo' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    const w = this.pool.weights;
    let best = -1;
    for (let i = 0; i < this.pool.count; i++) {
      if (!available(this.pool, i)) continue;
      if (best < 0 || w[i]! > w[best]!) best = i;
    }
    return best;
  }

  update(): void {}
}

registerScheduler('fo', (pool) => new WeightedFailover(pool));
