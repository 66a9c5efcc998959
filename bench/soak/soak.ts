/**
 * Soak (`npm run soak`, root): the lab's HA pair (or its cluster: SOAK_CLUSTER=3) under a
 * steady mixed load for a long time, then left to drain. What a long run shows and the tests
 * do not: that nothing accumulates.
 *
 *   memory    each node's resident set (the whole process: forwarder threads, main thread,
 *             tables) and its slope over the second half of the load; what is live after a
 *             full collection of every thread (`tunvs stats --gc`) at the end of the warm-up
 *             (with failovers: after the first failback) and after the drain, heaps and
 *             RSS: a leak stays, garbage does not (a heap read without the collection counts
 *             garbage V8 may leave for minutes); Redis's memory
 *   sessions  every node's sessions and persistence templates, and every node's hash in
 *             Redis, back to zero once the clients have closed (a leaked session, copy,
 *             template or record would stay)
 *   loss      every request answered, every echo byte intact (SHA-256), every datagram
 *             answered, no queue error, none of the drops that mean a resource ran out
 *             (table_full, lport_exhausted, ...); every other drop that grew is printed
 *   roles     (the pair) no failover: keepalived's roles held on both nodes (a failover
 *             under a load far below the limit is a finding, and explains any loss); or,
 *             with SOAK_FAILOVERS, exactly the failovers and failbacks it made (the cluster:
 *             exactly the node deaths and returns it made)
 *
 * SOAK_FAILOVERS=N (the pair): N times, evenly spaced in the load, the master's keepalived
 * is stopped (an orderly stop: priority-0 adverts, lb-b takes the next hops at once), lb-b
 * serves SOAK_FAILOVER_HOLD_SECONDS, then keepalived starts again on lb-a, which takes them
 * back once its check passes: a failover and a failback, both tunvs processes running on, as
 * in a maintenance; each comes at least syncAfterMs + 3 s after a chunk of load has its
 * keep-alive connections up (their clients' first answers, not the chunk's start: the clients
 * take seconds to start on a loaded 2-core machine), with room for
 * its failback before the chunk ends (a chunk opens new keep-alive connections). Nothing may
 * accumulate across them (the tables, Redis and memory verdicts are unchanged); the
 * keep-alive requests (old connections: synced) must all be answered. Each switch is planned
 * (keepalived stopped or preempting, both tunvs running), so the node standing down publishes
 * its connections younger than syncAfterMs too (docs/ha.md, "A planned switch"); a handshake
 * in flight at the switch may still fail, so the one-request connections, the echoes and the
 * datagrams may lose what was in flight there: at most what such a load makes in
 * syncAfterMs, per switch. A session such a loss leaves on the node that made it (its own,
 * of no use on a standby) stays until it idles out: timeouts.established (90 s), within the
 * drain.
 *
 * SOAK_FAILOVERS=N with SOAK_CLUSTER: N times, at the same moments, tunvs on lb-b is killed
 * (kill -9: a node dies), its peers carry its flows (the router drops it from ECMP by BFD, its
 * local addresses are routed to its backup, its sessions adopted once its alive key expires);
 * after SOAK_FAILOVER_HOLD_SECONDS it starts again from its config file, loads the sessions and
 * announces, and the flows ECMP hashes back to it go on there. The same bounds: nothing may
 * accumulate across deaths and returns (the other nodes adopt and hand back each time); the
 * keep-alive requests must all be answered. lb-b's own memory verdicts count from its last
 * return, its counters are summed over its processes.
 *
 * The load, from the client namespace, paced well below the machine's limit (a soak is
 * about time, not peak), in bounded chunks of at most SOAK_CHUNK_SECONDS:
 *   keep-alive HTTP   autocannon -c 20 at SOAK_HTTP_RATE req/s to the v4 VIP, -c 5 at a
 *                     quarter of it to the v6 VIP
 *   new connections   one request each, SOAK_CONN_RATE per second (sessions made and ended),
 *                     a quarter of that to a persistent service this run adds (templates of
 *                     10 s, made, refreshed, synced and expired), an eighth to a service with
 *                     the SYN proxy on, an ACL and a rate cap (each connection a cookie, a held
 *                     request, a SYN to the server, two sequence spaces synced) and to each
 *                     other forwarding mode's lab service (NAT, TUNNEL, DR; the cluster: no NAT)
 *   UDP               SOAK_UDP_RATE datagrams per second from 50 flows to a UDP service this
 *                     run adds (idle timeout 10 s), each answered by the servers; every tenth
 *                     is 3,000 bytes, fragmented both ways (the LB reassembles it)
 *   echoes            once per chunk, 20 connections each sending 256 KiB, checked
 *
 * Samples every SOAK_SAMPLE_SECONDS: each node's RSS, heaps, CPU, sessions, templates, sync
 * lag; Redis's used memory and hash lengths; the machine's steal time and pressure stalls
 * (PSI) and how late this process's own timers ran (a whole-machine stall: what a role that
 * moved unplanned is weighed against, with keepalived's own lines, printed then). Prints a
 * table and the verdicts, writes JSON to bench/results/ and exits 1 when a verdict fails.
 * All traffic stays inside the lab namespaces it creates; every load run is bounded in time
 * and stops by itself; everything started is stopped by PID (the lab's own record).
 *
 * SOAK_SECONDS (600), SOAK_SAMPLE_SECONDS (10), SOAK_CHUNK_SECONDS (60), SOAK_HTTP_RATE (2000),
 * SOAK_CONN_RATE (200), SOAK_UDP_RATE (200), SOAK_DRAIN_SECONDS (120: the longest wait for
 * the tables to empty), SOAK_HEAP_GROWTH_MIB (4) and SOAK_RSS_GROWTH_MIB (32): the most a
 * node's live heaps and its RSS after the collection may grow from the warm-up to the end of
 * the drain, SOAK_CLUSTER (0: the pair; 2..4: the cluster's nodes), SOAK_FAILOVERS (0) and
 * SOAK_FAILOVER_HOLD_SECONDS (10): see above, SOAK_PREFIX (ts-: the lab's namespace prefix).
 */

import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { HA_DEFAULTS } from '../../src/config/config.js';
import { LOOP_STALL_MS } from '../../src/constants.js';
import { adminRequest } from '../../src/control/admin.js';
import { labDown, labUp, nsName, readState, type LabState } from '../../src/lab/lab.js';
import { inNs, stopPid } from '../../src/lab/netns.js';
import { MODE_PORTS, modeVip } from '../../src/lab/modes.js';
import { vipNextHops } from '../../src/lab/cluster.js';
import { adminOf, labPid, recordingStarter, restartTunvs, startKeepalived, waitRole } from '../../src/lab/pair.js';
import { waitFor } from '../../src/lab/state.js';
import { CLUSTER, clusterNode, LAB } from '../../src/lab/topology.js';
import { distSrc, packageRoot } from '../../src/paths.js';
import { machineStalls, processCpu, type MachineStalls } from '../lib/cpu.js';
import { spread } from '../lib/spread.js';
import { writeResults } from '../lib/results.js';

