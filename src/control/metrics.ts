/**
 * Prometheus metrics (prom-client), read on each scrape from the forwarders' shared counters:
 * nothing is counted twice and the data path never calls into this module. Names follow the
 * Prometheus conventions: a `tunvs_` prefix, `_total` on counters, base units (bytes,
 * seconds), labels for what varies (reason, service, server, direction, state, worker).
 *
 *   tunvs_<counter>_total                 every global counter of `tunvs stats` (rx_packets,
 *                                         sessions_created, toa_inserted, ...)
 *   tunvs_synproxy_auto_on                workers whose SYN proxy (synProxy: auto) is on now
 *   tunvs_fragments_pending,              IP datagrams being reassembled now, and the bytes
 *   tunvs_fragment_bytes_held             of their fragments held (all workers)
 *   tunvs_drops_total{reason}             drops by reason
 *   tunvs_real_server_sessions{service,server,state}        active / inactive sessions
 *   tunvs_real_server_sessions_created_total{service,server}
 *   tunvs_real_server_packets_total{service,server,direction}   in = client → server
 *   tunvs_real_server_bytes_total{service,server,direction}
 *   tunvs_real_server_up{service,server}  1 up (or not checked), 0 down by its health check
 *   tunvs_health_transitions_total{service,server}
 *   tunvs_service_quorum{service}         1 with its quorum, 0 lost (services with a sorry
 *                                         server or a quorum command)
 *   tunvs_table_sessions{worker}, tunvs_table_capacity{worker}
 *   tunvs_ha_role{role}, tunvs_ha_role_changes_total (a pair: keepalived's, since start),
 *   tunvs_ha_redis_up, tunvs_ha_sync_lag_seconds,
 *   tunvs_ha_events_total{kind}           published / applied / lost
 *   tunvs_ha_peer_alive{peer}, tunvs_ha_peer_sync_lag_seconds{peer},
 *   tunvs_ha_peer_shards_agree{peer}      0: that peer's sessions cannot be installed here
 *   tunvs_ha_peer_isn_key_agrees{peer}    0: that peer has another ISN key (isn.secret)
 *   tunvs_forwarder_up{worker}            1 when the forwarder answered the scrape (1 s)
 *   tunvs_forwarder_heap_bytes{worker}    the forwarder thread's V8 heap
 *   tunvs_queue_<figure>_total{worker}    each forwarder's queue (TUN or AF_XDP): packets and
 *                                         bytes by direction, write drops, errors by op, ...
 *   tunvs_device_<figure>_total{direction}   the TUN device's own counters (sysfs)
 *   tunvs_main_thread_stalls_total,       the main thread held LOOP_STALL_MS or more (the
 *   tunvs_main_thread_stall_longest_seconds   check's, the admin's, HA sync's thread)
 *   process_*, nodejs_*                   prom-client's defaults: the process's RSS, CPU and
 *                                         file descriptors, the main thread's heap and
 *                                         event-loop lag
 *
 * The queue counters live in the forwarders and come by message: one ask per forwarder per
 * scrape, shared by every queue metric of that scrape (QUEUE_SNAPSHOT_MS).
 */

import { GLOBAL_GAUGE_NAMES } from '../dataplane/counters.js';
import { createServer, type Server } from 'node:http';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { HaStatus } from '../ha/node.js';
import type { LoopStats } from './loop_watch.js';
import { LOOP_STALL_MS, ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE, ROUTE_METRIC_QUIET } from '../constants.js';
import type { QueueStats } from '../dataplane/tun_device.js';
import type { ForwarderStats } from './forwarder_protocol.js';
import type { ServiceRow } from './stats.js';
import type { GlobalStats } from './stats.js';
import { hostPort } from '../service/addr.js';
import { shardsAgree } from '../dataplane/shard.js';

