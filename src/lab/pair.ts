/**
 * The lab's active/standby pair: Redis, tunvs on lb-a and lb-b, keepalived on both; and what
 * `tunvs lab failover` and the HA tests do to it (kill tunvs or keepalived on the master by
 * PID, cut its link, stop Redis) and undo.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../control/admin.js';
import type { HaStatus } from '../ha/node.js';
import { distSrc, haCheckBinary } from '../paths.js';
import { inNs, isAlive, spawnInNs, stopPid } from './netns.js';
import { nsName, readState, recordProc, waitFor, writeState, type LabState } from './state.js';
import { keepalivedConfig, LAB, labConfig, type LabHa, type LabLbOptions } from './topology.js';

const DIST = distSrc();

/** redis-server's arguments in the lab (no persistence; `dir` for its working files). */
export function redisArgs(dir?: string): string[] {
  return [
    '--bind',
    LAB.redis4,
    '--port',
    String(LAB.redisPort),
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    ...(dir ? ['--dir', dir] : []),
  ];
}

/** What labUp needs of its options here. */
export interface PairOptions {
  prefix: string;
  workers: number;
  steering?: boolean;
  offload?: boolean;
  /** With the NAT and TUNNEL services (lab/modes.ts; default true). */
  modes?: boolean;
  /** Packet I/O of the LBs (default tun). */
  io?: 'tun' | 'xdp';
  log: (line: string) => void;
}

/** The parts of the lab's options every LB config takes. */
export function labLbOptions(o: PairOptions): LabLbOptions {
  return {
    workers: o.workers,
    ...(o.steering !== undefined ? { steering: o.steering } : {}),
    ...(o.offload !== undefined ? { offload: o.offload } : {}),
    ...(o.io !== undefined ? { io: o.io } : {}),
  };
}

/** Start a program in a lab namespace, recorded by PID; `underReader`: in the real-server
 * apps' cgroup, under the TOA reader (the lab's servers), else outside it. */
export type Starter = (name: string, ns: string, args: string[], program?: string, underReader?: boolean) => void;

/** Start tunvs on an LB node and wait until it answers on its admin socket. */
export async function startTunvs(
  state: LabState,
  o: PairOptions,
  node: string,
  admin: string,
  start: Starter,
  ha?: LabHa,
): Promise<void> {
  writeFileSync(
    join(state.dir, `${node}.yaml`),
    labConfig(admin, { ...labLbOptions(o), ...(ha ? { ha } : {}), modes: o.modes ?? true }),
  );
  await runTunvs(state, node, admin, start);
}

/** Start tunvs on a node with its config file (written before) and wait for its admin socket. */
export async function runTunvs(state: LabState, node: string, admin: string, start: Starter): Promise<number> {
  const configFile = join(state.dir, `${node}.yaml`);
  const name = `tunvs-${node}`;
  start(name, nsName(state.prefix, node), [join(DIST, 'cli', 'main.js'), 'run', '--config', configFile]);
  const tunvs = [...state.procs].reverse().find((p) => p.name === name)!;
  const log = join(state.dir, `tunvs-${node}.log`);
  await waitFor(
    `tunvs on ${node} to answer on its admin socket`,
    async () => {
      if (!isAlive(tunvs.pid)) throw new Error(`tunvs on ${node} exited:\n${readFileSync(log, 'utf8').slice(-2000)}`);
      try {
        await adminRequest(admin, { cmd: 'stats' }, 1000);
        return true;
      } catch {
        return false;
      }
    },
    15_000,
    log,
  );
  return tunvs.pid;
}

/** Stop tunvs on a node of lab `prefix` if it runs (by PID) and start it again from its
 * config file, recorded in the lab state; returns the new PID. */
export async function restartTunvs(prefix: string, node: string): Promise<number> {
  const old = labPid(readState(prefix)!, `tunvs-${node}`);
  if (old !== undefined) await stopPid(old);
  const state = readState(prefix)!;
  const admin = adminOf(state, node);
  return runTunvs(state, node, admin, recordingStarter(state));
}

/** A Starter for processes started after labUp (restarts): recorded in the state by PID. */
export function recordingStarter(state: LabState): Starter {
  return (name, ns, args, program = process.execPath) => {
    recordProc(state, name, spawnInNs(ns, [program, ...args], join(state.dir, `${name}.log`)));
  };
}

/** The pair: Redis, tunvs on lb-a and lb-b (both start as backup), keepalived on both;
 * returns once keepalived made lb-a master and tunvs there knows it. */
