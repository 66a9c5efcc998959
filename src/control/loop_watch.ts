/**
 * The main thread's stalls. It answers keepalived's check (`ready`: native/ha_check.c gives it
 * 900 ms), the admin socket and the metrics, runs the health checks and HA sync: a thread held
 * for a second fails a healthy pair master over. A timer every LOOP_WATCH_MS measures how
 * late it runs; LOOP_STALL_MS or more is a stall, counted (`tunvs stats` mainThread, the
 * metrics) and logged (the first at once, then at most one line per LOOP_STALL_LOG_MS with the
 * number of those in between).
 *
 * The held thread cannot say what held it, so a probe (native/stall.c) says it for it: the
 * thread's time on a CPU and waiting for one over the stall (the kernel's schedstat: the rest
 * it was off both, asleep in the kernel or stopped), and a thread of its own that looks at it
 * every LOOP_STALL_SAMPLE_MS while it is held: running (code, a collection), or asleep and
 * where in the kernel (a lock, a write, a page fault; in do_epoll_wait: a synchronous child
 * process, whose wait runs a loop of its own).
 *
 *   start   the timer (unref'd: it keeps nothing alive) and the probe
 *   tick    the lateness and the probe's figures since the last tick; a stall is noted
 *   stats   count, longest, the last one
 *   stop
 */

import { performance } from 'node:perf_hooks';
import { LOOP_STALL_LOG_MS, LOOP_STALL_MS, LOOP_STALL_SAMPLE_MS, LOOP_WATCH_MS } from '../constants.js';
import type { NativeAddon } from '../dataplane/tun_device.js';

/** native/stall.c, as the addon exports it: start (from the thread to watch: sample it once
 * its last beat is `lateMs` old), beat (its time on a CPU and waiting for one since the last
 * beat, absent without schedstat, and what the samples since saw, each with its count), stop. */
export type StallProbe = Pick<NativeAddon, 'stallStart' | 'stallBeat' | 'stallStop'>;

export interface LoopStall {
  /** When it ended (ISO time). */
  at: string;
  /** How long the thread did not get to its timers. */
  ms: number;
  /** On a CPU and waiting for one from the tick before to the one that ended it (the stall
   * and the LOOP_WATCH_MS before it); the rest of `ms` it was asleep or stopped. Absent where
   * the kernel keeps no schedstat. */
  cpuMs?: number;
  waitMs?: number;
  /** What the samples saw, each with its count, most first. */
  seen: [string, number][];
}

export interface LoopStats {
  stalls: number;
  longestMs: number;
  last?: LoopStall;
}

export class LoopWatch {
  private timer: NodeJS.Timeout | undefined;
  private due = 0;
  private stalls = 0;
  private longestMs = 0;
  private last: LoopStall | undefined;
  private loggedAt = 0;
  private unlogged = 0;
  private unloggedLongest = 0;

  constructor(
    private readonly log: (msg: string) => void,
    private readonly probe: StallProbe,
  ) {}

  start(): void {
    // Sampled from one missed tick on: a stall's samples start before it counts as one.
    this.probe.stallStart(2 * LOOP_WATCH_MS, LOOP_STALL_SAMPLE_MS);
    this.due = performance.now() + LOOP_WATCH_MS;
    this.timer = setInterval(() => this.tick(), LOOP_WATCH_MS);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    const late = now - this.due;
    this.due = now + LOOP_WATCH_MS;
    const b = this.probe.stallBeat();
    if (late < LOOP_STALL_MS) return;
    const round = (x: number | undefined): number | undefined => (x === undefined ? undefined : Math.round(x));
    this.note({
      at: new Date().toISOString(),
      ms: Math.round(late),
      ...(b.cpuMs !== undefined ? { cpuMs: round(b.cpuMs), waitMs: round(b.waitMs) } : {}),
      seen: (b.samples ?? []).sort((x, y) => y[1] - x[1]),
    });
  }

  /** Count a stall; log it now or with the next line (exported for the tests). */
  note(s: LoopStall): void {
    this.stalls++;
    this.longestMs = Math.max(this.longestMs, s.ms);
    this.last = s;
    const now = Date.now();
    if (now - this.loggedAt < LOOP_STALL_LOG_MS) {
      this.unlogged++;
      this.unloggedLongest = Math.max(this.unloggedLongest, s.ms);
      return;
    }
    const before =
      this.unlogged > 0
        ? ` (and ${this.unlogged} more since the last line, the longest ${this.unloggedLongest} ms)`
        : '';
    this.log(`${describeStall(s)}${before}; keepalived's check gives it 900 ms`);
    this.loggedAt = now;
    this.unlogged = 0;
    this.unloggedLongest = 0;
  }

  stats(): LoopStats {
    return { stalls: this.stalls, longestMs: this.longestMs, ...(this.last ? { last: this.last } : {}) };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.probe.stallStop();
  }
}

/** "the main thread was held 2283 ms: 2200 on a CPU, 50 waiting for one, 33 asleep or
 * stopped; seen every 50 ms: running 40, asleep in futex_wait_queue < … 3". */
export function describeStall(s: LoopStall): string {
  const split =
    s.cpuMs !== undefined
      ? `: ${s.cpuMs} on a CPU, ${s.waitMs ?? 0} waiting for one, ${Math.max(0, s.ms - s.cpuMs - (s.waitMs ?? 0))} asleep or stopped`
      : '';
  const seen =
    s.seen.length > 0
      ? `; seen every ${LOOP_STALL_SAMPLE_MS} ms: ${s.seen.map(([what, n]) => `${what} ${n}`).join(', ')}`
      : '';
  return `the main thread was held ${s.ms} ms${split}${seen}`;
}
