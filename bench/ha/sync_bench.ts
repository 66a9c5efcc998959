/**
 * HA session sync benchmark: how many sessions per second a master publishes through one
 * Redis and a standby installs, what it costs the master in CPU, and what a synced session
 * costs the standby in memory. Not a timed test: it prints figures and the ratio to the
 * target (50k sessions/s), and writes JSON to bench/results/.
 *
 * Real parts: a redis-server on loopback (started here on a free port, stopped by PID at the
 * end), the Engine (sessions opened by real handshakes, published by its sync hooks), the
 * HaNode of src/ha/node.ts (publisher.ts, follower.ts) on both sides. Both sides run in this one process, with the
 * engines called directly instead of through forwarder threads, so each phase is timed alone:
 *
 *   publish   master only: N sessions become ESTABLISHED and due → events → Redis
 *             (wall time from the first event to the last one acknowledged by Redis; process
 *             CPU over the same interval = the master's cost);
 *   load      a standby starting cold: HSCAN of the N sessions and their install;
 *   live      the standby following: N more sessions published and installed, end to end;
 *   holds     the scans of a whole table, in slices (the forwarder's packets go between
 *             them): the master's snapshot for a full resync of its 2N sessions, the
 *             standby's mark of its 2N copies (a reload) and their adoption (a promotion);
 *             how long each takes and the longest the thread was held meanwhile.
 *
 * Environment: BENCH_SESSIONS (default 200000), BENCH_ROUNDS (3).
 */

import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { HaConfig } from '../../src/config/config.js';
import type { Logger } from '../../src/control/log.js';
import { Engine } from '../../src/dataplane/engine.js';
import { engineLink } from '../../src/ha/engine_link.js';
import { HaNode } from '../../src/ha/node.js';
import { HaControl } from '../../src/ha/role.js';
import { SyncRing } from '../../src/ha/session_sync.js';
import { startLocalRedis } from '../../src/lab/local_redis.js';
import { openSessions, services } from '../lib/sessions.js';
import { formatSpread, spread, type Spread } from '../lib/spread.js';
import { writeResults } from '../lib/results.js';

const N = Number(process.env.BENCH_SESSIONS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const TARGET = 50_000;

const quiet: Logger = {
  log(level, msg) {
    if (level === 'error') console.error(`  (sync: ${msg})`);
  },
};

function engine(nodeId: number, control: HaControl, capacity: number): Engine {
  const ring = new SyncRing(capacity + 1024);
  return new Engine(
    {
      capacity,
      seed: 7,
      nowMs: 0,
      ha: { nodeId, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 3600 },
    },
    services(),
  );
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Round {
  publishPerSec: number;
  masterCpuUsPerSession: number;
  loadPerSec: number;
  livePerSec: number;
  standbyBytesPerSession: number;
  redisBytesPerSession: number;
  snapshotMs: number;
  snapshotHoldMs: number;
  markMs: number;
  markHoldMs: number;
  adoptMs: number;
  adoptHoldMs: number;
}

/** How long `scan` takes, and the longest the thread was held meanwhile (ms). */
async function held(scan: () => Promise<unknown>): Promise<{ ms: number; holdMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  const t = performance.now();
  await scan();
  const ms = performance.now() - t;
  h.disable();
  return { ms, holdMs: h.max / 1e6 };
}

async function round(port: number, k: number): Promise<Round> {
  const redis = new Redis(port, '127.0.0.1');
  await redis.flushall();
  const cfg = (nodeId: number, role: 'master' | 'backup'): HaConfig => ({
    mode: 'pair',
    nodeId,
    name: `bench-${nodeId}`,
    redis: { url: `redis://127.0.0.1:${port}` },
    cluster: `bench${k}`,
    syncAfterMs: 0,
    refreshSec: 3600,
    drainMs: 0,
    routeHealth: 'off',
    initialRole: role,
  });
  const ca = new HaControl();
  const cb = new HaControl();
  const a = { e: engine(1, ca, 2 * N + 1024) };
  const b = { e: engine(2, cb, 2 * N + 1024) };
  const master = new HaNode(cfg(1, 'master'), [engineLink(a.e)], quiet, ca);
  master.start();
  await until(() => master.status().resyncs >= 1, 10_000, 'master connected');
  const memBefore = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);

  // publish: sessions opened at t=0 become due at the next tick; the engine pushes events.
  openSessions(a.e, N, 0);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  a.e.advanceTimers(200);
  await until(() => master.status().published >= N, 120_000, 'master published');
  const publishSec = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const memAfter = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);

  // load: a standby starting now finds N sessions in Redis.
  const standby = new HaNode(cfg(2, 'backup'), [engineLink(b.e)], quiet, cb);
  const t1 = performance.now();
  standby.start();
  await until(() => b.e.sessionCount >= N, 120_000, 'standby loaded');
  const loadSec = (performance.now() - t1) / 1000;

  // live: N more, published and installed end to end while the standby follows.
  openSessions(a.e, N, 300, N);
  const t2 = performance.now();
  a.e.advanceTimers(500);
  await until(() => b.e.sessionCount >= 2 * N, 120_000, 'standby followed');
  const liveSec = (performance.now() - t2) / 1000;

  await master.stop();
  await standby.stop();
  redis.disconnect();
  const snapshot = await held(() => a.e.syncSnapshot());
  const mark = await held(() => b.e.markSynced(1));
  const adopt = await held(() => b.e.adoptSynced(1));
  return {
    publishPerSec: N / publishSec,
    masterCpuUsPerSession: (cpu.user + cpu.system) / N,
    loadPerSec: N / loadSec,
    livePerSec: N / liveSec,
    standbyBytesPerSession: b.e.table.bytesPerSession,
    redisBytesPerSession: (memAfter - memBefore) / N,
    snapshotMs: snapshot.ms,
    snapshotHoldMs: snapshot.holdMs,
    markMs: mark.ms,
    markHoldMs: mark.holdMs,
    adoptMs: adopt.ms,
    adoptHoldMs: adopt.holdMs,
  };
}

