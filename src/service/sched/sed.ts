/**
 * Shortest expected delay (IPVS's sed): the server where a new session would wait least,
 * (active + 1) / weight, counting only active (established) sessions. Unlike wlc the +1
 * makes an idle heavy server win over an idle light one, and inactive sessions do not
 * count. Ties go to the first position. Compared by cross-multiplication, as wlc. Counts
 * are this worker's own, as lc's.
 */

import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

/** The position with the least (active + 1) / weight among those available; −1 if none. */
export function shortestExpectedDelay(pool: ServerPool): number {
  const w = pool.weights;
  let best = -1;
  let bestDelay = 0;
  for (let i = 0; i < pool.count; i++) {
    if (!available(pool, i)) continue;
    const delay = pool.active[pool.ids[i]!]! + 1;
    if (best < 0 || delay * w[best]! < bestDelay * w[i]!) {
      best = i;
      bestDelay = delay;
    }
  }
  return best;
}

export class ShortestExpectedDelay implements Scheduler {
  readonly name = 'sed' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    return shortestExpectedDelay(this.pool);
  }

  update(): void {}
}

registerScheduler('sed', (pool) => new ShortestExpectedDelay(pool));
