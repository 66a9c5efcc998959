/**
 * Byte-checked long-lived connections through a lab VIP (stream_check.ts, run in the lab's
 * client namespace in the background): what the failover tests and demos measure a failure
 * with. `ready` resolves once every connection is established; `done` with the outcome.
 */

import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { distSrc } from '../paths.js';
import { runInNs } from './netns.js';
import { nsName, type LabState } from './state.js';
import { LAB } from './topology.js';

export interface StreamResult {
  connections: number;
  established: number;
  ok: number;
  reset: number;
  errors: Record<string, number>;
  corruptedBytes: number;
  bytesSent: number;
  bytesLost: number;
  stallMsMedian: number;
  stallMsMax: number;
  /** How long the end waited for the last echoes. */
  drainMs?: number;
  /** The first connections whose echo was incomplete at the end (conn index, the client's
   * port, bytes). */
  incomplete?: { conn: number; port?: number; sent: number; echoed: number; msSinceEcho: number }[];
}

export function runStreams(
  state: LabState,
  connections: number,
  seconds: number,
  host: string = LAB.vip4,
): { ready: Promise<void>; done: Promise<StreamResult> } {
  const file = join(state.dir, `streams-${Date.now()}-${Math.random().toString(36).slice(2)}.ready`);
  const run = runInNs(
    nsName(state.prefix, 'client'),
    [
      process.execPath,
      join(distSrc(), 'lab', 'stream_check.js'),
      host,
      String(LAB.echoPort),
      String(connections),
      String(seconds),
      file,
    ],
    true,
  );
  const ready = (async () => {
    for (let i = 0; i < 200 && !existsSync(file); i++) await new Promise((r) => setTimeout(r, 50));
    if (!existsSync(file)) throw new Error('streams did not connect');
    rmSync(file);
  })();
  const done = run.then(({ out }) => JSON.parse(out.trim().split('\n').pop()!) as StreamResult);
  return { ready, done };
}

/** The outcome lines of a demo: the streams, and autocannon's JSON report (`-j`). */
export function outcomeLines(s: StreamResult, autocannonJson: string): string[] {
  const c = JSON.parse(autocannonJson.trim() || '{}') as {
    requests?: { total: number; average: number };
    errors?: number;
    timeouts?: number;
    non2xx?: number;
    latency?: { p50: number; p99: number; max: number };
  };
  return [
    `streams: ${s.ok}/${s.connections} intact, ${s.reset} reset, ${s.bytesLost} bytes lost, ${s.corruptedBytes} corrupted; ` +
      `stall per connection: median ${s.stallMsMedian} ms, max ${s.stallMsMax} ms`,
    `autocannon: ${c.requests?.total ?? '?'} requests (${Math.round(c.requests?.average ?? 0)}/s), ` +
      `${c.errors ?? '?'} errors, ${c.timeouts ?? '?'} timeouts, ${c.non2xx ?? '?'} non-2xx; ` +
      `latency p50 ${c.latency?.p50 ?? '?'} ms, p99 ${c.latency?.p99 ?? '?'} ms, max ${c.latency?.max ?? '?'} ms`,
  ];
}
