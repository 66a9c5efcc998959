/**
 * Weighted overflow (IPVS's ovf): the available server of the highest weight whose active
 * sessions do not exceed its weight (ties: the first position). The weight is a number of
 * established sessions here, as in IPVS: a server takes new sessions until it holds more
 * than that, then they overflow to the next heaviest. The count is the LB's (every
 * forwarder's summed), so the bar does not move with the number of forwarders. When every
 * server is past its weight there is none (−1), as in IPVS: give the last server a large
 * weight to take the rest.
 */

import { available, nodeActive, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedOverflow implements Scheduler {
  readonly name = 'ovf' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    const w = this.pool.weights;
    let best = -1;
    for (let i = 0; i < this.pool.count; i++) {
      if (!available(this.pool, i) || nodeActive(this.pool, i) > w[i]!) continue;
      if (best < 0 || w[i]! > w[best]!) best = i;
    }
    return best;
  }

  update(): void {}
}

registerScheduler('ovf', (pool) => new WeightedOverflow(pool));