export interface MetricsSource {
  stats(): GlobalStats;
  services(): ServiceRow[];
  /** Health transitions of a real server (service id, server id), if it is checked. */
  transitions(serviceId: number, serverId: number): number | undefined;
  tables(): { live: number; capacity: number }[];
  ha(): HaStatus | undefined;
  /** Cluster: the routes into the TUN with their metrics (what is announced). */
  routes?(): { prefix: string; metric?: number }[];
  /** Cluster with route health: every VIP's host prefix, and whether route health lets it be
   * announced. */
  routeHealth?(): { prefix: string; serving: boolean }[];
  /** Each forwarder's queue counters and heap (null: it did not answer in time). */
  forwarders?: () => Promise<(ForwarderStats | null)[]>;
  /** The TUN device's counters (sysfs names: rx_packets, tx_dropped, ...). */
  device?: () => Record<string, number>;
  /** The main thread's stalls (loop_watch.ts). */
  mainThread?: () => LoopStats;
}

/** One scrape reads every queue metric from one snapshot: a snapshot younger than this is
 * reused (a scrape takes milliseconds; scrapers come every few seconds). */
const QUEUE_SNAPSHOT_MS = 250;

/** The queue counters exported, with what each counts (names from QueueStats). */
const QUEUE_FIGURES: readonly { key: keyof QueueStats; name: string; help: string }[] = [
  { key: 'writeDropped', name: 'write_dropped', help: 'Writes refused because the kernel queue was full' },
  { key: 'wakeups', name: 'wakeups', help: 'Times the forwarder woke to read its queue' },
  { key: 'linkPackets', name: 'link_packets', help: "DR: frames sent to the real servers' link" },
  {
    key: 'kernelPackets',
    name: 'kernel_packets',
    help: 'io: xdp - packets handed to the kernel (no XDP route, unresolved neighbour)',
  },
  {
    key: 'rxDropped',
    name: 'rx_dropped',
    help: 'io: xdp - frames the kernel dropped before the queue (RX ring full, no fill frame)',
  },
  { key: 'csumCompleted', name: 'csum_completed', help: 'io: xdp - partial TCP/UDP checksums completed' },
  { key: 'nextHopLookups', name: 'next_hop_lookups', help: 'io: xdp - next hops asked of the kernel on a cache miss' },
];

/** A counter whose value is read from elsewhere on each scrape. */
function readCounter(
  reg: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: (set: (labels: Record<string, string>, v: number) => void) => void | Promise<void>,
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [reg],
    async collect() {
      this.reset();
      await read((labels, v) => this.inc(labels, v));
    },
  });
}

function readGauge(
  reg: Registry,
  name: string,
  help: string,
  labelNames: string[],
  read: (set: (labels: Record<string, string>, v: number) => void) => void | Promise<void>,
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [reg],
    async collect() {
      this.reset();
      await read((labels, v) => this.set(labels, v));
    },
  });
}

