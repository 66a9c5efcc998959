/**
 * Cluster benchmark (docs/cluster.md). Not a timed test: it prints figures and ratios and
 * writes JSON to bench/results/.
 *
 *   sync     2, 3 and 4 nodes in this process — real engines (sessions opened by real
 *            handshakes), real HaNodes (publisher, follower, registry) and a real redis-server
 *            on loopback: every node opens BENCH_SESSIONS sessions of its own at once; how fast
 *            they are published and installed on every peer, the process CPU per session
 *            (publish once + install on each peer), the memory a session costs each node and
 *            Redis, and the sync lag of a single new session afterwards (median of 20).
 *   vip      the cluster lab (root): autocannon (keep-alive req/s) and new connections per
 *            second through the VIP with 3, 2 and 1 nodes (nodes stopped in order, so the
 *            routers withdraw them, then started again), and the CPU all tunvs processes spent
 *            per request beside the single node's. This machine has 2 cores: the aggregate
 *            cannot grow with the nodes here; what must hold is the CPU per request (target:
 *            within 10 % of one node's).
 *
 * Environment: BENCH_SESSIONS (default 50000 per node), BENCH_ROUNDS (3), BENCH_PARTS
 * (sync,vip), BENCH_SECONDS (8 per load run), BENCH_WORKERS (2 forwarder threads per node).
 */

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import type { HaConfig } from '../../src/config/config.js';
import type { Logger } from '../../src/control/log.js';
import { Engine } from '../../src/dataplane/engine.js';
import { engineLink } from '../../src/ha/engine_link.js';
import { HaNode } from '../../src/ha/node.js';
import { HaControl } from '../../src/ha/role.js';
import { SyncRing } from '../../src/ha/session_sync.js';
import { labDown, labUp, LAB, nsName, readState } from '../../src/lab/lab.js';
import { startLocalRedis } from '../../src/lab/local_redis.js';
import { runInNs, stopPid } from '../../src/lab/netns.js';
import { labPid, restartTunvs } from '../../src/lab/pair.js';
import { vipNextHops } from '../../src/lab/cluster.js';
import { packageRoot } from '../../src/paths.js';
import { openSessions, services } from '../lib/sessions.js';

const N = Number(process.env.BENCH_SESSIONS ?? 50_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const PARTS = (process.env.BENCH_PARTS ?? 'sync,vip').split(',');
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
/** Forwarder threads per node in the vip part. */
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const quiet: Logger = { log: (level, msg) => (level === 'error' ? console.error(`  (${msg})`) : undefined) };

interface Spread {
  median: number;
  min: number;
  max: number;
}
function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! };
}
const f = (x: Spread, d = 0): string => `${x.median.toFixed(d)} (${x.min.toFixed(d)}–${x.max.toFixed(d)})`;

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

// --- sync ------------------------------------------------------------------------------------

interface SyncRound {
  nodes: number;
  /** Sessions published by all nodes together, per second, until every peer had them. */
  endToEndPerSec: number;
  /** Sessions installed per second per node (each installs every peer's). */
  installPerSecPerNode: number;
  /** Process CPU (all nodes) per session published, incl. installing it on every peer. */
  cpuUsPerSession: number;
  nodeBytesPerSession: number;
  redisBytesPerSession: number;
  syncLagMs: number;
}

