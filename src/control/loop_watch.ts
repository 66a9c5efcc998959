/**
 * The main thread's stalls. It answers keepalived's check (`ready`: native/ha_check.c gives it
 * 900 ms), the admin socket and the metrics, runs the health checks and HA sync: a thread held
 * for a second fails a healthy pair master over. A timer every LOOP_WATCH_MS measures how
 * late it runs; LOOP_STALL_MS or more is a stall, counted (`tunvs stats` mainThread, the
 * metrics) and logged (the first at once, then at most one line per LOOP_STALL_LOG_MS with the
 * number of those in between). The event loop's utilisation over the stall says which kind:
 * busy (the thread ran: code, a synchronous call, a collection) or starved (it was ready to run
 * and waited for a CPU; its loop counts that time as idle). A wait that falls in the middle of a
 * callback (preempted, or the process stopped) counts as running.
 *
 *   start   the timer (unref'd: it keeps nothing alive)
 *   tick    the lateness, the loop's active time since the last tick; a stall is noted
 *   stats   count, longest, the last one
 *   stop
 */

import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { LOOP_STALL_LOG_MS, LOOP_STALL_MS, LOOP_WATCH_MS } from '../constants.js';

export interface LoopStall {
  /** When it ended (ISO time). */
  at: string;
  /** How long the thread did not get to its timers. */
  ms: number;
  /** Of that, how long its loop was running something (the rest it waited for a CPU). */
  busyMs: number;
}

export interface LoopStats {
  stalls: number;
  longestMs: number;
  last?: LoopStall;
}

export class LoopWatch {
  private timer: NodeJS.Timeout | undefined;
  private due = 0;
  private elu: EventLoopUtilization | undefined;
  private stalls = 0;
  private longestMs = 0;
  private last: LoopStall | undefined;
  private loggedAt = 0;
  private unlogged = 0;
  private unloggedLongest = 0;

  constructor(private readonly log: (msg: string) => void) {}

  start(): void {
    this.due = performance.now() + LOOP_WATCH_MS;
    this.elu = performance.eventLoopUtilization();
    this.timer = setInterval(() => this.tick(), LOOP_WATCH_MS);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    const late = now - this.due;
    this.due = now + LOOP_WATCH_MS;
    const elu = performance.eventLoopUtilization();
    const busy = elu.active - this.elu!.active;
    this.elu = elu;
    if (late < LOOP_STALL_MS) return;
    this.note({ at: new Date().toISOString(), ms: Math.round(late), busyMs: Math.round(Math.min(busy, late)) });
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
    this.log(
      `the main thread was held ${s.ms} ms, ${s.busyMs} ms of it running (the rest waiting for a CPU)${before}; keepalived's check gives it 900 ms`,
    );
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
  }
}