export function metricsRegistry(src: MetricsSource, counterNames: readonly string[]): Registry {
  const reg = new Registry();
  // The process's own, under the names every Node exporter uses (process_resident_memory_bytes,
  // process_cpu_seconds_total, process_open_fds, nodejs_heap_size_used_bytes: the main
  // thread's heap, nodejs_eventloop_lag_seconds: the main thread's, where health checks, HA
  // sync and the admin socket run).
  collectDefaultMetrics({ register: reg });
  for (const n of counterNames) {
    if (GLOBAL_GAUGE_NAMES.has(n)) {
      readGauge(reg, `tunvs_${n}`, `tunvs stats figure ${n}, summed over the workers`, [], (set) =>
        set({}, src.stats().counters[n] ?? 0),
      );
      continue;
    }
    readCounter(reg, `tunvs_${n}_total`, `tunvs stats counter ${n}, all workers`, [], (set) =>
      set({}, src.stats().counters[n] ?? 0),
    );
  }
  const { mainThread } = src;
  if (mainThread) {
    readCounter(
      reg,
      'tunvs_main_thread_stalls_total',
      `Times the main thread (keepalived's check, the admin socket, HA sync) was held for ${LOOP_STALL_MS} ms or more`,
      [],
      (set) => set({}, mainThread().stalls),
    );
    readGauge(reg, 'tunvs_main_thread_stall_longest_seconds', 'The longest main-thread stall since start', [], (set) =>
      set({}, mainThread().longestMs / 1000),
    );
  }
  readCounter(reg, 'tunvs_drops_total', 'Packets dropped, by reason', ['reason'], (set) => {
    for (const [reason, v] of Object.entries(src.stats().drops)) set({ reason }, v);
  });
  const perServer = (
    f: (
      s: ServiceRow,
      r: ServiceRow['realServers'][number],
      set: (l: Record<string, string>, v: number) => void,
    ) => void,
  ) => {
    return (set: (l: Record<string, string>, v: number) => void): void => {
      for (const s of src.services()) for (const r of s.realServers) f(s, r, set);
    };
  };
  const id = (s: ServiceRow, r: ServiceRow['realServers'][number]): Record<string, string> => ({
    service: s.name,
    server: hostPort(r.address, r.port),
  });
  readGauge(
    reg,
    'tunvs_real_server_sessions',
    'Sessions per real server, by state (active: ESTABLISHED)',
    ['service', 'server', 'state'],
    perServer((s, r, set) => {
      set({ ...id(s, r), state: 'active' }, r.activeConns);
      set({ ...id(s, r), state: 'inactive' }, r.inactiveConns);
    }),
  );
  readCounter(
    reg,
    'tunvs_real_server_sessions_created_total',
    'Sessions created toward the real server',
    ['service', 'server'],
    perServer((s, r, set) => set(id(s, r), r.conns)),
  );
  readCounter(
    reg,
    'tunvs_real_server_packets_total',
    'Packets per real server; in: client to server, out: server to client',
    ['service', 'server', 'direction'],
    perServer((s, r, set) => {
      set({ ...id(s, r), direction: 'in' }, r.inPackets);
      set({ ...id(s, r), direction: 'out' }, r.outPackets);
    }),
  );
  readCounter(
    reg,
    'tunvs_real_server_bytes_total',
    'Bytes per real server; in: client to server, out: server to client',
    ['service', 'server', 'direction'],
    perServer((s, r, set) => {
      set({ ...id(s, r), direction: 'in' }, r.inBytes);
      set({ ...id(s, r), direction: 'out' }, r.outBytes);
    }),
  );
  readGauge(
    reg,
    'tunvs_real_server_up',
    '1 when the real server is up (or not health-checked), 0 when its health check has it down',
    ['service', 'server'],
    perServer((s, r, set) => set(id(s, r), r.health === 'down' ? 0 : 1)),
  );
  readGauge(
    reg,
    'tunvs_service_quorum',
    "1 while the weights of the service's servers that are up reach its quorum, 0 when it has lost it",
    ['service'],
    (set) => {
      for (const s of src.services()) if (s.quorum !== undefined) set({ service: s.name }, s.quorum === 'up' ? 1 : 0);
    },
  );
  readCounter(
    reg,
    'tunvs_health_transitions_total',
    'Health-check transitions (up to down and back) of the real server',
    ['service', 'server'],
    perServer((s, r, set) => {
      const n = src.transitions(s.id, r.id);
      if (n !== undefined) set(id(s, r), n);
    }),
  );
  readGauge(reg, 'tunvs_table_sessions', 'Live sessions in the shard of a worker', ['worker'], (set) =>
    src.tables().forEach((t, w) => set({ worker: String(w) }, t.live)),
  );
  readGauge(reg, 'tunvs_table_capacity', 'Session capacity of the shard of a worker', ['worker'], (set) =>
    src.tables().forEach((t, w) => set({ worker: String(w) }, t.capacity)),
  );
  readGauge(
    reg,
    'tunvs_ha_role',
    'HA role of this LB (1 for the current one; active: a cluster node)',
    ['role'],
    (set) => {
      const h = src.ha();
      if (h) for (const role of ['master', 'backup', 'fault', 'active']) set({ role }, h.role === role ? 1 : 0);
    },
  );
  readCounter(
    reg,
    'tunvs_ha_role_changes_total',
    "A pair node's role changes since start (each failover or failback moves two)",
    [],
    (set) => {
      const h = src.ha();
      if (h?.mode === 'pair') set({}, h.roleChanges);
    },
  );
  readGauge(reg, 'tunvs_ha_forwarding', '1 while this node forwards (a pair standby does not)', [], (set) => {
    const h = src.ha();
    if (h) set({}, h.forwarding ? 1 : 0);
  });
  readGauge(reg, 'tunvs_ha_ready', "1 once the node has loaded its peers' sessions", [], (set) => {
    const h = src.ha();
    if (h) set({}, h.ready ? 1 : 0);
  });
  readGauge(
    reg,
    'tunvs_cluster_routes',
    'Cluster: routes into the TUN by what the BGP speaker does with them',
    ['kind'],
    (set) => {
      const routes = src.routes?.();
      if (!routes || src.ha()?.mode !== 'cluster') return;
      const count = (k: (m: number) => boolean): number =>
        routes.filter((r) => r.metric !== undefined && k(r.metric)).length;
      set(
        { kind: 'announced' },
        count((m) => m === ROUTE_METRIC_ANNOUNCED),
      );
      set(
        { kind: 'backup' },
        count((m) => m > ROUTE_METRIC_BACKUP_BASE),
      );
      set(
        { kind: 'quiet' },
        count((m) => m === ROUTE_METRIC_QUIET),
      );
    },
  );
  readGauge(
    reg,
    'tunvs_cluster_vip_serving',
    'Cluster with route health: 1 while a VIP may be announced, 0 while route health withdraws it',
    ['vip'],
    (set) => {
      for (const v of src.routeHealth?.() ?? []) set({ vip: v.prefix }, v.serving ? 1 : 0);
    },
  );
  readGauge(reg, 'tunvs_ha_peer_alive', '1 while a peer node refreshes its alive key', ['peer'], (set) => {
    for (const p of src.ha()?.peers ?? []) set({ peer: String(p.id) }, p.alive ? 1 : 0);
  });
  readGauge(
    reg,
    'tunvs_ha_peer_shards_agree',
    "1 while a peer's session shards agree with this node's (its sessions are installed here), 0 when not",
    ['peer'],
    (set) => {
      const h = src.ha();
      for (const p of h?.peers ?? [])
        if (p.workers > 0) set({ peer: String(p.id) }, shardsAgree(p.shards, h!.workers) ? 1 : 0);
    },
  );
  readGauge(
    reg,
    'tunvs_ha_peer_isn_key_agrees',
    "1 while a peer's ISN key (isn.secret) is this node's, 0 when it has another (its SYN proxy cookies and ISNs are not this node's)",
    ['peer'],
    (set) => {
      for (const p of src.ha()?.peers ?? [])
        if (p.sameIsnKey !== undefined) set({ peer: String(p.id) }, p.sameIsnKey ? 1 : 0);
    },
  );
  readGauge(
    reg,
    'tunvs_ha_peer_sync_lag_seconds',
    "Now minus a peer's clock on its last batch applied here",
    ['peer'],
    (set) => {
      for (const p of src.ha()?.peers ?? []) if (p.syncLagMs !== null) set({ peer: String(p.id) }, p.syncLagMs / 1000);
    },
  );
  readGauge(
    reg,
    'tunvs_ha_sync_format',
    'The sync-record format this node publishes (the newest every registered node reads)',
    [],
    (set) => {
      const h = src.ha();
      if (h) set({}, h.syncFormat);
    },
  );
  readGauge(reg, 'tunvs_ha_redis_up', '1 when the HA sync reaches Redis', [], (set) => {
    const h = src.ha();
    if (h) set({}, h.redis === 'up' ? 1 : 0);
  });
  readGauge(
    reg,
    'tunvs_ha_sync_lag_seconds',
    "Largest over the peers followed: now minus the peer's clock on its last applied batch",
    [],
    (set) => {
      const h = src.ha();
      if (h?.syncLagMs !== null && h?.syncLagMs !== undefined) set({}, h.syncLagMs / 1000);
    },
  );
  readCounter(
    reg,
    'tunvs_ha_events_total',
    'Session sync events: published (master), applied (standby), lost',
    ['kind'],
    (set) => {
      const h = src.ha();
      if (h) {
        set({ kind: 'published' }, h.published);
        set({ kind: 'applied' }, h.applied);
        set({ kind: 'lost' }, h.lost);
      }
    },
  );
  queueMetrics(reg, src);
  return reg;
}