export async function startPair(state: LabState, o: PairOptions, start: Starter): Promise<void> {
  const redisNs = nsName(o.prefix, 'redis');
  start('redis', redisNs, redisArgs(state.dir), 'redis-server');
  await waitFor(
    'redis to answer',
    () => {
      try {
        return inNs(redisNs, ['redis-cli', '-h', LAB.redis4, 'ping']).trim() === 'PONG';
      } catch {
        return false;
      }
    },
    10_000,
    join(state.dir, 'redis.log'),
  );
  state.adminSocketB = join(state.dir, 'admin-b.sock');
  writeState(state);
  const cluster = o.prefix.replace(/[^A-Za-z0-9_.-]/g, '_');
  for (const node of ['lb-a', 'lb-b'] as const) {
    // keepalived's IPv6 next hops must be usable at once (no duplicate address detection).
    inNs(nsName(o.prefix, node), [
      'sysctl',
      '-q',
      '-w',
      'net.ipv6.conf.eth0.accept_dad=0',
      'net.ipv6.conf.eth1.accept_dad=0',
    ]);
    const admin = node === 'lb-a' ? state.adminSocket : state.adminSocketB;
    await startTunvs(state, o, node, admin, start, {
      mode: 'pair',
      cluster,
      node,
      role: 'backup',
      fifo: join(state.dir, `${node}.fifo`),
    });
  }
  for (const node of ['lb-a', 'lb-b'] as const) {
    const conf = join(state.dir, `keepalived-${node}.conf`);
    writeFileSync(
      conf,
      keepalivedConfig({
        node,
        priority: node === 'lb-a' ? 250 : 249,
        check: haCheckBinary(),
        adminSocket: node === 'lb-a' ? state.adminSocket : state.adminSocketB,
        routerId: `${cluster}${node}`,
        fifo: join(state.dir, `${node}.fifo`),
      }),
    );
    startKeepalived(state, node, start);
  }
  await waitFor(
    'keepalived to make lb-a master',
    async () => {
      try {
        const r = (await adminRequest(state.adminSocket, { cmd: 'ha' }, 1000)) as { ha: { role: string } };
        return r.ha.role === 'master';
      } catch {
        return false;
      }
    },
    20_000,
    join(state.dir, 'keepalived-lb-a.log'),
  );
  o.log('pair up: lb-a master, lb-b backup (keepalived VRRP), sessions synced through Redis');
}

/** The newest live process the lab recorded under `name` (e.g. tunvs-lb-a), or undefined. */
export function labPid(state: LabState, name: string): number | undefined {
  const p = [...state.procs].reverse().find((x) => x.name === name);
  return p && isAlive(p.pid) ? p.pid : undefined;
}

/** A lab LB's admin socket: lb-a's is the lab's own; the pair's lb-b has adminSocketB; a
 * cluster node's is recorded in `admins` (and named after the node before it starts). */
export function adminOf(state: LabState, node: string): string {
  if (node === 'lb-a') return state.adminSocket;
  return state.admins?.[node] ?? state.adminSocketB ?? join(state.dir, `admin-${node}.sock`);
}

/** tunvs's HA status on a node, or undefined when it does not answer. */
export async function haStatusOf(state: LabState, node: 'lb-a' | 'lb-b'): Promise<HaStatus | undefined> {
  try {
    const r = (await adminRequest(adminOf(state, node), { cmd: 'ha' }, 1000)) as { ha: HaStatus };
    return r.ha;
  } catch {
    return undefined;
  }
}

export async function waitRole(
  state: LabState,
  node: 'lb-a' | 'lb-b',
  role: string,
  timeoutMs = 20_000,
): Promise<number> {
  const t0 = Date.now();
  await waitFor(`${node} to become ${role}`, async () => (await haStatusOf(state, node))?.role === role, timeoutMs);
  return Date.now() - t0;
}

/** Start keepalived on a node (its config written by startPair). */
export function startKeepalived(state: LabState, node: 'lb-a' | 'lb-b', start: Starter): void {
  start(
    `keepalived-${node}`,
    nsName(state.prefix, node),
    [
      '-n',
      '-l',
      '-D',
      '--vrrp',
      '-f',
      join(state.dir, `keepalived-${node}.conf`),
      '-p',
      join(state.dir, `keepalived-${node}.pid`),
      '-r',
      join(state.dir, `keepalived-${node}-vrrp.pid`),
    ],
    'keepalived',
  );
}
