/**
 * What `tunvs list` and `tunvs stats` show, computed in the main thread from the workers'
 * shared counters (counters.ts) and connection counts: nothing here touches a worker.
 */

import { MODE_FORWARD_NAMES, type ModeName } from '../nat/modes/mode.js';
import { readFileSync } from 'node:fs';
import {
  DROPS_BASE,
  GLOBAL_COUNT,
  GLOBAL_COUNTER_NAMES,
  RS_BASE,
  RS_BYTES_IN,
  RS_BYTES_OUT,
  RS_FIELDS,
  RS_PACKETS_IN,
  RS_PACKETS_OUT,
  RS_SESSIONS,
} from '../dataplane/counters.js';
import { DROP_REASON_COUNT, DROP_REASON_NAMES } from '../nat/verdict.js';
import { AF_INET6, IPPROTO_TCP } from '../packet/headers.js';
import { formatAddress, hostPort, type ParsedCidr } from '../service/addr.js';
import type { ConnCounts, ResolvedService } from '../service/service.js';
import type { HaStatus } from '../ha/node.js';
import { ownerPeriod, shardsAgree } from '../dataplane/shard.js';
import { SESSION_SHARDS } from '../constants.js';

export interface RealServerRow {
  id: number;
  address: string;
  port: number;
  weight: number;
  activeConns: number;
  inactiveConns: number;
  conns: number;
  inPackets: number;
  outPackets: number;
  inBytes: number;
  outBytes: number;
  /** Per-second rates over the last sampling interval (`list --rate`). */
  rate?: { conns: number; inPackets: number; outPackets: number; inBytes: number; outBytes: number };
  /** Health-check state: 'up' or 'down'; absent when the service has no health check. */
  health?: 'up' | 'down';
  healthError?: string;
  /** The weight an exec check with dynamicWeight set, which the forwarders use instead of
   * `weight` (the config's) while the server is up. */
  checkWeight?: number;
  /** The service's sorry server: 'in use' while the service has lost its quorum. */
  sorry?: 'in use' | 'standby';
  /** The server's session cap and floor (ipvsadm -x, -y), when it has one. */
  maxConns?: number;
  minConns?: number;
  /** TUNNEL: the path MTU learned toward it from a router's "too big", while it lasts
   * (nat/tunnel_pmtu.ts); absent: the TUN device's. */
  tunnelMtu?: number;
}

export interface ServiceRow {
  id: number;
  name: string;
  protocol: 'TCP' | 'UDP';
  vip: string;
  port: number;
  scheduler: string;
  /** ipvsadm's scheduler flags (sh-fallback, sh-port; mh-...): hashFallback, hashPort. */
  schedFlags?: string[];
  /** Forwarding mode (fullnat, nat, tunnel, dr). */
  mode: string;
  /** ipvsadm -p / -M: the template timeout and the client prefix length of the VIP's family. */
  persistence?: { timeoutSec: number; prefixLength: number; group?: string };
  sloppy: boolean;
  /** ipvsadm -o: each datagram scheduled on its own (ServiceSpec.onePacket). */
  onePacket?: true;
  /** TUNNEL's GRE or GUE encapsulation (ServiceSpec.tunnel; absent: IP-in-IP). GUE's
   * checksum is IPv4's: IPv6 packets always carry it. */
  tunnel?: { type: 'gre' | 'gue'; checksum: boolean; port?: number };
  /** The service's idleTimeout, when it has one (absent: the global timeouts). */
  idleTimeoutSec?: number;
  /** Its client ACL's prefixes (ServiceSpec.acl), when it has one. */
  acl?: { allow: string[]; deny: string[] };
  /** Its new-sessions-per-second cap (ServiceSpec.maxNewPerSec), when it has one. */
  maxNewPerSec?: number;
  /** Whether the weights of its servers that are up reach its quorum; absent unless it has a
   * sorry server or a quorum command, or a cluster's route health reads it (control/health.ts). */
  quorum?: 'up' | 'lost';
  realServers: RealServerRow[];
}

