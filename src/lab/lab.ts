/**
 * `tunvs lab up | down | status | curl`: the network-namespace lab (no Docker needed).
 * Everything it starts is recorded (namespaces, PIDs with their start times) in a state
 * directory, and `down` removes exactly that — processes are stopped by PID, never by name.
 * Tests run their own lab under another prefix, so labs never collide.
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { adminRequest } from '../control/admin.js';
import type { HaStatus } from '../ha/node.js';
import { distSrc, packageRoot } from '../paths.js';
import { readCapture, startCapture, stopCapture, type TcpSeen } from './capture.js';
import {
  nsName,
  procStart,
  readState,
  recordProc,
  stateDir,
  waitFor,
  writeState,
  type LabState,
  type Proc,
} from './state.js';
import { CLUSTER, LAB, labNodes } from './topology.js';
import { startPair, startTunvs, type Starter } from './pair.js';
import { MODE_PORTS, modeVip, setupModeServers, type LabMode } from './modes.js';
import { startCluster } from './cluster.js';
import { inNs, ipBatch, isAlive, listNamespaces, spawnInNs, stopPid } from './netns.js';
import { attachReader, detachReader, formatStatus, readerStatus, resolveCgroup } from '../rs/reader.js';

export interface LabOptions {
  /** Namespace name prefix (default "tvs-"). */
  prefix: string;
  workers: number;
  /** Attach the TUN steering program (default true). */
  steering?: boolean;
  /** TUN offloads (default true). */
  offload?: boolean;
  /** Run the real servers' applications under the eBPF TOA reader (default true). */
  reader?: boolean;
  /** The NAT, TUNNEL and DR services beside the FULLNAT ones, and the real servers set up
   * for them (lab/modes.ts; default true; the cluster's have no NAT: topology.ts
   * modeServices). */
  modes?: boolean;
  /** The active/standby pair: tunvs on lb-a and lb-b, keepalived on both, Redis for the
   * session sync (default false: tunvs on lb-a only, holding the next hops for good). */
  ha?: boolean;
  /** The active/active cluster: tunvs on the first N (2..4) of lb-a..lb-d, FRR on them and
   * on the router (BGP, ECMP), Redis under Sentinel (docs/cluster.md). */
  cluster?: number;
  /** Packet I/O of the LBs (default tun); xdp: the AF_XDP path on their eth0 and eth1, which
   * get one queue per forwarder (docs/xdp.md). */
  io?: 'tun' | 'xdp';
  log: (line: string) => void;
}

const DIST = distSrc();

export async function labUp(o: LabOptions): Promise<LabState> {
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces): run it as root');
  if (!existsSync(join(DIST, 'cli', 'main.js'))) throw new Error('tunvs is not built: run npm run build');
  const existing = listNamespaces().filter((n) => n.startsWith(o.prefix));
  if (existing.length > 0 || readState(o.prefix)) {
    throw new Error(
      `a lab with prefix ${o.prefix} exists (${existing.join(' ') || 'state only'}): run tunvs lab down first`,
    );
  }
  const dir = stateDir(o.prefix);
  mkdirSync(dir, { recursive: true });
  const state: LabState = { prefix: o.prefix, namespaces: [], procs: [], dir, adminSocket: join(dir, 'admin.sock') };
  writeState(state);
  try {
    await build(state, o);
  } catch (e) {
    await labDown(o.prefix, () => undefined);
    throw e;
  }
  return state;
}

