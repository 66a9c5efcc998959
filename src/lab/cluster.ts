/**
 * The lab's active/active cluster (`tunvs lab up --cluster N`, docs/cluster.md): Redis as a
 * primary and a replica under three Sentinels, FRR on the router and on every LB node, tunvs
 * on the first N of lb-a..lb-d in cluster mode with its watchdog; and what the cluster demo and tests do to it
 * (a node joins, a node's tunvs dies or comes back, the router's view of the nodes).
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../control/admin.js';
import type { HaStatus } from '../ha/node.js';
import { frrDir, nodeBgpConfig, routerBgpConfig, startFrr } from './frr.js';
import { sentinelConfig } from './local_redis.js';
import { inNs } from './netns.js';
import { distSrc } from '../paths.js';
import { adminOf, labLbOptions, runTunvs, type Starter } from './pair.js';
import { nsName, waitFor, writeState, type LabState } from './state.js';
import { CLUSTER, LAB, labConfig, type ClusterNode } from './topology.js';

export interface ClusterOptions {
  prefix: string;
  workers: number;
  steering?: boolean;
  offload?: boolean;
  /** With the TUNNEL and DR services (topology.ts modeServices; default true). */
  modes?: boolean;
  log: (line: string) => void;
}

/** Where the lab's Sentinels run: namespace, address (labSentinels lists the same). */
const SENTINELS: readonly (readonly [string, string])[] = [
  ['redis', LAB.redis4],
  ['redis2', CLUSTER.redis2],
  ['router', CLUSTER.routerRs4],
];