/** The forwarders' queue counters and the TUN device's. */
function queueMetrics(reg: Registry, src: MetricsSource): void {
  const { forwarders, device } = src;
  if (forwarders) {
    let last: { at: number; snapshot: Promise<(ForwarderStats | null)[]> } | undefined;
    const snapshot = (): Promise<(ForwarderStats | null)[]> => {
      if (!last || Date.now() - last.at > QUEUE_SNAPSHOT_MS) last = { at: Date.now(), snapshot: forwarders() };
      return last.snapshot;
    };
    const perQueue =
      (f: (q: QueueStats, worker: string, set: (l: Record<string, string>, v: number) => void) => void) =>
      async (set: (l: Record<string, string>, v: number) => void): Promise<void> => {
        (await snapshot()).forEach((s, w) => s && f(s.queue, String(w), set));
      };
    readGauge(
      reg,
      'tunvs_forwarder_up',
      '1 when the forwarder answered this scrape (within 1 s)',
      ['worker'],
      async (set) => (await snapshot()).forEach((q, w) => set({ worker: String(w) }, q ? 1 : 0)),
    );
    readGauge(
      reg,
      'tunvs_forwarder_heap_bytes',
      "The V8 heap a forwarder thread uses (its own isolate's; process_resident_memory_bytes counts every thread)",
      ['worker'],
      async (set) => (await snapshot()).forEach((s, w) => s && set({ worker: String(w) }, s.heapBytes)),
    );
    for (const [unit, rx, tx] of [
      ['packets', 'rxPackets', 'txPackets'],
      ['bytes', 'rxBytes', 'txBytes'],
    ] as const)
      readCounter(
        reg,
        `tunvs_queue_${unit}_total`,
        `${unit[0]!.toUpperCase()}${unit.slice(1)} through a forwarder's queue; rx: read by tunvs, tx: written by tunvs`,
        ['worker', 'direction'],
        perQueue((q, worker, set) => {
          set({ worker, direction: 'rx' }, q[rx]);
          set({ worker, direction: 'tx' }, q[tx]);
        }),
      );
    readCounter(
      reg,
      'tunvs_queue_errors_total',
      "Failed reads, writes and DR link sends of a forwarder's queue",
      ['worker', 'op'],
      perQueue((q, worker, set) => {
        set({ worker, op: 'read' }, q.readErrors);
        set({ worker, op: 'write' }, q.writeErrors);
        set({ worker, op: 'link' }, q.linkErrors);
      }),
    );
    for (const f of QUEUE_FIGURES)
      readCounter(
        reg,
        `tunvs_queue_${f.name}_total`,
        f.help,
        ['worker'],
        perQueue((q, worker, set) => set({ worker }, q[f.key])),
      );
  }
  if (device) {
    // The kernel's view: rx is what tunvs wrote into the device, tx what the kernel queued
    // for tunvs to read (tx_dropped: the queue was full).
    for (const [figure, help] of [
      ['packets', 'TUN device packets as the kernel counts them (rx: from tunvs, tx: to tunvs)'],
      ['dropped', 'TUN device drops (tx: the kernel found the queue to tunvs full)'],
      ['errors', 'TUN device errors as the kernel counts them'],
    ] as const)
      readCounter(reg, `tunvs_device_${figure}_total`, help, ['direction'], (set) => {
        const d = device();
        for (const direction of ['rx', 'tx'] as const) {
          const v = d[`${direction}_${figure}`];
          if (v !== undefined) set({ direction }, v);
        }
      });
  }
}

/** Serve GET /metrics on host:port (loopback unless configured otherwise). */
export function serveMetrics(reg: Registry, host: string, port: number, onError: (e: Error) => void): Server {
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && req.url !== '/')) {
      res.writeHead(404).end('tunvs: GET /metrics\n');
      return;
    }
    reg.metrics().then(
      (text) => res.writeHead(200, { 'content-type': reg.contentType }).end(text),
      (e: Error) => res.writeHead(500).end(`${e.message}\n`),
    );
  });
  server.on('error', onError);
  server.listen(port, host);
  return server;
}