const num = (name: string, fallback: number): number => {
  const v = Number(process.env[name] ?? fallback);
  if (!Number.isFinite(v) || v < 0) throw new Error(`${name}: not a number of 0 or more: ${process.env[name]}`);
  return v;
};
const SECONDS = num('SOAK_SECONDS', 600);
const SAMPLE_SECONDS = Math.max(1, num('SOAK_SAMPLE_SECONDS', 10));
const CHUNK_SECONDS = Math.max(5, num('SOAK_CHUNK_SECONDS', 60));
const HTTP_RATE = num('SOAK_HTTP_RATE', 2000);
const CONN_RATE = num('SOAK_CONN_RATE', 200);
const UDP_RATE = num('SOAK_UDP_RATE', 200);
const DRAIN_SECONDS = num('SOAK_DRAIN_SECONDS', 120);
const RSS_GROWTH_MIB = num('SOAK_RSS_GROWTH_MIB', 32);
const HEAP_GROWTH_MIB = num('SOAK_HEAP_GROWTH_MIB', 4);
const CLUSTER_NODES = num('SOAK_CLUSTER', 0);
const FAILOVERS = num('SOAK_FAILOVERS', 0);
const FAILOVER_HOLD_SECONDS = num('SOAK_FAILOVER_HOLD_SECONDS', 10);
const PREFIX = process.env.SOAK_PREFIX ?? 'ts-';
if (CLUSTER_NODES !== 0 && !(CLUSTER_NODES >= 2 && CLUSTER_NODES <= CLUSTER.nodes.length))
  throw new Error(`SOAK_CLUSTER: 0 (the pair) or 2..${CLUSTER.nodes.length}, got ${CLUSTER_NODES}`);
/** When each failover starts (seconds into the load): evenly spaced, each with room for its
 * hold and its failback before the next, and before the load ends. */
const FAILOVER_PLAN = Array.from({ length: FAILOVERS }, (_, i) => Math.round((SECONDS * (i + 1)) / (FAILOVERS + 1)));
if (FAILOVERS > 0 && SECONDS / (FAILOVERS + 1) < FAILOVER_HOLD_SECONDS + 20)
  throw new Error(
    `SOAK_FAILOVERS=${FAILOVERS}: ${SECONDS} s of load leave less than SOAK_FAILOVER_HOLD_SECONDS + 20 s (${FAILOVER_HOLD_SECONDS + 20}) around each; make SOAK_SECONDS at least ${(FAILOVER_HOLD_SECONDS + 20) * (FAILOVERS + 1)}`,
  );
/** The lab pair's syncAfterMs (the config's default): younger connections are not on the peer. */
const SYNC_AFTER_SEC = HA_DEFAULTS.syncAfterMs / 1000;
/** A node killed with -9 takes along what it counted after its counters were last read, just
 * before the kill: SYN-proxy acceptances of that window (from the read's request to the kill,
 * measured: Failover.unreadMs; tens of ms, hundreds on a loaded machine) are missing from the
 * sum. Allowed: the window's worth at their rate, plus this much more (a client whose timers
 * ran late sends what it owes at once). */
const UNCOUNTED_SLACK_SEC = 0.2;
/** A failover comes at least this long after a chunk's keep-alive connections are up (its
 * clients' first answers: chunkConnected), as they must be on the other node (older than
 * syncAfterMs, published) when the next hops move; and only with this much of the chunk left, so that its
 * failback comes before they close and the next chunk opens new ones: the hold, keepalived's
 * stop (~1 s), lb-a's first check pass (~3.5 s) and some slack; a cluster node's return: tunvs
 * starting, loading the sessions and announcing (3–3.5 s in the lab) and some slack. */
const SWITCH_SETTLE_SEC = SYNC_AFTER_SEC + 3;
const FAILOVER_ROOM_SEC = FAILOVER_HOLD_SECONDS + (CLUSTER_NODES > 0 ? 10 : 8);
/** The cluster node that dies and returns (SOAK_FAILOVERS with SOAK_CLUSTER), as in
 * `tunvs lab cluster`; the others run throughout and carry its flows each time. */
const VICTIM = 'lb-b';
if (FAILOVERS > 0 && CHUNK_SECONDS < SWITCH_SETTLE_SEC + FAILOVER_ROOM_SEC)
  throw new Error(
    `SOAK_FAILOVERS: a chunk of load (SOAK_CHUNK_SECONDS, ${CHUNK_SECONDS}) must hold a failover and its failback after its keep-alive connections are synced: at least ${SWITCH_SETTLE_SEC + FAILOVER_ROOM_SEC} s with SOAK_FAILOVER_HOLD_SECONDS=${FAILOVER_HOLD_SECONDS}`,
  );
/** The shortest soak whose second half gives an RSS slope (MiB/h). */
const SLOPE_MIN_SECONDS = 600;
/** The warm-up: V8's heaps and the tables' touched pages settle before RSS is compared. */
const WARMUP_SECONDS = Math.min(60, SECONDS / 4);
/** Where the live-memory verdicts start. With failovers, after the first failback: at a
 * standby's first mastership its forwarders' live heaps step up once by 3–4 MiB and then stay
 * flat across further switches (a 10-minute run, five failovers: most likely the packet path a
 * standby never ran, compiled); what accumulates across switches shows from there on. The
 * cluster's: after the first return (the node that died and returned: its last return). */
const BASE_AT = FAILOVERS === 0 ? 'the warm-up' : CLUSTER_NODES > 0 ? 'the first return' : 'the first failback';
const UDP_PORT = LAB.echoPort;
/** The soak's persistent service and its SYN-proxy service (to the servers' HTTP port). */
const PERSISTENT_PORT = 8090;
const SYNPROXY_PORT = 8091;
/** The new-connection loads (one request each): FULLNAT, its persistent service, and each
 * other forwarding mode's lab service (lab/modes.ts; the cluster's lab has no NAT). */
const CONNECTIONS: { kind: string; vip: string; port: number; parallel: number; rate: number }[] = [
  { kind: 'fullnat', vip: LAB.vip4, port: LAB.vport, parallel: 8, rate: CONN_RATE },
  { kind: 'persistent', vip: LAB.vip4, port: PERSISTENT_PORT, parallel: 2, rate: CONN_RATE / 4 },
  { kind: 'synproxy', vip: LAB.vip4, port: SYNPROXY_PORT, parallel: 1, rate: CONN_RATE / 8 },
  ...(['nat', 'tunnel', 'dr'] as const)
    .filter((m) => m !== 'nat' || CLUSTER_NODES === 0)
    .map((m) => ({ kind: m, vip: modeVip(m, 4), port: MODE_PORTS[m], parallel: 1, rate: CONN_RATE / 8 })),
];
/** Drops that mean a resource ran out: never expected under this load. */
const EXHAUSTION = [
  'table_full',
  'lport_exhausted',
  'redirect_full',
  'synproxy_hold_full',
  'no_real_server',
  'fragment_table_full',
  'fragment_no_room',
];

const NODES: string[] = CLUSTER_NODES > 0 ? CLUSTER.nodes.slice(0, CLUSTER_NODES) : ['lb-a', 'lb-b'];
const ns = (node: string): string => nsName(PREFIX, node);
const CLIENT = join(packageRoot(), 'dist', 'bench', 'lab', 'client.js');

