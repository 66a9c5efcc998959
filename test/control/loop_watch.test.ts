/**
 * The main thread's stall watch (control/loop_watch.ts) with its probe (native/stall.c): a
 * thread held by its own work is a stall on a CPU, seen running; one held asleep in the kernel
 * (a lock wait here) is a stall off the CPU, seen where it slept. Stalls are counted, the first
 * logged at once and the next within LOOP_STALL_LOG_MS folded into the line after. (Held
 * stopped: the lab's metrics test stops tunvs with SIGSTOP.)
 */

import { describe, expect, it } from 'vitest';
import { describeStall, LoopWatch } from '../../src/control/loop_watch.js';
import { LOOP_STALL_MS, LOOP_WATCH_MS } from '../../src/constants.js';
import { nativeAddon } from '../../src/dataplane/tun_device.js';

function spin(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The watch on this thread, `hold` run once it has ticked a few times; its stats after. */
async function heldBy(hold: () => void): Promise<{ stats: ReturnType<LoopWatch['stats']>; lines: string[] }> {
  const lines: string[] = [];
  const w = new LoopWatch((m) => lines.push(m), nativeAddon());
  w.start();
  try {
    await sleep(LOOP_WATCH_MS * 3);
    expect(w.stats().stalls).toBe(0);
    hold();
    await sleep(LOOP_WATCH_MS * 2);
    return { stats: w.stats(), lines };
  } finally {
    w.stop();
  }
}

describe('LoopWatch', () => {
  it('a thread busy past LOOP_STALL_MS is a stall on a CPU, seen running', async () => {
    const { stats: s, lines } = await heldBy(() => spin(LOOP_STALL_MS + 150));
    expect(s.stalls).toBe(1);
    expect(s.last!.ms).toBeGreaterThanOrEqual(LOOP_STALL_MS);
    expect(s.longestMs).toBe(s.last!.ms);
    // On a CPU or waiting for one (the test machine is shared): not asleep.
    expect(s.last!.cpuMs! + s.last!.waitMs!).toBeGreaterThanOrEqual(LOOP_STALL_MS);
    expect(s.last!.seen[0]![0]).toBe('running');
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatch(
      /^the main thread was held \d+ ms: \d+ on a CPU, \d+ waiting for one, \d+ asleep or stopped; seen every 50 ms: running \d+; keepalived's check gives it 900 ms$/,
    );
  });

  it('a thread asleep in the kernel past LOOP_STALL_MS is a stall off the CPU, seen where it slept', async () => {
    const lock = new Int32Array(new SharedArrayBuffer(4));
    const { stats: s, lines } = await heldBy(() => Atomics.wait(lock, 0, 0, LOOP_STALL_MS + 150));
    expect(s.stalls).toBe(1);
    expect(s.last!.ms - s.last!.cpuMs! - s.last!.waitMs!).toBeGreaterThanOrEqual(LOOP_STALL_MS);
    expect(s.last!.seen[0]![0]).toMatch(/^asleep in .*(futex|system call 202)/);
    expect(lines[0]).toMatch(/asleep in [^;]*futex/);
  });

  it('logs the first stall at once and folds the next ones into the line after', () => {
    const lines: string[] = [];
    const w = new LoopWatch((m) => lines.push(m), nativeAddon());
    const at = new Date().toISOString();
    w.note({ at, ms: 400, cpuMs: 390, waitMs: 4, seen: [['running', 6]] });
    w.note({ at, ms: 900, seen: [] });
    const last = {
      at,
      ms: 500,
      cpuMs: 2,
      waitMs: 0,
      seen: [['asleep in pipe_write < vfs_write', 8]] as [string, number][],
    };
    w.note(last);
    expect(lines).toEqual([
      "the main thread was held 400 ms: 390 on a CPU, 4 waiting for one, 6 asleep or stopped; seen every 50 ms: running 6; keepalived's check gives it 900 ms",
    ]);
    expect(w.stats()).toEqual({ stalls: 3, longestMs: 900, last });
    // Without schedstat: the length and the samples only.
    expect(describeStall({ at, ms: 900, seen: [] })).toBe('the main thread was held 900 ms');
  });

  it('a short delay is not a stall; stop ends the timer and the probe', async () => {
    const w = new LoopWatch(() => {}, nativeAddon());
    w.start();
    spin(LOOP_STALL_MS / 3);
    await sleep(LOOP_WATCH_MS * 2);
    w.stop();
    spin(LOOP_STALL_MS + 100);
    await sleep(LOOP_WATCH_MS * 2);
    expect(w.stats().stalls).toBe(0);
    // Stopped, the probe can start again (a runtime restarted in one process: the tests).
    w.start();
    w.stop();
  });
});
