import { describe, expect, it } from 'vitest';
import { clientShardHash } from '../../src/dataplane/shard.js';

describe('clientShardHash', () => {
  it.each([2, 3, 4, 8])(
    'regression: one client, even ephemeral ports (Linux connect) spread evenly over %i workers',
    (workers) => {
      const counts = new Array<number>(workers).fill(0);
      const client = 0xc6126407 | 0; // 198.18.100.7
      const n = 20000;
      for (let i = 0; i < n; i++) {
        const cport = 32768 + 2 * i;
        counts[clientShardHash(client, 0, 0, 0, (cport << 16) | 80) % workers]!++;
      }
      for (const c of counts) expect(Math.abs(c - n / workers) / (n / workers)).toBeLessThan(0.05);
    },
  );
});