async function syncRound(port: number, nodes: number, k: number): Promise<SyncRound> {
  const redis = new Redis(port, '127.0.0.1');
  await redis.flushall();
  const memBefore = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const capacity = nodes * N + 4096;
  const members = Array.from({ length: nodes }, (_, i) => {
    const id = i + 1;
    const control = new HaControl();
    const e = new Engine(
      {
        capacity,
        seed: 7 + id,
        nowMs: 0,
        ha: {
          nodeId: id,
          controlSab: control.sab,
          syncRingSab: new SyncRing(N + 4096).sab,
          syncAfterMs: 0,
          refreshSec: 3600,
        },
      },
      services(i), // local addresses of its own
    );
    const cfg: HaConfig = {
      mode: 'cluster',
      nodeId: id,
      name: `bench-${id}`,
      redis: { url: `redis://127.0.0.1:${port}` },
      cluster: `cbench${k}-${nodes}`,
      syncAfterMs: 0,
      refreshSec: 3600,
      drainMs: 0,
      initialRole: 'backup',
    };
    const node = new HaNode(cfg, [engineLink(e)], quiet, control);
    node.start();
    return { e, node };
  });
  await until(
    () => members.every((m) => m.node.status().ready && m.node.status().peers.length === nodes - 1),
    20_000,
    'ready',
  );
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let handshakesSec = 0; // the engines' own work opening the sessions: not sync
  members.forEach((m, i) => {
    handshakesSec += openSessions(m.e, N, 0, i * N).seconds;
    m.e.advanceTimers(200); // due now (syncAfterMs 0): into the event ring
  });
  await until(() => members.every((m) => m.e.sessionCount >= nodes * N), 300_000, 'every node has every session');
  const sec = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const memAfter = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  // Sync lag of one new session, node 1 → every peer.
  const lags: number[] = [];
  for (let j = 0; j < 20; j++) {
    const want = nodes * N + j + 1;
    const s0 = performance.now();
    openSessions(members[0]!.e, 1, 1000 + j * 200, nodes * N + j);
    members[0]!.e.advanceTimers(1200 + j * 200);
    await until(() => members.every((m) => m.e.sessionCount >= want), 10_000, 'lag');
    lags.push(performance.now() - s0);
  }
  for (const m of members) await m.node.stop();
  redis.disconnect();
  return {
    nodes,
    endToEndPerSec: (nodes * N) / sec,
    installPerSecPerNode: ((nodes - 1) * N) / sec,
    cpuUsPerSession: (cpu.user + cpu.system - handshakesSec * 1e6) / (nodes * N),
    nodeBytesPerSession: members[0]!.e.table.bytesPerSession,
    redisBytesPerSession: (memAfter - memBefore) / (nodes * N),
    syncLagMs: spread(lags).median,
  };
}

