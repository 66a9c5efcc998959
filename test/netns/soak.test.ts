/**
 * `npm run soak` as an operator runs it, shortened: the HA pair under the soak's mixed load
 * (keep-alive and new connections, v4 and v6, UDP, byte-checked echoes) for 40 s, then the
 * drain. Every verdict must hold: nothing lost, no resource ran out, both nodes' tables and
 * the Redis hashes empty after the load, RSS back near where the warm-up left it. Then the
 * same through a failover and its failback (SOAK_FAILOVERS=1): nothing accumulates across
 * them either; and the cluster of three through a node's death by kill -9 and its return
 * (SOAK_CLUSTER=3, SOAK_FAILOVERS=1): its peers adopt its sessions and hand them back, and
 * every table and hash still empties. Root only.
 */

import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { labDown } from '../../src/lab/lab.js';
import { packageRoot } from '../../src/paths.js';

const root = process.getuid?.() === 0;
const prefix = `ts${process.pid % 100000}-`;

interface SoakResult {
  topology: string;
  totals: {
    requests: number;
    connections: number;
    connectionsBy: Record<string, number>;
    udpSent: number;
    udpReassembled: number;
    synProxied: number;
    echoes: number;
  };
  memory: { node: string; liveHeapGrowthMiB: number; liveRssGrowthMiB: number }[];
  drainedAfterSec: number | null;
  verdicts: { name: string; ok: boolean; detail: string }[];
  failovers: { at: number; takeoverMs: number; failbackMs: number; adoptedMs?: number | null }[];
  /** Per node, the drops that grew, by reason. */
  drops: Record<string, Record<string, number>>;
  samples: { phase: string; nodes: Record<string, { rssMiB: number; sessions: number } | null> }[];
}

/** `npm run soak` with `env` on top of the short run's; every verdict must hold. */
async function soak(env: Record<string, string>): Promise<SoakResult> {
  try {
    const r = spawnSync(process.execPath, [join(packageRoot(), 'dist', 'bench', 'soak', 'soak.js')], {
      env: {
        ...process.env,
        SOAK_SECONDS: '40',
        SOAK_SAMPLE_SECONDS: '5',
        SOAK_CHUNK_SECONDS: '20',
        SOAK_DRAIN_SECONDS: '60',
        SOAK_PREFIX: prefix,
        ...env,
      },
      encoding: 'utf8',
      timeout: 360_000,
    });
    const file = /^wrote (.*\.json)$/m.exec(r.stdout)?.[1];
    expect(file, `${r.stdout}\n${r.stderr}`).toBeDefined();
    const out = JSON.parse(readFileSync(file!, 'utf8')) as SoakResult;
    rmSync(file!);
    console.log(r.stdout.slice(r.stdout.indexOf('tunvs soak:')));
    for (const v of out.verdicts) expect(v.ok, `${v.name}: ${v.detail}`).toBe(true);
    expect(r.status).toBe(0);
    return out;
  } finally {
    // The soak takes its lab down itself, also on failure; this covers a kill by the timeout.
    await labDown(prefix, () => undefined);
  }
}

describe.skipIf(!root)('soak (npm run soak, 40–80 s)', () => {
  it('the pair under mixed load: nothing lost, tables and Redis hashes empty after, memory steady', async () => {
    const out = await soak({});
    expect(out.topology).toBe('pair');
    // The load ran: both kinds of TCP, datagrams and echoes, and the standby held copies.
    expect(out.totals.requests).toBeGreaterThan(10_000);
    expect(out.totals.connections).toBeGreaterThan(1_000);
    expect(out.totals.udpSent).toBeGreaterThan(1_000);
    // A tenth of them 3,000 bytes: each query and its answer reassembled by the master.
    expect(out.totals.udpReassembled).toBeGreaterThan(out.totals.udpSent / 10);
    expect(out.totals.echoes).toBeGreaterThanOrEqual(40);
    // The SYN-proxy service's connections, each accepted by its cookie.
    expect(out.totals.connectionsBy.synproxy).toBeGreaterThan(100);
    expect(out.totals.synProxied).toBeGreaterThanOrEqual(out.totals.connectionsBy.synproxy!);
    const load = out.samples.filter((s) => s.phase === 'load');
    expect(Math.max(...load.map((s) => s.nodes['lb-b']?.sessions ?? 0))).toBeGreaterThan(0);
    expect(out.drainedAfterSec).not.toBeNull();
    expect(out.memory.map((m) => m.node)).toEqual(['lb-a', 'lb-b']);
  }, 420_000);

  it('the same through a failover and its failback: the keep-alive requests all answered, nothing left after', async () => {
    // A longer drain than the soak's default: a session that a handshake in flight at a
    // switch leaves on the node that made it idles out (timeouts.established, 90 s), and the
    // failback comes ~10 s before the load ends. The drains measured 20 s (76-112 s while
    // the DR and TUNNEL sessions closed just before a switch lived out a copy's 90 s).
    const out = await soak({
      // 30 s chunks: the failover comes syncAfterMs + 3 s after the chunk's keep-alive clients
      // have connected (seconds after its start on 2 loaded cores), its failback before the end.
      SOAK_SECONDS: '60',
      SOAK_CHUNK_SECONDS: '30',
      SOAK_FAILOVERS: '1',
      SOAK_FAILOVER_HOLD_SECONDS: '5',
      SOAK_DRAIN_SECONDS: '180',
    });
    expect(out.failovers).toHaveLength(1);
    expect(out.totals.requests).toBeGreaterThan(10_000);
    expect(out.drainedAfterSec).not.toBeNull();
  }, 420_000);

  it("the cluster of three through a node's death (kill -9) and return: the keep-alive requests all answered, nothing left after", async () => {
    // A chunk holds the death, the hold and the return (tunvs starting, loading, announcing).
    const out = await soak({
      SOAK_CLUSTER: '3',
      SOAK_SECONDS: '80',
      SOAK_CHUNK_SECONDS: '40',
      SOAK_FAILOVERS: '1',
      // Longer than the alive key's 3 s and a heartbeat: its sessions adopted meanwhile.
      SOAK_FAILOVER_HOLD_SECONDS: '6',
      SOAK_DRAIN_SECONDS: '120',
    });
    expect(out.topology).toBe('cluster-3');
    expect(out.failovers).toHaveLength(1);
    // Its peers took its sessions over while it was gone (its alive key expired).
    expect(out.failovers[0]!.adoptedMs).not.toBeNull();
    expect(out.totals.requests).toBeGreaterThan(10_000);
    expect(out.totals.connectionsBy.tunnel).toBeGreaterThan(100);
    expect(out.drainedAfterSec).not.toBeNull();
    expect(out.memory.map((m) => m.node)).toEqual(['lb-a', 'lb-b', 'lb-c']);
    // A cluster node forwards from its start: the kernel's MLD report into its new TUN device
    // is named for what it is, nothing is counted as a standby's.
    for (const [node, d] of Object.entries(out.drops)) expect(d.standby ?? 0, node).toBe(0);
  }, 420_000);
});
