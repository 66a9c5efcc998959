/**
 * Least connections: the server with the lowest load, where an active (established)
 * session weighs 256 inactive ones, as in IPVS: half-open and closing sessions cost the
 * server little. Counts are this worker's own (each worker schedules its own shard).
 */

import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export function overhead(pool: ServerPool, i: number): number {
  const id = pool.ids[i]!;
  return pool.active[id]! * 256 + pool.inactive[id]!;
}

export class LeastConnections implements Scheduler {
  readonly name = 'lc' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    let best = -1;
    let bestLoad = 0;
    for (let i = 0; i < this.pool.count; i++) {
      if (!available(this.pool, i)) continue;
      const load = overhead(this.pool, i);
      if (best < 0 || load < bestLoad) {
        best = i;
        bestLoad = load;
      }
    }
    return best;
  }

  update(): void {}
}

registerScheduler('lc', (pool) => new LeastConnections(pool));