async function syncPart(): Promise<Record<string, unknown>> {
  const server = await startLocalRedis();
  const rounds: SyncRound[] = [];
  try {
    for (let k = 0; k < ROUNDS; k++) {
      for (const nodes of [2, 3, 4]) {
        rounds.push(await syncRound(server.port, nodes, k));
        process.stdout.write(`sync round ${k + 1}/${ROUNDS}, ${nodes} nodes done\n`);
      }
    }
  } finally {
    await server.stop(); // the redis-server this benchmark started, by its PID
  }
  console.log(
    `\nSession sync, cluster mode (${N} sessions opened on each node at once; ${ROUNDS} rounds: median (min–max))`,
  );
  console.log(
    '| nodes | end to end sessions/s | installs/s per node | CPU µs per session | B per session on a node | B per session in Redis | sync lag ms |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  const summary: Record<string, Record<string, Spread>> = {};
  for (const nodes of [2, 3, 4]) {
    const rs = rounds.filter((r) => r.nodes === nodes);
    const s = (key: keyof SyncRound): Spread => spread(rs.map((r) => r[key]));
    const m = {
      endToEndPerSec: s('endToEndPerSec'),
      installPerSecPerNode: s('installPerSecPerNode'),
      cpuUsPerSession: s('cpuUsPerSession'),
      nodeBytesPerSession: s('nodeBytesPerSession'),
      redisBytesPerSession: s('redisBytesPerSession'),
      syncLagMs: s('syncLagMs'),
    };
    summary[nodes] = m;
    console.log(
      `| ${nodes} | ${f(m.endToEndPerSec)} | ${f(m.installPerSecPerNode)} | ${f(m.cpuUsPerSession, 2)} | ${f(m.nodeBytesPerSession)} | ${f(m.redisBytesPerSession)} | ${f(m.syncLagMs, 1)} |`,
    );
  }
  console.log(
    "(one process plays every node: CPU is all nodes together, per session published once and installed on each peer, the engines' handshake work left out; the lag is bounded below by the publisher's 100 ms batch tick)",
  );
  return { sessionsPerNode: N, rounds, summary };
}

// --- through the VIP ---------------------------------------------------------------------------

const PREFIX = 'tcb-';
const NODES = ['lb-a', 'lb-b', 'lb-c'] as const;

/** CPU seconds (user + system, all threads) of a process so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function client(args: string[]): Promise<Record<string, number>> {
  const r = await runInNs(nsName(PREFIX, 'client'), [
    process.execPath,
    join(packageRoot(), 'dist', 'bench', 'lab', 'client.js'),
    ...args,
  ]);
  return JSON.parse(r.out.trim().split('\n').pop()!) as Record<string, number>;
}

interface VipSample {
  nodes: number;
  reqPerSec: number;
  p99Ms: number;
  connPerSec: number;
  cpuUsPerRequest: number;
}

async function vipSample(up: readonly string[]): Promise<VipSample> {
  const state = readState(PREFIX)!;
  const pids = up.map((n) => labPid(state, `tunvs-${n}`)!);
  const c0 = pids.map(cpuSeconds);
  const http = await client(['http', `http://${LAB.vip4}/`, '50', String(SECONDS)]);
  const c1 = pids.map(cpuSeconds);
  const conns = await client(['conns', LAB.vip4, String(LAB.vport), '20', String(SECONDS)]);
  const cpu = c1.reduce((a, x, i) => a + x - c0[i]!, 0);
  return {
    nodes: up.length,
    reqPerSec: http.reqPerSec!,
    p99Ms: http.p99Ms!,
    connPerSec: conns.connPerSec!,
    cpuUsPerRequest: (cpu * 1e6) / http.total!,
  };
}

async function vipPart(): Promise<Record<string, unknown>> {
  if (process.getuid?.() !== 0) throw new Error('the vip part needs root (the netns lab): BENCH_PARTS=sync without it');
  await labUp({ prefix: PREFIX, workers: WORKERS, reader: false, cluster: 3, log: () => undefined });
  const samples: VipSample[] = [];
  try {
    for (let k = 0; k < ROUNDS; k++) {
      for (const count of [3, 2, 1]) {
        const up = NODES.slice(0, count);
        for (const n of NODES.slice(count)) {
          const pid = labPid(readState(PREFIX)!, `tunvs-${n}`);
          if (pid !== undefined) await stopPid(pid, 5000); // SIGTERM: withdraws, drains, exits
        }
        await until(() => vipNextHops(readState(PREFIX)!, 4).length === count, 20_000, `${count} nodes in ECMP`);
        const s = await vipSample(up);
        samples.push(s);
        console.log(
          `vip round ${k + 1} ${count} node(s): ${s.reqPerSec.toFixed(0)} req/s (p99 ${s.p99Ms} ms), ${s.connPerSec.toFixed(0)} conn/s, ${s.cpuUsPerRequest.toFixed(1)} µs CPU per request`,
        );
      }
      for (const n of NODES.slice(1)) await restartTunvs(PREFIX, n);
      await until(() => vipNextHops(readState(PREFIX)!, 4).length === 3, 30_000, 'all back');
    }
  } finally {
    await labDown(PREFIX, () => undefined);
  }
  const by = (nodes: number, key: keyof VipSample): Spread =>
    spread(samples.filter((s) => s.nodes === nodes).map((s) => s[key]));
  console.log(
    `\nThrough the VIP (autocannon -c 50 keep-alive, ${SECONDS} s; new connections 20 in parallel; ${WORKERS} forwarder threads per node; ${ROUNDS} rounds)`,
  );
  console.log('| nodes | req/s | p99 ms | new conn/s | CPU µs per request (all tunvs) | vs 1 node |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  const one = by(1, 'cpuUsPerRequest').median;
  const summary: Record<string, unknown> = {};
  for (const nodes of [1, 2, 3]) {
    const cpu = by(nodes, 'cpuUsPerRequest');
    summary[nodes] = {
      reqPerSec: by(nodes, 'reqPerSec'),
      p99Ms: by(nodes, 'p99Ms'),
      connPerSec: by(nodes, 'connPerSec'),
      cpuUsPerRequest: cpu,
      cpuRatioToOneNode: cpu.median / one,
    };
    console.log(
      `| ${nodes} | ${f(by(nodes, 'reqPerSec'))} | ${f(by(nodes, 'p99Ms'))} | ${f(by(nodes, 'connPerSec'))} | ${f(cpu, 1)} | ${(cpu.median / one).toFixed(2)}x |`,
    );
  }
  const worst = Math.max(...[2, 3].map((n) => by(n, 'cpuUsPerRequest').median / one));
  console.log(
    `CPU per request with more nodes: ${worst.toFixed(2)}x of one node's (target within 1.10x) — ${worst <= 1.1 ? 'met' : 'NOT met'}`,
  );
  console.log(
    'This machine has 2 cores: every node, the router, the client and the servers share them, so the aggregate cannot grow with the nodes here.',
  );
  return { samples, summary, cpuRatioWorst: worst };
}

async function main(): Promise<void> {
  const out: Record<string, unknown> = {};
  if (PARTS.includes('sync')) out.sync = await syncPart();
  if (PARTS.includes('vip')) out.vip = await vipPart();
  const dir = join(packageRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `cluster-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  console.log(`JSON: ${file}`);
}

await main();