/** What `tunvs list` shows of the health checks (control/health.ts HealthMonitor). */
export interface HealthView {
  state(serviceId: number, serverId: number): { up: boolean; lastError?: string; weight?: number } | undefined;
  hasQuorum(serviceId: number): boolean | undefined;
}

export function listServices(
  services: readonly ResolvedService[],
  counters: readonly Float64Array[],
  counts: readonly ConnCounts[],
  health?: HealthView,
  tunnelMtu?: (rsId: number) => number,
): ServiceRow[] {
  const sum = (id: number, field: number): number =>
    counters.reduce((a, c) => a + c[RS_BASE + id * RS_FIELDS + field]!, 0);
  return services.map((s) => {
    const quorum = health?.hasQuorum(s.id);
    return {
      id: s.id,
      name: s.name,
      protocol: s.proto === IPPROTO_TCP ? 'TCP' : 'UDP',
      vip: s.vipText,
      port: s.port,
      scheduler: s.scheduler,
      ...(s.hashFallback || s.hashPort
        ? {
            schedFlags: [
              ...(s.hashFallback ? [`${s.scheduler}-fallback`] : []),
              ...(s.hashPort ? [`${s.scheduler}-port`] : []),
            ],
          }
        : {}),
      mode: s.mode,
      ...(s.persistence
        ? {
            persistence: {
              timeoutSec: s.persistence.timeoutSec,
              prefixLength: s.af === AF_INET6 ? s.persistence.prefix6 : s.persistence.netmask,
              ...(s.persistence.group !== undefined ? { group: s.persistence.group } : {}),
            },
          }
        : {}),
      sloppy: s.sloppy,
      ...(s.onePacket ? { onePacket: true as const } : {}),
      ...(s.tunnel
        ? {
            tunnel: {
              type: s.tunnel.type,
              checksum: s.tunnel.checksum,
              ...(s.tunnel.type === 'gue' ? { port: s.tunnel.port } : {}),
            },
          }
        : {}),
      ...(s.idleTimeoutSec > 0 ? { idleTimeoutSec: s.idleTimeoutSec } : {}),
      ...(s.aclAllow.length + s.aclDeny.length > 0
        ? { acl: { allow: s.aclAllow.map(cidrText), deny: s.aclDeny.map(cidrText) } }
        : {}),
      ...(s.maxNewPerSec > 0 ? { maxNewPerSec: s.maxNewPerSec } : {}),
      ...(quorum !== undefined ? { quorum: quorum ? ('up' as const) : ('lost' as const) } : {}),
      realServers: s.realServers.map((r) => {
        const h = health?.state(s.id, r.id);
        const mtu = s.mode === 'tunnel' && tunnelMtu ? tunnelMtu(r.id) : 0;
        return {
          id: r.id,
          address: r.address,
          port: r.port,
          weight: r.weight,
          activeConns: counts.reduce((a, c) => a + c.active[r.id]!, 0),
          inactiveConns: counts.reduce((a, c) => a + c.inactive[r.id]!, 0),
          conns: sum(r.id, RS_SESSIONS),
          inPackets: sum(r.id, RS_PACKETS_IN),
          outPackets: sum(r.id, RS_PACKETS_OUT),
          inBytes: sum(r.id, RS_BYTES_IN),
          outBytes: sum(r.id, RS_BYTES_OUT),
          ...(h ? { health: h.up ? ('up' as const) : ('down' as const) } : {}),
          ...(h?.lastError ? { healthError: h.lastError } : {}),
          ...(h?.weight !== undefined ? { checkWeight: h.weight } : {}),
          ...(r.sorry ? { sorry: quorum === false ? ('in use' as const) : ('standby' as const) } : {}),
          ...(r.maxConns > 0 ? { maxConns: r.maxConns, minConns: r.minConns } : {}),
          ...(mtu > 0 ? { tunnelMtu: mtu } : {}),
        };
      }),
    };
  });
}