/** A process in a lab namespace, bounded by `timeoutSec`; its stdout. */
function runIn(node: string, args: string[], timeoutSec: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      ['netns', 'exec', ns(node), ...args],
      { timeout: timeoutSec * 1000, maxBuffer: 1 << 22, killSignal: 'SIGKILL' },
      // A load that hit its bound still printed its JSON line (exit status 1): keep it.
      (e, stdout) => (e !== null && !stdout.trim().startsWith('{') ? reject(new Error(e.message)) : resolve(stdout)),
    );
  });
}

interface NodeSample {
  /** The node's tunvs (a cluster node that died and returned runs under another). */
  pid: number;
  rssMiB: number;
  /** The V8 heaps (tunvs stats's memory): the main thread's, and the forwarders' summed. */
  mainHeapMiB: number;
  forwarderHeapMiB: number;
  cpuSec: number;
  sessions: number;
  templates: number;
  syncLagMs: number | null;
}
interface Sample {
  t: number;
  phase: 'load' | 'drain';
  nodes: Record<string, NodeSample | null>;
  redisMiB: number;
  redisRecords: number;
  /** The machine since the sample before: what kept its threads waiting (a role that moved
   * with no failover made is weighed against these), and how late this process's own timers
   * ran at most (a whole-machine stall shows here: this process is idle between samples). */
  machine: MachineStalls & { lateMs: number };
}

/** This process's timer lateness since the last `machineSince` (ms resolution). */
const lateness = monitorEventLoopDelay({ resolution: 10 });
lateness.enable();
let stallsBefore = machineStalls();