async function main(): Promise<void> {
  const server = await startLocalRedis();
  const port = server.port;
  const rounds: Round[] = [];
  try {
    for (let k = 0; k < ROUNDS; k++) {
      rounds.push(await round(port, k));
      process.stdout.write(`round ${k + 1}/${ROUNDS} done\n`);
    }
  } finally {
    await server.stop(); // the redis-server this benchmark started, by its PID
  }
  const keys = Object.keys(rounds[0]!) as (keyof Round)[];
  const summary = Object.fromEntries(
    keys.map((key) => {
      const xs = rounds.map((r) => r[key]);
      return [key, spread(xs)];
    }),
  ) as Record<keyof Round, Spread>;
  const f = formatSpread;
  console.log(`\nHA session sync through one Redis (${N} sessions per phase, ${ROUNDS} rounds: median (min–max))`);
  console.log(`  master publish          ${f(summary.publishPerSec)} sessions/s`);
  console.log(`  standby cold load       ${f(summary.loadPerSec)} sessions/s`);
  console.log(`  live, end to end        ${f(summary.livePerSec)} sessions/s`);
  console.log(`  master CPU              ${f(summary.masterCpuUsPerSession, 2)} µs per session published`);
  console.log(`  standby memory          ${f(summary.standbyBytesPerSession)} B per session (session table)`);
  console.log(`  Redis memory            ${f(summary.redisBytesPerSession)} B per session`);
  console.log(`  scans of ${2 * N} sessions, in slices: in all (ms) / the longest the forwarder was held (ms)`);
  console.log(`    resync snapshot       ${f(summary.snapshotMs)} / ${f(summary.snapshotHoldMs, 1)}`);
  console.log(`    reload's mark         ${f(summary.markMs)} / ${f(summary.markHoldMs, 1)}`);
  console.log(`    promotion's adopt     ${f(summary.adoptMs)} / ${f(summary.adoptHoldMs, 1)}`);
  const worst = Math.min(summary.publishPerSec.median, summary.livePerSec.median);
  console.log(
    `  target >= ${TARGET} sessions/s: ${(worst / TARGET).toFixed(2)}x of target (slower of publish and live) — ${worst >= TARGET ? 'met' : 'NOT met'}`,
  );
  writeResults('ha-sync', { sessions: N, rounds, summary, target: TARGET });
}

await main();