export interface GlobalStats {
  counters: Record<string, number>;
  drops: Record<string, number>;
  perWorker: Record<string, number>[];
}

export function globalStats(counters: readonly Float64Array[]): GlobalStats {
  const total: Record<string, number> = {};
  const drops: Record<string, number> = {};
  const perWorker = counters.map((c) => {
    const w: Record<string, number> = {};
    for (let i = 0; i < GLOBAL_COUNT; i++) {
      const name = GLOBAL_COUNTER_NAMES[i]!;
      w[name] = c[i]!;
      total[name] = (total[name] ?? 0) + c[i]!;
    }
    for (let r = 1; r < DROP_REASON_COUNT; r++) {
      const name = DROP_REASON_NAMES[r]!;
      drops[name] = (drops[name] ?? 0) + c[DROPS_BASE + r]!;
    }
    return w;
  });
  return { counters: total, drops, perWorker };
}

function pad(s: string | number, n: number): string {
  return String(s).padEnd(n);
}

/** Keeps the last two samples of the per-server counters to give per-second rates. */
export class RateEstimator {
  private prev = new Map<string, { t: number; v: number[] }>();
  private cur = new Map<string, { t: number; v: number[] }>();

  sample(rows: readonly ServiceRow[], now = Date.now()): void {
    this.prev = this.cur;
    this.cur = new Map();
    for (const s of rows)
      for (const r of s.realServers)
        this.cur.set(`${s.id}/${r.id}`, { t: now, v: [r.conns, r.inPackets, r.outPackets, r.inBytes, r.outBytes] });
  }

  /** Attach rates (0 until two samples exist) to `rows`. */
  annotate(rows: ServiceRow[]): ServiceRow[] {
    for (const s of rows) {
      for (const r of s.realServers) {
        const a = this.prev.get(`${s.id}/${r.id}`);
        const b = this.cur.get(`${s.id}/${r.id}`);
        const dt = a && b ? (b.t - a.t) / 1000 : 0;
        const d = (i: number): number => (dt > 0 ? Math.round((b!.v[i]! - a!.v[i]!) / dt) : 0);
        r.rate = { conns: d(0), inPackets: d(1), outPackets: d(2), inBytes: d(3), outBytes: d(4) };
      }
    }
    return rows;
  }
}

/** What ipvsadm -Ln prints after a service's scheduler: `persistent T` and, for a client
 * prefix shorter than an address, `mask 255.255.255.0` (IPv4) or `mask 64` (IPv6), then
 * `ops` for one-packet scheduling; DPVS's
 * `conn-timeout T` for an idleTimeout; tunvs adds `tunnel gre [csum]` for a GRE tunnel and
 * `tunnel gue port P [csum]` for a GUE one
 * (ipvsadm shows it only with --tun-info), `sloppy`, `allow P,...` and `deny P,...` for its
 * client ACL, `rate N` for its new-sessions cap, and `quorum lost` while a service has lost its
 * quorum. */
function serviceFlags(s: ServiceRow): string {
  let out = s.schedFlags ? ` (${s.schedFlags.join(',')})` : '';
  const p = s.persistence;
  if (p) {
    out += ` persistent ${p.timeoutSec}`;
    if (s.vip.includes(':')) {
      if (p.prefixLength < 128) out += ` mask ${p.prefixLength}`;
    } else if (p.prefixLength < 32) {
      const m = p.prefixLength === 0 ? 0 : (0xffffffff << (32 - p.prefixLength)) >>> 0;
      out += ` mask ${[24, 16, 8, 0].map((b) => (m >>> b) & 0xff).join('.')}`;
    }
    // tunvs's own (ipvsadm has one firewall-mark service where tunvs has the group).
    if (p.group !== undefined) out += ` group ${p.group}`;
  }
  if (s.onePacket) out += ' ops';
  if (s.tunnel) {
    const port = s.tunnel.port !== undefined ? ` port ${s.tunnel.port}` : '';
    out += ` tunnel ${s.tunnel.type}${port}${s.tunnel.checksum ? ' csum' : ''}`;
  }
  if (s.idleTimeoutSec !== undefined) out += ` conn-timeout ${s.idleTimeoutSec}`;
  if (s.sloppy) out += ' sloppy';
  if (s.acl?.allow.length) out += ` allow ${s.acl.allow.join(',')}`;
  if (s.acl?.deny.length) out += ` deny ${s.acl.deny.join(',')}`;
  if (s.maxNewPerSec !== undefined) out += ` rate ${s.maxNewPerSec}`;
  return s.quorum === 'lost' ? `${out} quorum lost` : out;
}

