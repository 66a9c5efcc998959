/**
 * Weighted round robin, smooth variant: every pick adds each weight to its server's
 * credit and takes the server with the most credit, which then pays the total weight.
 * Over any window of (sum of weights) picks each server gets exactly its weight, and
 * picks of a heavy server are spread out instead of bunched (weights 5,1,1 give
 * a a b a c a a, not a a a a a b c).
 */

import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class WeightedRoundRobin implements Scheduler {
  readonly name = 'wrr' as const;
  private credit: Float64Array;

  /** `byWeightOnly`: ignore the servers' session caps (sh builds its table by weight). */
  constructor(
    private readonly pool: ServerPool,
    private readonly byWeightOnly = false,
  ) {
    this.credit = new Float64Array(pool.count);
  }

  pick(): number {
    const w = this.pool.weights;
    const credit = this.credit;
    let best = -1;
    let total = 0;
    for (let i = 0; i < this.pool.count; i++) {
      const wi = w[i]!;
      if (wi <= 0 || (!this.byWeightOnly && !available(this.pool, i))) continue;
      credit[i] = credit[i]! + wi;
      total += wi;
      if (best < 0 || credit[i]! > credit[best]!) best = i;
    }
    if (best >= 0) credit[best] = credit[best]! - total;
    return best;
  }

  update(): void {
    this.credit = new Float64Array(this.pool.count);
  }
}

registerScheduler('wrr', (pool) => new WeightedRoundRobin(pool));
