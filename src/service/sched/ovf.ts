/**
 * Weighted overflow (IPVS's ovf): the available server of the highest weight whose active
 * sessions do not exceed its weight (ties: the first position). The weight is a number of
 * established sessions here, as in IPVS: a server takes new sessions until it holds more
 * than that, then they overflow to the next heaviest. The count is the LB's (every
 * forwarder's summed), so the bar does not move with the number of forwarders. When every
 * server is past its weight there is none (−1), as in IPVS: give the last server a large
 * weight to take the rest.
 */

import { available, heaviest, nodeActive, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedOverflow implements Scheduler {
  readonly name = 'ovf' as const;
  /** Available, and not holding more active sessions than its weight. */
  private readonly accept = (i: number): boolean =>
    available(this.pool, i) && nodeActive(this.pool, i) <= this.pool.weights[i]!;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    return heaviest(this.pool, this.accept);
  }

  update(): void {}
}

registerScheduler('ovf', (pool) => new WeightedOverflow(pool));