/** The machine's stalls since the sample before (see Sample.machine). */
function machineSince(): Sample['machine'] {
  const now = machineStalls();
  const d = {
    stealSec: now.stealSec - stallsBefore.stealSec,
    cpuSomeSec: now.cpuSomeSec - stallsBefore.cpuSomeSec,
    ioFullSec: now.ioFullSec - stallsBefore.ioFullSec,
    lateMs: Math.round(lateness.max / 1e6),
  };
  stallsBefore = now;
  lateness.reset();
  return d;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface NodeStats {
  rssMiB: number;
  sessions: number;
  mainHeapMiB: number;
  forwarderHeapMiB: number;
  drops: Record<string, number>;
  /** Datagrams made whole from their fragments, and connections the SYN proxy accepted by
   * their cookie (since the start). */
  reassembled: number;
  synProxied: number;
  queueErrors: number;
  syncLagMs: number | null;
  /** A pair node's role changes since its start (keepalived's: a failover and back is two). */
  roleChanges: number;
  /** A cluster node's adoptions of a dead peer's sessions (since its start). */
  adopted: number;
  /** Its main thread's stalls since its start (tunvs stats mainThread: held ≥ LOOP_STALL_MS). */
  stalls: number;
  stallLongestMs: number;
}

async function nodeStats(state: LabState, node: string, gc = false): Promise<NodeStats> {
  const r = (await adminRequest(adminOf(state, node), { cmd: 'stats', gc }, 3000)) as {
    tables: { sessions: number }[];
    drops: Record<string, number>;
    counters: Record<string, number>;
    queues: ({ readErrors: number; writeErrors: number; writeDropped: number } | null)[];
    ha?: { syncLagMs: number | null; roleChanges?: number };
    memory: { rssBytes: number; mainHeapBytes: number; forwarderHeapBytes: (number | null)[] };
    mainThread?: { stalls: number; longestMs: number };
  };
  return {
    rssMiB: r.memory.rssBytes / 2 ** 20,
    sessions: r.tables.reduce((a, t) => a + t.sessions, 0),
    mainHeapMiB: r.memory.mainHeapBytes / 2 ** 20,
    forwarderHeapMiB: r.memory.forwarderHeapBytes.reduce<number>((a, b) => a + (b ?? NaN), 0) / 2 ** 20,
    drops: r.drops,
    reassembled: r.counters.fragments_reassembled ?? 0,
    synProxied: r.counters.synproxy_accepted ?? 0,
    queueErrors: r.queues.reduce((a, q) => a + (q ? q.readErrors + q.writeErrors + q.writeDropped : 0), 0),
    syncLagMs: r.ha?.syncLagMs ?? null,
    roleChanges: r.ha?.roleChanges ?? 0,
    adopted: r.counters.sync_adopted ?? 0,
    stalls: r.mainThread?.stalls ?? 0,
    stallLongestMs: r.mainThread?.longestMs ?? 0,
  };
}

/** Redis's used memory and the records in every node's session hash. */
function redisFigures(): { mib: number; records: number } {
  const cli = (args: string[]): string => inNs(ns('redis'), ['redis-cli', '-h', LAB.redis4, ...args]);
  const used = /^used_memory:(\d+)/m.exec(cli(['INFO', 'memory']));
  const keys = cli(['--scan', '--pattern', 'tunvs:*:sessions']).split('\n').filter(Boolean);
  const records = keys.reduce((a, k) => a + Number(cli(['HLEN', k]).trim()), 0);
  return { mib: used ? Number(used[1]) / 2 ** 20 : NaN, records };
}

/** What is live on each node: its heaps and RSS right after a full collection of every
 * thread (`tunvs stats --gc`). */
type Live = Record<string, { rssMiB: number; heapMiB: number }>;

async function liveMemory(state: LabState, nodes = NODES): Promise<Live> {
  const out: Live = {};
  for (const node of nodes) {
    const st = await nodeStats(state, node, true);
    out[node] = { rssMiB: st.rssMiB, heapMiB: st.mainHeapMiB + st.forwarderHeapMiB };
  }
  return out;
}

async function sample(t0: number, phase: Sample['phase']): Promise<Sample> {
  const state = readState(PREFIX)!; // a node that returned was recorded there since
  const nodes: Record<string, NodeSample | null> = {};
  for (const node of NODES) {
    const pid = labPid(state, `tunvs-${node}`);
    if (pid === undefined) {
      nodes[node] = null;
      continue;
    }
    const st = await nodeStats(state, node).catch(() => null);
    const c = processCpu(pid);
    nodes[node] = {
      pid,
      rssMiB: rssMiB(pid),
      mainHeapMiB: st?.mainHeapMiB ?? NaN,
      forwarderHeapMiB: st?.forwarderHeapMiB ?? NaN,
      cpuSec: c.user + c.system,
      sessions: st?.sessions ?? NaN,
      templates: await templates(state, node).catch(() => NaN),
      syncLagMs: st?.syncLagMs ?? null,
    };
  }
  const r = redisFigures();
  return {
    t: (Date.now() - t0) / 1000,
    phase,
    nodes,
    redisMiB: r.mib,
    redisRecords: r.records,
    machine: machineSince(),
  };
}

/** The soak's own services on every node (the same on each, with the node's own local
 * addresses): UDP (idle timeout 10 s), a persistent TCP service (templates of 10 s) and one
 * with the SYN proxy on, an ACL and a rate cap. Written into each node's config file and
 * reloaded, so that a cluster node that dies and starts again has them too. */
async function addServices(state: LabState): Promise<void> {
  for (const node of NODES) {
    const laddrs = (CLUSTER_NODES > 0 ? clusterNode(node).laddrs4 : LAB.laddrs4).join(', ');
    const servers = (port: number): string =>
      LAB.realServers.map((r) => `{ address: "${r.v4}", port: ${port} }`).join(', ');
    const service = (name: string, port: number, rsPort: number, options: string): string =>
      `  - { name: ${name}, vip: ${LAB.vip4}, port: ${port}, ${options}, localAddresses: [${laddrs}], realServers: [${servers(rsPort)}] }\n`;
    appendFileSync(
      join(state.dir, `${node}.yaml`),
      "  # the soak's own (bench/soak/soak.ts)\n" +
        service('soak-udp', UDP_PORT, UDP_PORT, 'protocol: udp, idleTimeout: 10') +
        service('soak-persistent', PERSISTENT_PORT, LAB.rsPort, 'persistence: { timeoutSec: 10 }') +
        // Its clients' prefix allowed, a rate cap far above the load: both checked on every SYN.
        service(
          'soak-synproxy',
          SYNPROXY_PORT,
          LAB.rsPort,
          'synProxy: on, acl: { allow: [198.18.0.0/15] }, maxNewPerSec: 100000',
        ),
    );
    await adminRequest(adminOf(state, node), { cmd: 'reload' }, 30_000);
  }
}

/** The persistence templates a node holds now (`tunvs conns`'s TEMPLATE rows). */
async function templates(state: LabState, node: string): Promise<number> {
  const r = (await adminRequest(
    adminOf(state, node),
    { cmd: 'conns', filter: { state: 'TEMPLATE' }, limit: 100_000 },
    3000,
  )) as { sessions: unknown[] };
  return r.sessions.length;
}

/** A node's sessions, at most 10, as `tunvs conns` shows them: protocol, state, owner (0:
 * the node's own), synced or not, expiry. */
async function leftoverSessions(state: LabState, node: string): Promise<string[]> {
  const r = (await adminRequest(adminOf(state, node), { cmd: 'conns', filter: {}, limit: 10 }, 3000).catch(() => ({
    sessions: [],
  }))) as {
    sessions: { protocol: string; state: string; owner: number; synced: boolean; expiresInMs: number; vport: number }[];
  };
  return r.sessions.map(
    (x) =>
      `${x.protocol}:${x.vport} ${x.state} ${x.owner === 0 ? 'own' : `of node ${x.owner}`}${x.synced ? ' synced' : ''} expires in ${Math.round(x.expiresInMs / 1000)} s`,
  );
}

interface LoadTotals {
  requests: number;
  httpErrors: number;
  /** The failed keep-alive requests by what failed them (bench/lab/client.ts `why`). */
  httpWhy: Record<string, number>;
  /** When the first of them failed (ms since the epoch). */
  httpErrorsAt: number[];
  connections: number;
  connErrors: number;
  /** By kind (CONNECTIONS). */
  connectionsBy: Record<string, number>;
  udpSent: number;
  udpLost: number;
  udpWrong: number;
  /** Datagrams the LBs made whole from fragments (counted from their start: the lab's own). */
  udpReassembled: number;
  /** Connections the LBs' SYN proxy accepted by cookie (from their start). */
  synProxied: number;
  echoes: number;
  echoCorrupted: number;
  echoFailed: number;
  chunkErrors: string[];
}

/** One chunk of every load at once, `seconds` long; adds its results to `tot`. */
async function loadChunk(seconds: number, tot: LoadTotals): Promise<void> {
  const json = async (p: Promise<string>, what: string): Promise<Record<string, number> | null> => {
    try {
      return JSON.parse(await p) as Record<string, number>;
    } catch (e) {
      tot.chunkErrors.push(`${what}: ${(e as Error).message.split('\n')[0]}`);
      return null;
    }
  };
  const bound = seconds + 60;
  const node = process.execPath;
  const jobs = [
    json(
      runIn(
        'client',
        [node, CLIENT, 'http', `http://${LAB.vip4}/`, '20', String(seconds), String(HTTP_RATE), READY_FILES[0]],
        bound,
      ),
      'http v4',
    ),
    json(
      runIn(
        'client',
        [
          node,
          CLIENT,
          'http',
          `http://[${LAB.vip6}]/`,
          '5',
          String(seconds),
          String(Math.ceil(HTTP_RATE / 4)),
          READY_FILES[1],
        ],
        bound,
      ),
      'http v6',
    ),
    ...CONNECTIONS.map((c) =>
      json(
        runIn(
          'client',
          [node, CLIENT, 'conns', c.vip, String(c.port), String(c.parallel), String(seconds), String(c.rate)],
          bound,
        ),
        `${c.kind} connections`,
      ),
    ),
    json(
      runIn(
        'client',
        [node, CLIENT, 'udp', LAB.vip4, String(UDP_PORT), '50', String(seconds), String(UDP_RATE), '10'],
        bound,
      ),
      'udp',
    ),
    json(
      runIn(
        'client',
        [node, join(distSrc(), 'lab', 'echo_check.js'), LAB.vip4, String(LAB.echoPort), '20', String(256 * 1024), '60'],
        60 + LAB.echoStragglerSec + 10,
      ),
      'echo',
    ),
  ];
  const done = await Promise.all(jobs);
  const [h4, h6] = done;
  const [udp, echo] = done.slice(2 + CONNECTIONS.length);
  for (const h of [h4, h6]) {
    if (!h) continue;
    tot.requests += h.total!;
    tot.httpErrors += h.errors!;
    const { why = {}, errorsAt = [] } = h as unknown as { why?: Record<string, number>; errorsAt?: number[] };
    for (const [k, n] of Object.entries(why)) tot.httpWhy[k] = (tot.httpWhy[k] ?? 0) + n;
    tot.httpErrorsAt.push(...errorsAt);
  }
  CONNECTIONS.forEach((c, i) => {
    const r = done[2 + i];
    if (!r) return;
    tot.connections += r.total!;
    tot.connErrors += r.errors!;
    tot.connectionsBy[c.kind] = (tot.connectionsBy[c.kind] ?? 0) + r.total!;
  });
  if (udp) {
    tot.udpSent += udp.sent!;
    tot.udpLost += udp.lost!;
    tot.udpWrong += udp.wrong!;
  }
  if (echo) {
    tot.echoes += echo.connections!;
    tot.echoCorrupted += echo.corrupted!;
    tot.echoFailed += echo.failed!;
  }
}

/** The chunk of load under way: when its keep-alive load ends (ms), and
 * when both keep-alive clients had their first answer (0: not yet): their connections are
 * up then. On a loaded 2-core machine the clients take seconds to start, so a failover timed
 * from the chunk's start could catch connections younger than syncAfterMs (not on the peer
 * yet, by design) and count their loss against tunvs: it is timed from this instead. */
const chunk = { end: 0, connected: 0 };

/** Created by the v4 and v6 keep-alive clients at their first answer (bench/lab/client.ts). */
const READY_FILES = [
  join('/tmp', `tunvs-soak-${process.pid}-http-v4.ready`),
  join('/tmp', `tunvs-soak-${process.pid}-http-v6.ready`),
] as const;

/** Since when the chunk's keep-alive connections are up (ms), or 0. */
function chunkConnected(): number {
  if (chunk.connected === 0 && READY_FILES.every((f) => existsSync(f))) chunk.connected = Date.now();
  return chunk.connected;
}

interface Failover {
  /** Seconds into the load. */
  at: number;
  /** The pair: from keepalived's stop on lb-a to tunvs on lb-b master; from its start again to
   * lb-a master and lb-b backup. The cluster: from the kill to the router's dropping the node
   * from the VIPs' next hops; from the restart to the node's being among them again (ms). */
  takeoverMs: number;
  failbackMs: number;
  /** The cluster: from the kill to a peer's adopting the node's sessions (its alive key
   * expired), or null when that did not come within the hold. */
  adoptedMs?: number | null;
  /** The cluster: from the request for the killed node's counters to the kill (ms). */
  unreadMs?: number;
}

/**
 * SOAK_FAILOVERS: at each planned time (seconds into the load), or once the chunk of load
 * under way fits it (SWITCH_SETTLE_SEC), `make` one: a failover and a failback of the pair, or
 * a cluster node's death and return (see the header); what each took, or the error that
 * stopped them (the rest are not made).
 */
async function failovers(
  t0: number,
  plan: number[],
  out: Failover[],
  errors: string[],
  make: () => Promise<Omit<Failover, 'at'>>,
): Promise<void> {
  for (const planned of plan) {
    await new Promise((r) => setTimeout(r, Math.max(0, t0 + planned * 1000 - Date.now())));
    // Into a chunk, with room for the failback before it ends (SWITCH_SETTLE_SEC).
    const fits = (): boolean =>
      chunkConnected() > 0 &&
      Date.now() - chunkConnected() >= SWITCH_SETTLE_SEC * 1000 &&
      chunk.end - Date.now() >= FAILOVER_ROOM_SEC * 1000;
    while (!fits() && Date.now() < t0 + SECONDS * 1000) await new Promise((r) => setTimeout(r, 200));
    const at = Math.round((Date.now() - t0) / 1000);
    try {
      if (!fits()) throw new Error('no chunk of the load left with room for it');
      console.log(`failover at ${at} s`);
      out.push({ at, ...(await make()) });
    } catch (e) {
      errors.push(`failover at ${at} s: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
  }
}

/** The pair: lb-a's keepalived stopped (lb-b takes over), started again after the hold (lb-a
 * takes back). */
async function pairFailover(state: LabState): Promise<Omit<Failover, 'at'>> {
  const pid = labPid(state, 'keepalived-lb-a');
  if (pid === undefined) throw new Error("lb-a's keepalived is not running");
  const t1 = Date.now();
  await stopPid(pid); // SIGTERM: keepalived's orderly stop (priority-0 adverts)
  await waitRole(state, 'lb-b', 'master', 15_000);
  const takeoverMs = Date.now() - t1;
  await new Promise((r) => setTimeout(r, FAILOVER_HOLD_SECONDS * 1000));
  const t2 = Date.now();
  startKeepalived(state, 'lb-a', recordingStarter(state)); // recorded: lab down stops it
  await waitRole(state, 'lb-a', 'master', 30_000);
  await waitRole(state, 'lb-b', 'backup', 10_000);
  const failbackMs = Date.now() - t2;
  console.log(`  lb-b master after ${takeoverMs} ms; lb-a back after ${failbackMs} ms`);
  return { takeoverMs, failbackMs };
}

/** The cluster: tunvs on VICTIM killed (its counters read first: `retire`), out of the
 * router's ECMP, its sessions adopted by a peer; after the hold started again from its config
 * file, back among the router's next hops for both VIPs (it announces once it has loaded the
 * sessions); then `returned`. */
async function nodeDeath(retire: () => Promise<void>, returned: () => void): Promise<Omit<Failover, 'at'>> {
  const state = readState(PREFIX)!;
  const pid = labPid(state, `tunvs-${VICTIM}`);
  if (pid === undefined) throw new Error(`tunvs on ${VICTIM} is not running`);
  const peers = NODES.filter((n) => n !== VICTIM);
  const adopted = async (): Promise<number> => {
    let sum = 0;
    for (const n of peers) sum += (await nodeStats(state, n)).adopted;
    return sum;
  };
  const adoptedBefore = await adopted();
  const read = Date.now();
  await retire();
  const up = clusterNode(VICTIM).up4;
  const t1 = Date.now();
  process.kill(pid, 'SIGKILL');
  const unreadMs = t1 - read;
  await waitFor(`the router to drop ${VICTIM}`, () => !vipNextHops(state, 4).includes(up), 15_000);
  const takeoverMs = Date.now() - t1;
  let adoptedMs: number | null = null;
  const holdEnd = t1 + FAILOVER_HOLD_SECONDS * 1000;
  while (Date.now() < holdEnd) {
    if (adoptedMs === null && (await adopted()) > adoptedBefore) adoptedMs = Date.now() - t1;
    await new Promise((r) => setTimeout(r, 200));
  }
  const t2 = Date.now();
  await restartTunvs(PREFIX, VICTIM); // recorded in the lab's state: lab down stops it
  await waitFor(
    `${VICTIM} back among the router's next hops`,
    () => vipNextHops(state, 4).includes(up) && vipNextHops(state, 6).length === NODES.length,
    30_000,
  );
  const failbackMs = Date.now() - t2;
  returned();
  console.log(
    `  ${VICTIM} killed: out of ECMP after ${takeoverMs} ms, its sessions adopted ${adoptedMs === null ? 'not within the hold' : `after ${adoptedMs} ms`}; back after ${failbackMs} ms`,
  );
  return { takeoverMs, failbackMs, adoptedMs, unreadMs };
}

/** The last `n` lines of a lab log (`file`, in the lab's directory) that `keep` takes; none
 * when the log is not there. */
function lastLines(state: LabState, file: string, keep: (line: string) => boolean, n: number): string[] {
  try {
    return readFileSync(join(state.dir, file), 'utf8').split('\n').filter(keep).slice(-n);
  } catch {
    return [];
  }
}

/** A node's tunvs's last warnings and errors: its main thread's stalls (loop_watch.ts), HA's
 * errors (a node id in conflict: not ready), beside keepalived's view of its check. */
function warnLines(state: LabState, node: string): string[] {
  return lastLines(state, `tunvs-${node}.log`, (l) => /"level":"(warn|error)"/.test(l), 12);
}

/** A node's tunvs's log lines about its main thread held: the stalls, and the route changes
 * (rtnetlink, on the main thread) long enough to be one. */
function stallLines(state: LabState, node: string): string[] {
  const held = (l: string): boolean => l.includes('the main thread was held') || l.includes('(on the main thread)');
  return lastLines(state, `tunvs-${node}.log`, held, 8);
}

/** What keepalived said on a pair node about its state (transitions, its check, adverts,
 * the tracked device): why a role changed. The whole log is the lab's and goes with it. */
function keepalivedEvents(state: LabState, node: string): string[] {
  const event = (l: string): boolean =>
    /Entering|Script|timeout|fault|received|priority|tunvs0/i.test(l) && !/Sending/.test(l);
  return lastLines(state, `keepalived-${node}.log`, event, 40);
}

/** Least-squares slope of y over x. */
function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  return sxx > 0 ? sxy / sxx : 0;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('soak needs root (network namespaces)');
  await labDown(PREFIX, () => undefined);
  const what = CLUSTER_NODES > 0 ? `the cluster of ${CLUSTER_NODES}` : 'the HA pair';
  console.log(`soak: ${what}, ${SECONDS} s of load (warm-up ${WARMUP_SECONDS} s), node ${process.version}`);
  const samples: Sample[] = [];
  const tot: LoadTotals = {
    requests: 0,
    httpErrors: 0,
    httpWhy: {},
    httpErrorsAt: [],
    connections: 0,
    connErrors: 0,
    connectionsBy: {},
    udpSent: 0,
    udpLost: 0,
    udpWrong: 0,
    udpReassembled: 0,
    synProxied: 0,
    echoes: 0,
    echoCorrupted: 0,
    echoFailed: 0,
    chunkErrors: [],
  };
  const dropsBefore: Record<string, Record<string, number>> = {};
  const dropsAfter: Record<string, Record<string, number>> = {};
  const rolesBefore: Record<string, number> = {};
  const rolesAfter: Record<string, number> = {};
  let queueErrors = 0;
  let drained: number | null = null;
  let liveBase: Live | undefined;
  let liveEnd: Live | undefined;
  const failoversDone: Failover[] = [];
  /** What a node still held when the drain gave up (what it is tells why it stayed). */
  const leftover: Record<string, string[]> = {};
  /** keepalived's state lines per pair node (printed when a role changed unplanned). */
  const roleEvents: Record<string, string[]> = {};
  const stalls: Record<string, { count: number; longestMs: number; warnings: string[]; lines: string[] }> = {};
  const failoverErrors: string[] = [];
  /** What the dying cluster node counted before each death (drops that grew, reassembled
   * datagrams, SYN-proxy accepts, queue errors): its next process counts from zero. */
  const retired = { drops: {} as Record<string, number>, reassembled: 0, synProxied: 0, queueErrors: 0 };
  /** When the cluster node that died last returned (ms; 0: its live base is measured): its live
   * base is taken a warm-up after, as everyone's is after the load's start. */
  let returnedAt = 0;
  /** When the load began (failovers and errors are timed from it). */
  let loadStart = 0;
  try {
    await labUp({
      prefix: PREFIX,
      workers: 2,
      reader: false,
      modes: true,
      ...(CLUSTER_NODES > 0 ? { cluster: CLUSTER_NODES } : { ha: true }),
      log: (l) => console.log(l),
    });
    const state = readState(PREFIX)!;
    await addServices(state);
    for (const node of NODES) {
      const st = await nodeStats(state, node);
      dropsBefore[node] = st.drops;
      rolesBefore[node] = st.roleChanges;
    }
    machineSince(); // the machine's figures count from the load's start
    const t0 = Date.now();
    loadStart = t0;
    const print = (s: Sample): void => {
      const per = NODES.map((n) => {
        const x = s.nodes[n];
        return x
          ? `${n} ${x.rssMiB.toFixed(1)} MiB (heaps ${x.mainHeapMiB.toFixed(1)} + ${x.forwarderHeapMiB.toFixed(1)}) ${x.sessions} sessions ${x.templates} templates${x.syncLagMs !== null ? ` lag ${x.syncLagMs} ms` : ''}`
          : `${n} down`;
      }).join(', ');
      console.log(
        `${s.t.toFixed(0).padStart(5)} s ${s.phase}: ${per}; redis ${s.redisMiB.toFixed(2)} MiB ${s.redisRecords} records`,
      );
    };
    // Sample while the load runs in chunks; a chunk never outlasts the soak's end.
    let loading = true;
    /** The returned node's live base, a warm-up after its return (kept pending while it is
     * down again). */
    const victimBase = async (): Promise<void> => {
      if (!liveBase || returnedAt === 0) return;
      const v = await liveMemory(state, [VICTIM]).catch(() => undefined);
      if (!v) return;
      Object.assign(liveBase, v);
      returnedAt = 0;
    };
    const sampler = (async () => {
      while (loading) {
        const s = await sample(t0, 'load');
        samples.push(s);
        print(s);
        if (!liveBase && s.t >= WARMUP_SECONDS && failoversDone.length >= Math.min(1, FAILOVERS))
          liveBase = await liveMemory(state);
        if (Date.now() - returnedAt >= WARMUP_SECONDS * 1000) await victimBase();
        await new Promise((r) => setTimeout(r, SAMPLE_SECONDS * 1000));
      }
    })();
    const retire = async (): Promise<void> => {
      const st = await nodeStats(state, VICTIM);
      for (const [k, v] of Object.entries(st.drops))
        retired.drops[k] = (retired.drops[k] ?? 0) + v - (dropsBefore[VICTIM]?.[k] ?? 0);
      dropsBefore[VICTIM] = {};
      retired.reassembled += st.reassembled;
      retired.synProxied += st.synProxied;
      retired.queueErrors += st.queueErrors;
    };
    const planned = failovers(
      t0,
      FAILOVER_PLAN,
      failoversDone,
      failoverErrors,
      CLUSTER_NODES > 0 ? () => nodeDeath(retire, () => (returnedAt = Date.now())) : () => pairFailover(state),
    );
    while ((Date.now() - t0) / 1000 < SECONDS - 1) {
      const left = SECONDS - (Date.now() - t0) / 1000;
      const seconds = Math.max(1, Math.min(CHUNK_SECONDS, Math.floor(left)));
      for (const f of READY_FILES) rmSync(f, { force: true });
      chunk.connected = 0;
      chunk.end = Date.now() + seconds * 1000;
      await loadChunk(seconds, tot);
    }
    await planned;
    for (const f of READY_FILES) rmSync(f, { force: true });
    loading = false;
    await sampler;
    liveBase ??= await liveMemory(state); // no failback made (that verdict says why): the load's end
    await victimBase(); // returned less than a warm-up before the end: from the load's end
    // The drain: every client has closed; the tables and hashes must empty.
    const tEnd = Date.now();
    while ((Date.now() - tEnd) / 1000 < DRAIN_SECONDS) {
      await new Promise((r) => setTimeout(r, Math.min(SAMPLE_SECONDS, 5) * 1000));
      const s = await sample(t0, 'drain');
      samples.push(s);
      print(s);
      if (s.redisRecords === 0 && NODES.every((n) => s.nodes[n]?.sessions === 0 && s.nodes[n]?.templates === 0)) {
        drained = (Date.now() - tEnd) / 1000;
        break;
      }
    }
    if (drained === null) for (const node of NODES) leftover[node] = await leftoverSessions(state, node);
    for (const node of NODES) {
      const st = await nodeStats(state, node);
      dropsAfter[node] = st.drops;
      rolesAfter[node] = st.roleChanges;
      if (CLUSTER_NODES === 0) roleEvents[node] = keepalivedEvents(state, node);
      stalls[node] = {
        count: st.stalls,
        longestMs: st.stallLongestMs,
        warnings: warnLines(state, node),
        lines: stallLines(state, node),
      };
      tot.udpReassembled += st.reassembled;
      tot.synProxied += st.synProxied;
      queueErrors += st.queueErrors;
    }
    tot.udpReassembled += retired.reassembled;
    tot.synProxied += retired.synProxied;
    queueErrors += retired.queueErrors;
    liveEnd = await liveMemory(state);
  } finally {
    await labDown(PREFIX, () => undefined);
  }

  // Verdicts.
  const load = samples.filter((s) => s.phase === 'load');
  const base = load.find((s) => s.t >= WARMUP_SECONDS) ?? load[load.length - 1]!;
  const last = samples[samples.length - 1]!;
  const half = load.filter((s) => s.t >= SECONDS / 2);
  const memory = NODES.map((n) => {
    const b = base.nodes[n]?.rssMiB ?? NaN;
    const e = last.nodes[n]?.rssMiB ?? NaN;
    const peak = Math.max(...samples.map((s) => s.nodes[n]?.rssMiB ?? 0));
    // Over less than five minutes a slope is V8's sawtooth, not a trend: none. A node that died
    // and returned: only where one process ran through the second half.
    const pts = half.filter((s) => s.nodes[n]);
    const perHour =
      SECONDS >= SLOPE_MIN_SECONDS && new Set(pts.map((s) => s.nodes[n]!.pid)).size === 1
        ? slope(
            pts.map((s) => s.t / 3600),
            pts.map((s) => s.nodes[n]!.rssMiB),
          )
        : null;
    // Summed over the node's processes (one, unless it died and returned).
    const first = new Map<number, number>();
    const end = new Map<number, number>();
    for (const s of samples) {
      const x = s.nodes[n];
      if (!x) continue;
      if (!first.has(x.pid)) first.set(x.pid, x.cpuSec);
      end.set(x.pid, x.cpuSec);
    }
    const cpu = [...end].reduce((a, [pid, cpuEnd]) => a + cpuEnd - first.get(pid)!, 0);
    const lb = liveBase?.[n];
    const le = liveEnd?.[n];
    return {
      node: n,
      afterWarmupMiB: b,
      peakMiB: peak,
      endMiB: e,
      slopeMiBPerHour: perHour,
      liveHeapMiB: [lb?.heapMiB ?? NaN, le?.heapMiB ?? NaN],
      liveHeapGrowthMiB: (le?.heapMiB ?? NaN) - (lb?.heapMiB ?? NaN),
      liveRssMiB: [lb?.rssMiB ?? NaN, le?.rssMiB ?? NaN],
      liveRssGrowthMiB: (le?.rssMiB ?? NaN) - (lb?.rssMiB ?? NaN),
      cpuSec: cpu,
    };
  });
  const grew = (n: string): Record<string, number> => {
    const d: Record<string, number> = n === VICTIM ? { ...retired.drops } : {};
    for (const [k, v] of Object.entries(dropsAfter[n] ?? {})) d[k] = (d[k] ?? 0) + v - (dropsBefore[n]?.[k] ?? 0);
    return Object.fromEntries(Object.entries(d).filter(([, x]) => x > 0));
  };
  const drops = Object.fromEntries(NODES.map((n) => [n, grew(n)]));
  const exhausted = NODES.flatMap((n) => EXHAUSTION.filter((k) => (drops[n]![k] ?? 0) > 0).map((k) => `${n} ${k}`));
  const lags = load
    .flatMap((s) => NODES.map((n) => s.nodes[n]?.syncLagMs ?? null))
    .filter((x): x is number => x !== null);
  const flips = NODES.map((n) => [n, (rolesAfter[n] ?? 0) - (rolesBefore[n] ?? 0)] as const);
  // Each failover and its failback switch twice; at a switch, what a load made within
  // syncAfterMs before it is not on the other node (by design): at most that may fail.
  const switches = 2 * failoversDone.length;
  const connRate = CONNECTIONS.reduce((a, c) => a + c.rate, 0);
  const youngConns = Math.ceil(switches * connRate * SYNC_AFTER_SEC);
  const youngEchoes = switches * 20; // one round of 20 connections may be under way at a switch
  const youngDatagrams = Math.ceil(switches * UDP_RATE * SYNC_AFTER_SEC);
  const synRate = CONNECTIONS.find((c) => c.kind === 'synproxy')!.rate;
  const uncounted = failoversDone.reduce(
    (a, f) => a + (f.unreadMs === undefined ? 0 : Math.ceil(synRate * (f.unreadMs / 1000 + UNCOUNTED_SLACK_SEC))),
    0,
  );
  const atSwitches = (bound: number): string =>
    switches > 0 ? `; at ${switches} switches at most ${bound} may be lost (younger than syncAfterMs)` : '';
  const verdicts = [
    // A soak is steady state: a failover (keepalived took the master's check or adverts for
    // failed) would explain the losses below; it is itself a finding. With SOAK_FAILOVERS:
    // exactly the ones made (each moves lb-b's role twice; lb-a's as keepalived tells it).
    ...(CLUSTER_NODES > 0
      ? FAILOVERS === 0
        ? []
        : [
            {
              name: `${FAILOVERS} deaths (kill -9) and returns of ${VICTIM} made`,
              ok: failoverErrors.length === 0 && failoversDone.length === FAILOVERS,
              detail: `${failoversDone.map((f) => `at ${f.at} s: out of ECMP after ${f.takeoverMs} ms, sessions adopted ${f.adoptedMs === null ? 'not within the hold' : `after ${f.adoptedMs} ms`}, back after ${f.failbackMs} ms`).join('; ')}${failoverErrors.length ? `; ${failoverErrors.join('; ')}` : ''}`,
            },
          ]
      : [
          FAILOVERS === 0
            ? {
                name: "the pair's roles held (no failover)",
                ok: flips.every(([, d]) => d === 0),
                detail: flips.map(([n, d]) => `${n} ${d} role change${d === 1 ? '' : 's'}`).join(', '),
              }
            : {
                name: `${FAILOVERS} failovers and failbacks made, no other`,
                ok: failoverErrors.length === 0 && failoversDone.length === FAILOVERS && flips[1]![1] === switches,
                detail: `${failoversDone.map((f) => `at ${f.at} s: lb-b master after ${f.takeoverMs} ms, lb-a back after ${f.failbackMs} ms`).join('; ')}${failoverErrors.length ? `; ${failoverErrors.join('; ')}` : ''}; role changes ${flips.map(([n, d]) => `${n} ${d}`).join(', ')}`,
              },
        ]),
    {
      name: 'every request answered',
      ok:
        tot.httpErrors === 0 &&
        tot.connErrors <= youngConns &&
        tot.chunkErrors.length === 0 &&
        tot.synProxied >= (tot.connectionsBy.synproxy ?? 0) - tot.connErrors - uncounted,
      detail: `${tot.requests} keep-alive requests (${tot.httpErrors} errors${
        tot.httpErrors > 0
          ? `: ${JSON.stringify(tot.httpWhy)}, the first at ${[...tot.httpErrorsAt]
              .sort((a, b) => a - b)
              .map((ms) => ((ms - loadStart) / 1000).toFixed(1))
              .join(', ')} s`
          : ''
      }), ${tot.connections} new connections (${tot.connErrors} errors; ${tot.synProxied} accepted by the SYN proxy's cookies${uncounted > 0 ? `, of which a killed node's last ${uncounted} may be uncounted` : ''})${atSwitches(youngConns)}${tot.chunkErrors.length ? `; ${tot.chunkErrors.join('; ')}` : ''}`,
    },
    {
      name: 'every echo byte intact',
      ok: tot.echoCorrupted === 0 && tot.echoFailed <= youngEchoes && tot.echoes > 0,
      detail: `${tot.echoes} echoes of 256 KiB, ${tot.echoCorrupted} corrupted, ${tot.echoFailed} failed${atSwitches(youngEchoes)}`,
    },
    {
      name: 'every datagram answered',
      // A datagram is not retransmitted: one lost on the machine's queues is lost for good.
      ok: tot.udpWrong === 0 && tot.udpLost <= tot.udpSent * 0.001 + youngDatagrams,
      detail: `${tot.udpSent} sent (a tenth in fragments: ${tot.udpReassembled} datagrams reassembled by the LBs), ${tot.udpLost} lost, ${tot.udpWrong} wrong${atSwitches(youngDatagrams)}`,
    },
    {
      name: 'no resource ran out, no queue error',
      ok: exhausted.length === 0 && queueErrors === 0,
      detail: `${exhausted.length ? exhausted.join(', ') : 'none of ' + EXHAUSTION.join(', ')}; queue errors ${queueErrors}`,
    },
    {
      name: 'tables (sessions, templates) and Redis hashes empty after the load',
      ok: drained !== null,
      detail:
        drained !== null
          ? `empty ${drained.toFixed(0)} s after the load ended`
          : `still ${NODES.map((n) => `${n} ${last.nodes[n]?.sessions} sessions, ${last.nodes[n]?.templates} templates${leftover[n]?.length ? ` (${leftover[n].join(', ')})` : ''}`).join('; ')}; ${last.redisRecords} records after ${DRAIN_SECONDS} s`,
    },
    {
      name: `live heaps (after a full collection) grow at most ${HEAP_GROWTH_MIB} MiB from ${BASE_AT} to the drain's end`,
      ok: memory.every((m) => m.liveHeapGrowthMiB <= HEAP_GROWTH_MIB),
      detail: memory.map((m) => `${m.node} ${signed(m.liveHeapGrowthMiB)} MiB`).join(', '),
    },
    {
      name: `RSS (after a full collection) grows at most ${RSS_GROWTH_MIB} MiB from ${BASE_AT} to the drain's end`,
      ok: memory.every((m) => m.liveRssGrowthMiB <= RSS_GROWTH_MIB),
      detail: memory.map((m) => `${m.node} ${signed(m.liveRssGrowthMiB)} MiB`).join(', '),
    },
  ];

  console.log(
    `\ntunvs soak: ${what}, ${SECONDS} s, ${cpus().length} cores; load ${HTTP_RATE} + ${Math.ceil(HTTP_RATE / 4)} req/s keep-alive, new conn/s ${CONNECTIONS.map((c) => `${c.kind} ${c.rate}`).join(', ')}, ${UDP_RATE} datagrams/s, 20 echoes per ${CHUNK_SECONDS} s`,
  );
  console.log(
    `| node | RSS MiB after warm-up | peak | end of drain | slope, 2nd half (MiB/h) | live heaps MiB, ${BASE_AT} → drain | RSS after a collection | CPU s |`,
  );
  console.log('|---|---|---|---|---|---|---|---|');
  const pair = ([a, b]: number[]): string => `${a!.toFixed(1)} → ${b!.toFixed(1)}`;
  for (const m of memory) {
    console.log(
      `| ${m.node} | ${m.afterWarmupMiB.toFixed(1)} | ${m.peakMiB.toFixed(1)} | ${m.endMiB.toFixed(1)} | ${m.slopeMiBPerHour?.toFixed(1) ?? '-'} | ${pair(m.liveHeapMiB)} | ${pair(m.liveRssMiB)} | ${m.cpuSec.toFixed(1)} |`,
    );
  }
  const redisBase = base.redisMiB;
  console.log(
    `redis used memory: ${redisBase.toFixed(2)} MiB after the warm-up, peak ${Math.max(...samples.map((s) => s.redisMiB)).toFixed(2)}, ${last.redisMiB.toFixed(2)} at the end; records peak ${Math.max(...samples.map((s) => s.redisRecords))}`,
  );
  if (lags.length > 0) console.log(`sync lag: median ${spread(lags).median} ms, max ${Math.max(...lags)} ms`);
  const sum = (k: keyof MachineStalls): string => samples.reduce((a, x) => a + x.machine[k], 0).toFixed(1);
  const latest = samples.reduce((a, x) => (x.machine.lateMs > a.machine.lateMs ? x : a), samples[0]!);
  console.log(
    `the machine: steal ${sum('stealSec')} s, CPU pressure (some waiting) ${sum('cpuSomeSec')} s, IO pressure (all waiting) ${sum('ioFullSec')} s; this process's timers late by at most ${latest.machine.lateMs} ms (the sample interval ending at ${latest.t.toFixed(0)} s)`,
  );
  console.log(
    `main-thread stalls (held ≥ ${LOOP_STALL_MS} ms; keepalived's check gives 900 ms): ${NODES.map((n) => `${n} ${stalls[n]?.count ?? '?'}${stalls[n]?.count ? ` (longest ${stalls[n].longestMs} ms)` : ''}`).join(', ')}`,
  );
  // What held them (when the soak's clock says what happened then: a death, a return).
  for (const n of NODES)
    for (const l of stalls[n]?.lines ?? []) {
      const { time, msg } = JSON.parse(l) as { time: string; msg: string };
      console.log(`  ${n} ${time.slice(11, 23)} at ${((Date.parse(time) - loadStart) / 1000).toFixed(1)} s: ${msg}`);
    }
  console.log(
    `drops that grew: ${
      NODES.map((n) => {
        const d = Object.entries(drops[n]!);
        return d.length ? `${n} ${d.map(([k, v]) => `${k} ${v}`).join(', ')}` : '';
      })
        .filter(Boolean)
        .join('; ') || 'none'
    }`,
  );
  console.log('\n| verdict | ok | detail |\n|---|---|---|');
  for (const v of verdicts) console.log(`| ${v.name} | ${v.ok ? 'yes' : 'NO'} | ${v.detail} |`);
  // A role that moved unplanned: what keepalived saw (its check failing, adverts missed).
  if (CLUSTER_NODES === 0 && !verdicts[0]!.ok)
    for (const n of NODES) {
      console.log(`\nkeepalived on ${n}:\n${(roleEvents[n] ?? []).join('\n') || '(no log)'}`);
      const lines = stalls[n]?.warnings ?? [];
      console.log(`tunvs on ${n}, its last warnings and errors:\n${lines.join('\n') || '(none)'}`);
    }

  writeResults('soak', {
    topology: CLUSTER_NODES > 0 ? `cluster-${CLUSTER_NODES}` : 'pair',
    seconds: SECONDS,
    load: { httpRate: HTTP_RATE, connRate: CONN_RATE, udpRate: UDP_RATE, chunkSeconds: CHUNK_SECONDS },
    totals: tot,
    memory,
    drops,
    queueErrors,
    drainedAfterSec: drained,
    failovers: failoversDone,
    keepalived: roleEvents,
    mainThreadStalls: Object.fromEntries(
      NODES.map((n) => [n, { count: stalls[n]?.count, longestMs: stalls[n]?.longestMs }]),
    ),
    verdicts,
    samples,
  });
  if (verdicts.some((v) => !v.ok)) process.exitCode = 1;
}

function signed(x: number): string {
  return `${x >= 0 ? '+' : ''}${x.toFixed(1)}`;
}

main().catch((e: unknown) => {
  console.error(`soak: ${(e as Error).message}`);
  process.exitCode = 1;
});