/** ipvsadm -Ln style text (Forward: FullNat, Masq, Tunnel, as ipvsadm names the modes);
 * `--stats` totals, or `--rate` per-second rates. */
export function formatList(rows: readonly ServiceRow[], stats: boolean | 'rate'): string {
  const lines: string[] = [];
  lines.push('Prot LocalAddress:Port Scheduler Flags');
  lines.push(
    stats === 'rate'
      ? '  -> RemoteAddress:Port           CPS       InPPS     OutPPS    InBPS        OutBPS'
      : stats
        ? '  -> RemoteAddress:Port           Conns     InPkts    OutPkts   InBytes      OutBytes'
        : '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
  );
  for (const s of rows) {
    lines.push(`${pad(s.protocol, 4)} ${hostPort(s.vip, s.port)} ${s.scheduler}${serviceFlags(s)}`);
    for (const r of s.realServers) {
      const q = r.rate;
      lines.push(
        stats === 'rate' && q
          ? `  -> ${pad(hostPort(r.address, r.port), 28)} ${pad(q.conns, 9)} ${pad(q.inPackets, 9)} ${pad(q.outPackets, 9)} ${pad(q.inBytes, 12)} ${q.outBytes}`
          : stats
            ? `  -> ${pad(hostPort(r.address, r.port), 28)} ${pad(r.conns, 9)} ${pad(r.inPackets, 9)} ${pad(r.outPackets, 9)} ${pad(r.inBytes, 12)} ${r.outBytes}`
            : `  -> ${pad(hostPort(r.address, r.port), 28)} ${pad(MODE_FORWARD_NAMES[s.mode as ModeName] ?? s.mode, 7)} ${pad(r.sorry === 'in use' ? 1 : (r.checkWeight ?? r.weight), 6)} ${pad(r.activeConns, 10)} ${pad(r.inactiveConns, 9)}${r.maxConns !== undefined ? ` cap ${r.maxConns}/${r.minConns!}` : ''}${r.checkWeight !== undefined ? ` weight from check (config ${r.weight})` : ''}${r.sorry ? ` sorry server${r.sorry === 'in use' ? ' (in use: no quorum)' : ''}` : ''}${r.tunnelMtu !== undefined ? ` path mtu ${r.tunnelMtu}` : ''}${r.health === 'down' ? ` DOWN (${r.healthError ?? 'failing'})` : ''}`,
      );
    }
  }
  return lines.join('\n');
}

/**
 * The TUN device's own counters (sysfs of this network namespace). tx_dropped counts
 * packets the kernel could not queue for tunvs to read (a queue of txqueuelen per TUN queue
 * was full: the forwarders fell behind); rx_dropped, packets tunvs wrote that the kernel
 * refused. Neither is visible to the engine, hence here.
 */
export function deviceStats(dev: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['rx_packets', 'tx_packets', 'rx_dropped', 'tx_dropped', 'rx_errors', 'tx_errors']) {
    try {
      out[k] = Number(readFileSync(`/sys/class/net/${dev}/statistics/${k}`, 'utf8'));
    } catch {
      // Not in this namespace's sysfs: leave it out.
    }
  }
  return out;
}