async function build(state: LabState, o: LabOptions): Promise<void> {
  const sw = nsName(o.prefix, 'sw');
  if (o.cluster !== undefined && o.ha) throw new Error('choose the pair (--ha) or the cluster (--cluster N), not both');
  const nodes = labNodes(o.cluster !== undefined);
  for (const ns of [sw, ...nodes.map((n) => nsName(o.prefix, n.name))]) {
    ipBatch([`netns add ${ns}`]);
    state.namespaces.push(ns);
    writeState(state);
    ipBatch(['link set lo up'], ns);
  }
  ipBatch(
    LAB.bridges.flatMap((b) => [`link add ${b} type bridge`, `link set ${b} up`]),
    sw,
  );
  // The switch only switches: where br_netfilter is loaded (Docker loads it) bridged frames
  // would otherwise pass the iptables hooks too, and every path's cost would depend on
  // whether Docker ran on this machine before. (-e: the keys exist only with the module.)
  inNs(sw, [
    'sysctl',
    '-q',
    '-e',
    '-w',
    'net.bridge.bridge-nf-call-iptables=0',
    'net.bridge.bridge-nf-call-ip6tables=0',
    'net.bridge.bridge-nf-call-arptables=0',
  ]);
  for (const n of nodes) {
    const ns = nsName(o.prefix, n.name);
    // A cluster node's link-local address is its BGP IPv6 next hop: usable at once, or FRR
    // announces an all-zero one that the router refuses (FRR issue 4940).
    if (o.cluster !== undefined && n.name.startsWith('lb-'))
      inNs(ns, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    const swSide: string[] = [];
    const nodeSide: string[] = [];
    // An LB's veths have a queue per forwarder: with io: xdp each forwarder then has a socket
    // on each (XDP on a veth wants as many receive queues as its peer has transmit queues).
    // Without XDP the queues change nothing (the peer's packets take the backlog either way).
    const q = n.name.startsWith('lb-') ? ` numtxqueues ${o.workers} numrxqueues ${o.workers}` : '';
    n.links.forEach((l, i) => {
      const peer = `${n.name.replace(/-/g, '')}${i}`;
      swSide.push(
        `link add ${peer}${q} type veth peer name eth${i}${q} netns ${ns}`,
        `link set ${peer} master ${l.bridge} up`,
      );
      nodeSide.push(`addr add ${l.v4} dev eth${i}`, `addr add ${l.v6} dev eth${i} nodad`, `link set eth${i} up`);
    });
    ipBatch(swSide, sw);
    ipBatch(nodeSide, ns);
    ipBatch(
      n.routes.map(([prefix, via]) => `route add ${prefix} via ${via}`),
      ns,
    );
    if (n.forwarding) inNs(ns, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    // TCP's retransmission backoff stops at 10 s, not 120 (kernels from 6.15 have the key;
    // -e: others keep 120). The lab's overload tests (1,000 bulk flows on a starved machine)
    // drop packets at the TUN queue; a connection whose retransmissions were dropped seven
    // times running would otherwise wait out 100 s and more, longer than the LB's
    // established timeout (90 s): its session gone, it never finishes.
    // With that cap, an orphaned socket (closed by its application with data still unacked,
    // as the echo servers' are after the client's FIN) whose backoff reaches it would be
    // aborted at once, silently (the kernel gives an orphan 8 retries only while its RTO is
    // below the cap): the client would wait forever. 15 retries, as tcp_retries2 gives a
    // socket still open, let it retransmit for ~110 s.
    inNs(ns, [
      'sysctl',
      '-q',
      '-e',
      '-w',
      `net.ipv4.tcp_rto_max_ms=${LAB.tcpRtoMaxMs}`,
      'net.ipv4.tcp_orphan_retries=15',
    ]);
  }
  o.log(`namespaces up: ${state.namespaces.join(' ')}`);

  if (o.reader ?? true) {
    // The real servers' apps run in one cgroup with the TOA reader attached; it honours a
    // TOA only from the LB's local addresses.
    const cgroup = `tunvs-lab/${o.prefix.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    state.cgroup = cgroup;
    writeState(state);
    // The cluster's nodes each have local addresses of their own, all in these prefixes.
    const trusted = o.cluster !== undefined ? ['198.18.2.0/24', 'fd18:18:2::/64'] : [...LAB.laddrs4, ...LAB.laddrs6];
    attachReader(cgroup, { trusted }, true);
    o.log(`TOA reader attached to cgroup ${resolveCgroup(cgroup)} (real-server apps run there)`);
  }

  /** Start a Node script (or, with `program`, another program) in `ns`, recorded by PID. */
  const start: Starter = (name, ns, args, program = process.execPath, underReader = false) => {
    const logFile = join(state.dir, `${name}.log`);
    recordProc(
      state,
      name,
      spawnInNs(ns, [program, ...args], logFile, process.env, underReader ? readerWrapper(state) : []),
    );
  };
  for (const rs of LAB.realServers) {
    start(
      rs.name,
      nsName(o.prefix, rs.name),
      [
        join(DIST, 'lab', 'demo_server.js'),
        '--name',
        rs.name,
        '--port',
        String(LAB.rsPort),
        '--echo-port',
        String(LAB.echoPort),
      ],
      process.execPath,
      true,
    );
  }
  // The real servers answer TUNNEL and DR clients themselves: through the pair's floating
  // next hop, or the cluster's router.
  if (o.modes ?? true) {
    if (o.cluster === undefined) setupModeServers(o.prefix, LAB.float.rs4, LAB.float.rs6);
    else setupModeServers(o.prefix, CLUSTER.routerRs4, CLUSTER.routerRs6);
  }
  // iperf3 on rs1 (behind VIP port 5201), one test at a time as iperf3 serves them.
  start('iperf3', nsName(o.prefix, 'rs1'), ['-s', '-p', String(LAB.iperfPort)], 'iperf3', true);
  if (o.cluster !== undefined) {
    await startCluster(state, o, o.cluster, start);
  } else if (o.ha) {
    await startPair(state, o, start);
  } else {
    // No pair: lb-a holds the floating next hops itself.
    ipBatch(
      [
        `addr add ${LAB.float.up4}/24 dev eth0`,
        `addr add ${LAB.float.up6}/64 dev eth0 nodad`,
        `addr add ${LAB.float.rs4}/24 dev eth1`,
        `addr add ${LAB.float.rs6}/64 dev eth1 nodad`,
      ],
      nsName(o.prefix, 'lb-a'),
    );
    await startTunvs(state, o, 'lb-a', state.adminSocket, start);
  }
  const tunvs = state.procs.find((p) => p.name === 'tunvs-lb-a')!;
  for (const rs of LAB.realServers) {
    const logFile = join(state.dir, `${rs.name}.log`);
    await waitFor(
      `${rs.name} to listen`,
      () => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('listening'),
      10_000,
      logFile,
    );
  }
  o.log(`tunvs running on lb-a (pid ${tunvs.pid}); real servers rs1..rs3 on :${LAB.rsPort}`);
}

/** The command that starts a real-server app inside the lab's reader cgroup (tunvs rs exec). */
function readerWrapper(state: LabState): string[] {
  return state.cgroup
    ? [process.execPath, join(DIST, 'cli', 'main.js'), 'rs', 'exec', '--cgroup', state.cgroup, '--']
    : [];
}

/** Remove the lab's cgroup: detach the reader; processes still in it are ones the lab
 * started (e.g. children of a server it stopped) and are stopped by PID first. */
async function removeCgroup(cgroup: string, log: (line: string) => void): Promise<void> {
  let dir: string;
  try {
    dir = resolveCgroup(cgroup);
  } catch {
    return;
  }
  if (!existsSync(dir)) return;
  const procs = readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  for (const pid of procs) {
    await stopPid(pid);
    log(`stopped pid ${pid} (left in the lab's cgroup)`);
  }
  try {
    const n = detachReader(cgroup);
    if (n > 0) log(`TOA reader detached from ${dir}`);
  } catch (e) {
    log(`detaching the TOA reader from ${dir}: ${(e as Error).message}`);
  }
  try {
    rmdirSync(dir);
    const parent = dirname(dir);
    if (readdirSync(parent).every((f) => !statSync(join(parent, f)).isDirectory())) rmdirSync(parent);
  } catch (e) {
    log(`removing cgroup ${dir}: ${(e as Error).message}`);
  }
}

export async function labDown(prefix: string, log: (line: string) => void): Promise<void> {
  const state = readState(prefix);
  for (const p of [...(state?.procs ?? [])].reverse()) {
    // Only a process that is still the one we started (same start time) is stopped.
    if (isAlive(p.pid) && procStart(p.pid) === p.start) {
      await stopPid(p.pid);
      log(`stopped ${p.name} (pid ${p.pid})`);
    }
  }
  if (state?.cgroup) await removeCgroup(state.cgroup, log);
  const namespaces = new Set([...(state?.namespaces ?? []), ...listNamespaces().filter((n) => n.startsWith(prefix))]);
  for (const ns of namespaces) {
    try {
      ipBatch([`netns del ${ns}`]);
    } catch {
      // already gone
    }
  }
  if (namespaces.size > 0) log(`removed namespaces: ${[...namespaces].join(' ')}`);
  rmSync(stateDir(prefix), { recursive: true, force: true });
}

export async function labStatus(prefix: string): Promise<string> {
  const state = readState(prefix);
  if (!state) return `no lab with prefix ${prefix} (start one with: tunvs lab up)`;
  const lines = [`lab ${prefix}: namespaces ${state.namespaces.join(' ')}`];
  const width = Math.max(...state.procs.map((p) => p.name.length));
  for (const p of state.procs)
    lines.push(`  ${p.name.padEnd(width)}  pid ${p.pid} ${isAlive(p.pid) ? 'running' : 'NOT RUNNING'}`);
  if (state.cgroup) {
    try {
      const dir = resolveCgroup(state.cgroup);
      lines.push('', formatStatus(readerStatus().filter((r) => r.cgroup === dir)));
    } catch (e) {
      lines.push(`TOA reader: ${(e as Error).message}`);
    }
  }
  lines.push(...(await nodeLines(state)));
  try {
    const reply = await adminRequest(state.adminSocket, { cmd: 'list' });
    lines.push('', `tunvs list (lb-a):`, String(reply.text));
  } catch (e) {
    lines.push(`tunvs: ${(e as Error).message}`);
  }
  return lines.join('\n');
}

/** The pair's or the cluster's LB nodes, a line each, from their own admin sockets (`tunvs
 * stats`): role, forwarding, ready, Redis, sync lag, sessions (its own and its peers' copies). */
async function nodeLines(state: LabState): Promise<string[]> {
  const sockets =
    state.admins ?? (state.adminSocketB ? { 'lb-a': state.adminSocket, 'lb-b': state.adminSocketB } : undefined);
  if (!sockets) return [];
  const lines = ['', 'LB nodes (more: tunvs ha status --admin SOCKET):'];
  for (const [node, socket] of Object.entries(sockets)) {
    try {
      const r = (await adminRequest(socket, { cmd: 'stats' })) as {
        tables: { sessions: number }[];
        ha?: HaStatus;
      };
      const sessions = r.tables.reduce((n, t) => n + t.sessions, 0);
      const h = r.ha;
      const ha = h
        ? `${h.role}, ${h.forwarding ? 'forwarding' : 'not forwarding'}, ${h.ready ? 'ready' : 'not ready'}, redis ${h.redis}, sync lag ${h.syncLagMs === null ? '-' : `${h.syncLagMs} ms`}`
        : 'no ha';
      lines.push(`  ${node}  ${ha}, sessions ${sessions}  (${socket})`);
    } catch (e) {
      lines.push(`  ${node}  tunvs: ${(e as Error).message}  (${socket})`);
    }
  }
  return lines;
}

/** GET the VIP from the client namespace `count` times (the service of forwarding mode
 * `mode`: lab/modes.ts); returns the bodies. */
export function labCurl(prefix: string, family: 4 | 6, count = 1, mode: LabMode = 'fullnat'): string {
  const port = MODE_PORTS[mode];
  const vip = modeVip(mode, family);
  const url = family === 4 ? `http://${vip}:${port}/` : `http://[${vip}]:${port}/`;
  return inNs(
    nsName(prefix, 'client'),
    [process.execPath, join(DIST, 'lab', 'http_get.js'), url, String(count)],
    60_000,
  );
}

export { LAB, nsName, readState, stateDir, type LabState, type Proc };

export interface ToaObservation {
  /** What the real-server application saw (accept/getpeername). */
  appSaw: string;
  /** The TOA the real server received in the handshake ACK, decoded by tshark. */
  toa: TcpSeen['toa'];
  server: string;
}

/**
 * Make `count` requests through the VIP while tshark captures on every real server; pair
 * each answer ("rsN saw client LIP:lport") with the TOA that the same connection carried.
 * Also returns every packet that arrived at a real server, with tshark's checksum verdicts.
 */
export async function labToa(
  prefix: string,
  family: 4 | 6,
  count: number,
): Promise<{ observed: ToaObservation[]; arrived: TcpSeen[] }> {
  const state = readState(prefix);
  if (!state) throw new Error(`no lab with prefix ${prefix}: run tunvs lab up first`);
  const caps = [];
  for (const rs of LAB.realServers) {
    caps.push(
      await startCapture(
        nsName(prefix, rs.name),
        'eth0',
        join(state.dir, `${rs.name}-${Date.now()}.pcap`),
        `tcp port ${LAB.rsPort}`,
      ),
    );
  }
  let answers: string;
  try {
    answers = labCurl(prefix, family, count);
    // dumpcap gets packets in blocks retired on a timer: let the last ones land.
    await new Promise((r) => setTimeout(r, 1200));
  } finally {
    for (const c of caps) await stopCapture(c);
  }
  const rsAddrs = new Set<string>(LAB.realServers.flatMap((r) => [r.v4, r.v6]));
  const arrived = caps
    .flatMap((c) => readCapture(c.file))
    .filter((p) => rsAddrs.has(p.dst) || [...rsAddrs].some((a) => sameAddr(a, p.dst)));
  const observed = answers
    .trim()
    .split('\n')
    .map((line) => {
      const m = /^(\S+) saw client (.+):(\d+)$/.exec(line.trim());
      const server = m?.[1] ?? '?';
      const addr = m?.[2] ?? '';
      const port = Number(m?.[3] ?? 0);
      // With the reader the app names the client (= the TOA); without, the LB's local
      // address and port (= the packet's source).
      const pkt =
        arrived.find((p) => p.toa && p.toa.port === port && sameAddr(p.toa.address, addr)) ??
        arrived.find((p) => p.toa && p.sport === port && sameAddr(p.src, addr));
      return { appSaw: `${addr}:${port}`, toa: pkt?.toa, server };
    });
  return { observed, arrived };
}

/** Compare two address texts (IPv6 in any spelling). */
function sameAddr(a: string, b: string): boolean {
  if (a === b) return true;
  if (!a.includes(':') || !b.includes(':')) return false;
  const expand = (t: string): string => {
    const [h, tail] = t.split('::');
    const hs = h ? h.split(':') : [];
    const ts = tail !== undefined && tail ? tail.split(':') : [];
    const all = tail === undefined ? hs : [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
    return all.map((g) => parseInt(g, 16).toString(16)).join(':');
  };
  return expand(a) === expand(b);
}

export interface EchoResult {
  connections: number;
  ok: number;
  corrupted: number;
  failed: number;
  bytesEachWay: number;
  seconds: number;
  /** Extra seconds the last few open connections were given past the timeout (0: none). */
  stragglerSec?: number;
  errors: string[];
}

/** From the client: `connections` concurrent TCP connections to the echo VIP, each sending
 * `bytes` and checking the SHA-256 of what comes back (lab/echo_check.ts). */
export function labEcho(prefix: string, connections: number, bytes: number, timeoutSec = 120): EchoResult {
  let out: string;
  try {
    out = inNs(
      nsName(prefix, 'client'),
      [
        process.execPath,
        join(DIST, 'lab', 'echo_check.js'),
        LAB.vip4,
        String(LAB.echoPort),
        String(connections),
        String(bytes),
        String(timeoutSec),
      ],
      (timeoutSec + LAB.echoStragglerSec + 10) * 1000,
    );
  } catch (e) {
    // Its own deadline passed: it still printed what it had (exit status 1).
    const printed = (e as { stdout?: string }).stdout ?? '';
    if (!printed.trim().startsWith('{')) throw e;
    out = printed;
  }
  return JSON.parse(out) as EchoResult;
}

/** autocannon from the client namespace through a VIP: bounded by duration, output inherited
 * (its progress display and result table). Returns autocannon's exit status. */
export function labLoad(prefix: string, family: 4 | 6, connections: number, seconds: number, port = LAB.vport): number {
  const url = family === 4 ? `http://${LAB.vip4}:${port}/` : `http://[${LAB.vip6}]:${port}/`;
  const cannon = join(packageRoot(), 'node_modules', 'autocannon', 'autocannon.js');
  const r = spawnSync(
    'ip',
    [
      'netns',
      'exec',
      nsName(prefix, 'client'),
      process.execPath,
      cannon,
      '-c',
      String(connections),
      '-d',
      String(seconds),
      url,
    ],
    { stdio: 'inherit', timeout: (seconds + 30) * 1000 },
  );
  return r.status ?? 1;
}

/** Start a process in a lab namespace and record it, so that `lab down` stops it (by PID).
 * With `underReader`, it starts inside the lab's TOA-reader cgroup (as the lab's own real
 * servers do); otherwise outside it. */
export function labSpawn(prefix: string, name: string, node: string, args: string[], underReader = false): number {
  const state = readState(prefix);
  if (!state) throw new Error(`no lab with prefix ${prefix}`);
  if (underReader && !state.cgroup) throw new Error(`lab ${prefix} runs without the TOA reader`);
  const wrapper = underReader ? readerWrapper(state) : [];
  const pid = spawnInNs(nsName(prefix, node), args, join(state.dir, `${name}.log`), process.env, wrapper);
  recordProc(state, name, pid);
  return pid;
}

/** iperf3 from the client through the IPv4 VIP for `seconds` (bounded); returns Gbit/s. */
export function labIperf(prefix: string, seconds: number, reverse = false): { gbps: number; retransmits: number } {
  const out = inNs(
    nsName(prefix, 'client'),
    ['iperf3', '-c', LAB.vip4, '-p', String(LAB.iperfPort), '-t', String(seconds), '-J', ...(reverse ? ['-R'] : [])],
    (seconds + 30) * 1000,
  );
  const j = JSON.parse(out) as {
    end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
  };
  return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? 0 };
}
