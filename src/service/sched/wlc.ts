/**
 * Weighted least connections: the server with the lowest load per unit of weight.
 * Compared by cross-multiplication (load_a × w_b < load_b × w_a), which stays exact
 * in doubles for any realistic count and weight.
 */

import { overhead } from './lc.js';
import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedLeastConnections implements Scheduler {
  readonly name = 'wlc' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    const w = this.pool.weights;
    let best = -1;
    let bestLoad = 0;
    for (let i = 0; i < this.pool.count; i++) {
      const wi = w[i]!;
      if (!available(this.pool, i)) continue;
      const load = overhead(this.pool, i);
      if (best < 0 || load * w[best]! < bestLoad * wi) {
        best = i;
        bestLoad = load;
      }
    }
    return best;
  }

  update(): void {}
}

registerScheduler('wlc', (pool) => new WeightedLeastConnections(pool));