/** Where a full shard's FULLNAT sessions borrow local ports, said only among nodes of unlike
 * worker counts (service/laddr.ts): first from the shards every node gives the same owner. */
function borrowing(h: HaStatus): string {
  const period = ownerPeriod([h.workers, ...h.peers.map((p) => p.workers).filter((w) => w > 0)]);
  if (period === h.workers) return '';
  if (period >= SESSION_SHARDS)
    return '; a full shard borrows ports some peer cannot serve (lport_other_owner): no two shards have one owner on every node';
  return `; a full shard borrows from shards ${period} apart first (one owner on every node)`;
}

/** `tunvs ha status` (and `tunvs cluster status`) as text: the node, then a line per peer. */
export function formatHaStatus(h: HaStatus): string {
  const lag = (ms: number | null): string => (ms === null ? '-' : `${ms} ms`);
  const range = (r: readonly [number, number]): string => (r[0] === r[1] ? `${r[0]}` : `${r[0]}–${r[1]}`);
  const lines = [
    `node          ${h.nodeId} (${h.name}), ${h.mode}, role ${h.role}${h.mode === 'pair' ? ` (${h.roleChanges} change${h.roleChanges === 1 ? '' : 's'} since start)` : ''}`,
    `forwarding    ${h.forwarding ? 'yes' : 'no'}; publishing ${h.publishing ? 'yes' : 'no'}; ready ${h.ready ? 'yes' : 'no'}`,
    `redis         ${h.redis}${h.redisServer ? ` (${h.redisServer})` : ''}`,
    `events        published ${h.published}, applied ${h.applied}, lost ${h.lost}, pending ${h.pending}`,
    `resyncs       ${h.resyncs}; peer snapshots loaded ${h.snapshotsLoaded}; sync lag ${lag(h.syncLagMs)}`,
    `sync format   publishing ${h.syncFormat}, reads ${range(h.syncFormats)}${h.syncFormat < h.syncFormats[1] ? ` (a registered node reads only older ones)` : ''}`,
    `workers       ${h.workers}, sessions in ${h.shards} shards${borrowing(h)}`,
  ];
  if (h.nodeIdConflict)
    lines.push(`NODE ID CONFLICT  another live node has id ${h.nodeId} (${h.nodeIdConflict}): standing down`);
  if (h.lastError) lines.push(`last error    ${h.lastError}`);
  lines.push(`peers         ${h.peers.length === 0 ? 'none yet' : h.peers.length}`);
  const held = (p: HaStatus['peers'][number]): string => {
    if (p.holder === undefined || p.holder === p.id) return '';
    if (p.holder === 0) return '  its addresses: no live node';
    return `  its addresses: ${p.holder === h.nodeId ? 'this node' : `node ${p.holder}`}`;
  };
  // A peer whose shards do not agree with this node's: its sessions are not installed here.
  const workers = (p: HaStatus['peers'][number]): string =>
    p.workers === 0
      ? ''
      : `  workers ${p.workers}${shardsAgree(p.shards, h.workers) ? '' : ` (${p.shards} shards: its sessions cannot be installed here)`}`;
  const key = (p: HaStatus['peers'][number]): string =>
    p.sameIsnKey === false ? '  ANOTHER ISN KEY (isn.secret differs)' : '';
  for (const p of h.peers) {
    lines.push(
      `  ${pad(`${p.id} (${p.name})`, 18)} ${p.alive ? 'alive' : 'gone '}  ${p.publishing ? 'publishing' : 'quiet     '}  ${p.loaded ? 'loaded' : 'loading'}  applied ${p.applied}  lag ${lag(p.syncLagMs)}  formats ${range(p.syncFormats)}${workers(p)}${held(p)}${key(p)}`,
    );
  }
  return lines.join('\n');
}

function cidrText(c: ParsedCidr): string {
  return `${formatAddress(c.af, c.words)}/${c.prefix}`;
}
