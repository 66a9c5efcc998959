/**
 * Weighted failover (IPVS's fo): every new session to the available server of the highest
 * weight (ties: the first position); the others are spares that take over, by weight, when
 * it is down (weight 0 from its health check), drained or at its session cap. Sessions a
 * spare took stay there when the heavier server comes back.
 */

import { available, heaviest, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedFailover implements Scheduler {
  readonly name = 'fo' as const;
  private readonly accept = (i: number): boolean => available(this.pool, i);

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    return heaviest(this.pool, this.accept);
  }

  update(): void {}
}

registerScheduler('fo', (pool) => new WeightedFailover(pool));
