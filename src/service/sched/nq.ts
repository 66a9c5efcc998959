/**
 * Never queue (IPVS's nq): an idle server first (the first available one with no active
 * session on this LB, every forwarder counted), otherwise as sed. A server is idle only if
 * no forwarder has an established session to it, so the node's counts decide that; sed's
 * comparison uses this worker's own, as lc's.
 */

import { available, nodeActive, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';
import { shortestExpectedDelay } from './sed.js';

export class NeverQueue implements Scheduler {
  readonly name = 'nq' as const;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    for (let i = 0; i < this.pool.count; i++) if (available(this.pool, i) && nodeActive(this.pool, i) === 0) return i;
    return shortestExpectedDelay(this.pool);
  }

  update(): void {}
}

registerScheduler('nq', (pool) => new NeverQueue(pool));
