/**
 * The lab's view of its processes (src/lab/netns.ts): a process that exited but was not
 * reaped (a zombie, as the lab's daemons become where PID 1 does not reap orphans) is gone,
 * and stopPid returns at once for it instead of waiting out the grace period; a restarted
 * process takes its exited predecessor's place in the lab's record (src/lab/state.ts).
 */

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isAlive, stopPid } from '../../src/lab/netns.js';
import { recordProc, type LabState } from '../../src/lab/state.js';

/** A zombie: `sh` starts a short `sleep` in the background and becomes (exec) a long one,
 * which never reaps the short one when it ends. */
async function zombie(): Promise<{ pid: number; parent: number }> {
  const sh = spawn('sh', ['-c', 'sleep 0.2 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const pid = await new Promise<number>((resolve) => sh.stdout.once('data', (d: Buffer) => resolve(Number(d))));
  for (let i = 0; i < 200 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
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

  it('a restart takes the place of its exited predecessor of the same name; a running one is kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-lab-state-'));
    const sleeper = () => spawn('sleep', ['5'], { stdio: 'ignore' });
    const [a, b, c] = [sleeper(), sleeper(), sleeper()];
    try {
      const state: LabState = { prefix: 't-', namespaces: [], procs: [], dir, adminSocket: '' };
      recordProc(state, 'tunvs-lb-b', a.pid!);
      recordProc(state, 'watchdog-lb-b', b.pid!);
      await stopPid(a.pid!, 1000);
      recordProc(state, 'tunvs-lb-b', c.pid!); // the restart: in the first one's place
      expect(state.procs.map((p) => [p.name, p.pid])).toEqual([
        ['tunvs-lb-b', c.pid],
        ['watchdog-lb-b', b.pid],
      ]);
      recordProc(state, 'watchdog-lb-b', a.pid!); // its namesake still runs: both recorded
      expect(state.procs.map((p) => p.name)).toEqual(['tunvs-lb-b', 'watchdog-lb-b', 'watchdog-lb-b']);
      const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as LabState;
      expect(saved.procs).toEqual(state.procs);
    } finally {
      for (const p of [a, b, c]) await stopPid(p.pid!, 1000);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