/** Redis primary (redis), replica (redis2), a Sentinel in redis, redis2 and router. */
async function startRedisSentinel(state: LabState, start: Starter): Promise<void> {
  const port = String(LAB.redisPort);
  const common = ['--port', port, '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];
  start('redis', nsName(state.prefix, 'redis'), ['--bind', LAB.redis4, ...common, '--dir', state.dir], 'redis-server');
  start(
    'redis2',
    nsName(state.prefix, 'redis2'),
    ['--bind', CLUSTER.redis2, ...common, '--dir', state.dir, '--replicaof', LAB.redis4, port],
    'redis-server',
  );
  for (const [node, addr] of SENTINELS) {
    const conf = join(state.dir, `sentinel-${node}.conf`);
    writeFileSync(
      conf,
      sentinelConfig({
        bind: addr,
        port: CLUSTER.sentinelPort,
        dir: state.dir,
        name: CLUSTER.sentinelName,
        primary: `${LAB.redis4} ${port}`,
        quorum: 2,
        downAfterMs: 1000,
      }),
    );
    start(`sentinel-${node}`, nsName(state.prefix, node), [conf, '--sentinel'], 'redis-server');
  }
  await waitFor(
    'the Sentinels to see the replica',
    () => {
      try {
        const out = inNs(nsName(state.prefix, 'redis'), [
          'redis-cli',
          '-h',
          LAB.redis4,
          '-p',
          String(CLUSTER.sentinelPort),
          'sentinel',
          'replicas',
          CLUSTER.sentinelName,
        ]);
        return out.includes(CLUSTER.redis2);
      } catch {
        return false;
      }
    },
    20_000,
    join(state.dir, 'sentinel-redis.log'),
  );
}

/** Each Sentinel's view (what a failed failover test prints): the primary it follows, its
 * flags, how many other Sentinels it knows, whether it is in TILT, its log's last lines. */
export function sentinelViews(state: LabState): string {
  return SENTINELS.map(([node, addr]) => {
    const ask = (...cmd: string[]): string => {
      try {
        return inNs(nsName(state.prefix, node), ['redis-cli', '-h', addr, '-p', String(CLUSTER.sentinelPort), ...cmd]);
      } catch (e) {
        return `(${(e as Error).message.split('\n')[0]})`;
      }
    };
    const fields = ask('sentinel', 'master', CLUSTER.sentinelName).split('\n');
    const field = (k: string): string => fields[fields.indexOf(k) + 1] ?? '?';
    const tilt = /sentinel_tilt:(\d)/.exec(ask('info', 'sentinel'))?.[1] ?? '?';
    let log = '';
    try {
      log = readFileSync(join(state.dir, `sentinel-${node}.log`), 'utf8')
        .trim()
        .split('\n')
        .slice(-4)
        .join(' | ');
    } catch {
      log = '(no log)';
    }
    return `sentinel ${node}: primary ${field('ip')}:${field('port')} flags ${field('flags')}, ${field('num-other-sentinels')} other sentinels, tilt ${tilt}; log: ${log}`;
  }).join('\n');
}

/** The cluster: Redis under Sentinel, FRR on the router, the first `n` nodes. */
export async function startCluster(state: LabState, o: ClusterOptions, n: number, start: Starter): Promise<void> {
  await startRedisSentinel(state, start);
  const router = nsName(o.prefix, 'router');
  // ECMP by the 5-tuple (L4 hash), so every flow of a client is spread, not only clients.
  inNs(router, ['sysctl', '-q', '-w', 'net.ipv4.fib_multipath_hash_policy=1', 'net.ipv6.fib_multipath_hash_policy=1']);
  await startFrr(state.dir, 'router', router, routerBgpConfig(), start);
  for (const node of CLUSTER.nodes.slice(0, n)) await startClusterNode(state, o, node, start);
  await waitFor(
    `the router to spread the VIPs over ${n} nodes`,
    () => vipNextHops(state, 4).length === n && vipNextHops(state, 6).length === n,
    30_000,
    join(frrDir(state.dir, 'router'), 'frr.log'),
  );
  o.log(`cluster up: ${n} nodes announce the VIPs; the router spreads flows over them (ECMP)`);
}

/** FRR and tunvs on one node; resolves once the node announces (it is ready). */
export async function startClusterNode(
  state: LabState,
  o: ClusterOptions,
  node: ClusterNode,
  start: Starter,
): Promise<void> {
  const ns = nsName(o.prefix, node);
  // Replies of the real servers reach a node on its upstream side (through the router).
  inNs(ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
  // FRR only once the upstream link-local address (the IPv6 next hop it announces) is usable.
  await waitFor(
    `${node}'s link-local address`,
    () => {
      const out = inNs(ns, ['ip', '-6', '-o', 'addr', 'show', 'dev', 'eth0', 'scope', 'link']);
      return out.includes('fe80') && !out.includes('tentative');
    },
    10_000,
  );
  await startFrr(state.dir, node, ns, nodeBgpConfig(node), start);
  const admin = adminOf(state, node);
  state.admins = { ...(state.admins ?? {}), [node]: admin };
  writeState(state);
  const cluster = o.prefix.replace(/[^A-Za-z0-9_.-]/g, '_');
  writeFileSync(
    join(state.dir, `${node}.yaml`),
    labConfig(admin, { ...labLbOptions(o), ha: { mode: 'cluster', cluster, node }, modes: o.modes ?? true }),
  );
  await runTunvs(state, node, admin, start);
  // Beside tunvs, as keepalived is in the pair: withdraws the node if tunvs hangs.
  start(`watchdog-${node}`, ns, [
    join(distSrc(), 'cli', 'main.js'),
    'cluster',
    'watchdog',
    '--admin',
    admin,
    '--interval-ms',
    '500',
    '--fall',
    '3',
  ]);
  await waitFor(`${node} to be ready`, async () => (await clusterStatusOf(state, node))?.ready === true, 30_000);
}

/** A node's HA status, or undefined when its tunvs does not answer within `timeoutMs`. */
export async function clusterStatusOf(
  state: LabState,
  node: string,
  timeoutMs = 1000,
): Promise<(HaStatus & { routes: { prefix: string; metric?: number }[] }) | undefined> {
  try {
    const r = (await adminRequest(adminOf(state, node), { cmd: 'ha' }, timeoutMs)) as {
      ha: HaStatus;
      routes: { prefix: string; metric?: number }[];
    };
    return { ...r.ha, routes: r.routes };
  } catch {
    return undefined;
  }
}

/** The router's next hops for the v4 or v6 VIP (the nodes it spreads flows over). */
export function vipNextHops(state: LabState, family: 4 | 6): string[] {
  return nextHops(state, family, family === 4 ? LAB.vip4 : LAB.vip6);
}

/** The router's next hops for an address (from its kernel table, as zebra installed it). */
export function nextHops(state: LabState, family: 4 | 6, addr: string): string[] {
  try {
    const out = inNs(nsName(state.prefix, 'router'), ['ip', '-j', `-${family}`, 'route', 'show', addr]);
    const routes = JSON.parse(out || '[]') as { gateway?: string; nexthops?: { gateway: string }[] }[];
    return routes.flatMap((r) => (r.nexthops ? r.nexthops.map((h) => h.gateway) : r.gateway ? [r.gateway] : []));
  } catch {
    return [];
  }
}
