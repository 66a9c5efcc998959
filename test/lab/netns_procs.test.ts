/**
 * The lab's view of its processes (src/lab/netns.ts): a process that exited but was not
 * reaped (a zombie, as the lab's daemons become where PID 1 does not reap orphans) is gone,
 * and stopPid returns at once for it instead of waiting out the grace period.
 */

import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isAlive, stopPid } from '../../src/lab/netns.js';

/** A zombie: `sh` starts `true` in the background, then becomes a `sleep` that never reaps it. */
async function zombie(): Promise<{ pid: number; parent: number }> {
  const sh = spawn('sh', ['-c', 'true & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = await new Promise<number>((resolve) => sh.stdout.once('data', (d: Buffer) => resolve(Number(d))));
  for (let i = 0; i < 100 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  return { pid, parent: sh.pid! };
}

describe('lab processes', () => {
  it('a running process is alive; an exited, unreaped one is not, and stopPid returns at once', async () => {
    const { pid, parent } = await zombie();
    try {
      expect(isAlive(parent)).toBe(true);
      // Still in the process table (signal 0 reaches it), yet gone.
      expect(() => process.kill(pid, 0)).not.toThrow();
      expect(isAlive(pid)).toBe(false);
      const t0 = Date.now();
      await stopPid(pid, 3000);
      expect(Date.now() - t0).toBeLessThan(500);
    } finally {
      await stopPid(parent, 1000);
    }
    expect(isAlive(parent)).toBe(false);
    expect(isAlive(pid)).toBe(false);
  });
});
