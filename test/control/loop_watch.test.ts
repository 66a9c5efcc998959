/**
 * The main thread's stall watch (control/loop_watch.ts): a thread held by its own work is a
 * stall with its running time; stalls are counted, the first logged at once and the next within
 * LOOP_STALL_LOG_MS folded into the line after. (Held while waiting, not running: the lab's
 * metrics test stops tunvs with SIGSTOP.)
 */

import { describe, expect, it } from 'vitest';
import { LoopWatch } from '../../src/control/loop_watch.js';
import { LOOP_STALL_MS, LOOP_WATCH_MS } from '../../src/constants.js';

function spin(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('LoopWatch', () => {
  it('a thread busy past LOOP_STALL_MS is a stall, counted with its running time', async () => {
    const lines: string[] = [];
    const w = new LoopWatch((m) => lines.push(m));
    w.start();
    try {
      await sleep(LOOP_WATCH_MS * 3);
      expect(w.stats().stalls).toBe(0);
      spin(LOOP_STALL_MS + 150);
      await sleep(LOOP_WATCH_MS * 2);
      const s = w.stats();
      expect(s.stalls).toBe(1);
      expect(s.last!.ms).toBeGreaterThanOrEqual(LOOP_STALL_MS);
      expect(s.last!.busyMs).toBeGreaterThanOrEqual(LOOP_STALL_MS);
      expect(s.longestMs).toBe(s.last!.ms);
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(/^the main thread was held \d+ ms, \d+ ms of it running/);
    } finally {
      w.stop();
    }
  });

  it('logs the first stall at once and folds the next ones into the line after', () => {
    const lines: string[] = [];
    const w = new LoopWatch((m) => lines.push(m));
    const at = new Date().toISOString();
    w.note({ at, ms: 400, busyMs: 390 });
    w.note({ at, ms: 900, busyMs: 20 });
    w.note({ at, ms: 500, busyMs: 20 });
    expect(lines).toEqual([
      "the main thread was held 400 ms, 390 ms of it running (the rest waiting for a CPU); keepalived's check gives it 900 ms",
    ]);
    expect(w.stats()).toEqual({ stalls: 3, longestMs: 900, last: { at, ms: 500, busyMs: 20 } });
  });

  it('a short delay is not a stall; stop ends the timer', async () => {
    const w = new LoopWatch(() => {});
    w.start();
    spin(LOOP_STALL_MS / 3);
    await sleep(LOOP_WATCH_MS * 2);
    w.stop();
    spin(LOOP_STALL_MS + 100);
    await sleep(LOOP_WATCH_MS * 2);
    expect(w.stats().stalls).toBe(0);
  });
});
