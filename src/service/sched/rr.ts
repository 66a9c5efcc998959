/** Round robin: each server with weight > 0 in turn; weights only switch servers on/off. */

import { available, registerScheduler, type Scheduler, type ServerPool } from './scheduler.js';

export class RoundRobin implements Scheduler {
  readonly name = 'rr' as const;
  private next = 0;

  constructor(private readonly pool: ServerPool) {}

  pick(): number {
    const n = this.pool.count;
    for (let k = 0; k < n; k++) {
      const i = (this.next + k) % n;
      if (available(this.pool, i)) {
        this.next = (i + 1) % n;
        return i;
      }
    }
    return -1;
  }

  update(): void {}
}

registerScheduler('rr', (pool) => new RoundRobin(pool));
