/**
 * The `tunvs run` configuration file (YAML): schema, defaults (all in DEFAULTS below) and
 * validation. `loadConfig` either returns a complete, checked config or throws a
 * ConfigError naming the field path, the bad value and what is allowed — nothing is ever
 * half-applied. docs/config.md shows a full example.
 */

import { readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { parse as parseYaml } from 'yaml';
import {
  ADMIN_SOCKET_DEFAULT,
  MTU_DEFAULT,
  NODE_ID_MAX,
  PERSISTENCE_TIMEOUT_DEFAULT_SEC,
  SESSIONS_PER_LB_DEFAULT,
  TIMEOUT_SEC_MAX,
  XDP_INTERFACES_MAX,
  WORKERS_MAX,
} from '../constants.js';
import { parseAddress } from '../service/addr.js';
import { AF_INET } from '../packet/headers.js';
import { TIMEOUTS_DEFAULT_SEC, type TimeoutsSec } from '../conn/state.js';
import { SCHEDULER_NAMES } from '../service/sched/scheduler.js';
import { MODE_NAMES, type ModeName } from '../nat/modes/mode.js';
import {
  serviceWithDefaults,
  SYNPROXY_MODES,
  type SynProxyMode,
  TOA_DEFAULT,
  type PersistenceSpec,
  type ServiceSpec,
  TUNNEL_TYPES,
  type TunnelSpec,
  type TunnelType,
} from '../service/service.js';
import { ConfigError, show } from './errors.js';
import { command, healthCheck } from './health_check.js';
import { boolean, integer, join, list, object, oneOf, opt, string, type Obj } from './validate.js';

export interface TunConfig {
  /** Device name (≤ 15 characters). */
  name: string;
  mtu: number;
  txqueuelen: number;
  /** Attach the steering eBPF program (when false, or when the kernel refuses it, workers
   * hand mis-queued packets to their owner over shared memory: correct, but slower). */
  steering: boolean;
  /** TUN offloads (IFF_VNET_HDR + TUNSETOFFLOAD CSUM/TSO4/TSO6): the kernel hands over
   * partial checksums and 64 KiB GSO super-packets, each rewritten once. */
  offload: boolean;
}

/** The packet I/O of the forwarders (docs/xdp.md):
 *   tun  the kernel routes VIP and local-address packets into the TUN device, and routes them
 *        on after tunvs writes them back (the default: works everywhere);
 *   xdp  an XDP program on `xdp.interfaces` hands those frames to AF_XDP sockets and tunvs sends
 *        them out itself; the TUN device stays for what the kernel still routes there. */
export type IoMode = 'tun' | 'xdp';

export interface XdpConfig {
  /** The interfaces the VIP and local-address traffic arrives and leaves on. */
  interfaces: string[];
  /** native: the driver runs the program (veth and most server NICs have it); generic: the
   * kernel runs it on socket buffers (any interface, slower). */
  mode: 'native' | 'generic';
  /** Bind the sockets in zero-copy mode (a NIC driver with AF_XDP zero-copy); otherwise copy. */
  zeroCopy: boolean;
}

/** How HA nodes share work (docs/cluster.md):
 *   pair     two nodes, keepalived decides which one forwards (and publishes its sessions);
 *   cluster  every node forwards and publishes, routers spread flows over them (ECMP). */
export type HaMode = 'pair' | 'cluster';

export const ROUTE_HEALTH_RULES = ['off', 'any', 'all'] as const;
export type RouteHealth = (typeof ROUTE_HEALTH_RULES)[number];

/** Where the nodes meet: one Redis server, or the primary that Redis Sentinel names. */
export type HaRedis = { url: string } | { sentinel: { name: string; addresses: { host: string; port: number }[] } };

/** An HA pair or cluster: session sync through Redis (absent: a single LB, always active). */
export interface HaConfig {
  mode: HaMode;
  /** This node's id, 1..NODE_ID_MAX, different on every node: it names the sessions the
   * node owns (its Redis keys, and the owner in every record it publishes). */
  nodeId: number;
  /** A name for people (status, logs); the host name by default. */
  name: string;
  redis: HaRedis;
  /** Name of the pair or cluster: keys are tunvs:<cluster>:... (several can share a Redis). */
  cluster: string;
  /** Publish a TCP session once it is ESTABLISHED and has lived this long (DPVS: ~2 s);
   * shorter connections are not worth syncing. */
  syncAfterMs: number;
  /** Republish a busy session this often (fresh seq/ack; the peers' timers restart). */
  refreshSec: number;
  /** Cluster: on an orderly stop, withdraw the announcements and keep forwarding this long,
   * so the routers move the flows to the other nodes (which have their sessions) first. */
  drainMs: number;
  /** Cluster: route health injection (docs/cluster.md). off: a ready node announces every
   * VIP; any: a VIP only while at least one of its services can serve (has its quorum, or
   * a sorry server); all: only while every one of them can. */
  routeHealth: RouteHealth;
  /** Pair: role until keepalived's notify says otherwise. */
  initialRole: 'master' | 'backup';
  /** Pair: keepalived's vrrp_notify_fifo: tunvs reads the role from it directly (no process
   * to spawn per transition, so the new master forwards sooner). Optional: `tunvs role ...`
   * from notify scripts works as well. */
  notifyFifo?: string;
}

export interface Config {
  io: IoMode;
  /** Present when io is xdp. */
  xdp?: XdpConfig;
  tun: TunConfig;
  /** Forwarder threads, one per TUN queue. */
  workers: number;
  /** Nice value of the forwarder threads and the main thread (keepalived's check, HA sync):
   * below 0 they run ahead of ordinary processes. */
  workerNice: number;
  /** Session capacity of this LB, split over the workers. */
  sessions: number;
  rstOnExpire: boolean;
  timeouts: TimeoutsSec;
  /** Key of the ISNs tunvs gives real servers (control/isn_secret.ts): inline, or a file
   * created with a random key when missing. */
  isn: { secret: string } | { secretFile: string };
  /** Admin API unix socket (mode 0600). */
  adminSocket: string;
  /** Optional admin API over TCP: only with a token; loopback unless configured otherwise. */
  adminTcp?: { host: string; port: number; token: string };
  services: ServiceSpec[];
  ha?: HaConfig;
  /** Prometheus /metrics listener (absent: none). */
  metrics?: { host: string; port: number };
}

export const DEFAULTS = {
  tunName: 'tunvs0',
  mtu: MTU_DEFAULT,
  /** Deep enough for a burst per queue several times over; the kernel default is 500. */
  txqueuelen: 10000,
  workers: (): number => Math.min(availableParallelism(), WORKERS_MAX),
  sessions: SESSIONS_PER_LB_DEFAULT,
  rstOnExpire: false,
  offload: true,
  /** Ahead of ordinary processes, behind the kernel's own threads (which run at −20). */
  workerNice: -10,
  adminSocket: ADMIN_SOCKET_DEFAULT,
  isnSecretFile: '/var/lib/tunvs/isn-secret',
} as const;

const TOP = [
  'io',
  'xdp',
  'tun',
  'workers',
  'workerNice',
  'sessions',
  'rstOnExpire',
  'timeouts',
  'isn',
  'admin',
  'services',
  'ha',
  'metrics',
] as const;

/** isn: { secret } or { secretFile } (default: the file DEFAULTS.isnSecretFile). */
function isnConfig(v: unknown, path: string): Config['isn'] {
  const o = object(v ?? {}, path, ['secret', 'secretFile']);
  if (o.secret !== undefined && o.secretFile !== undefined) {
    throw new ConfigError('TUNVS_ERR_CONFIG_DUPLICATE', path, 'give secret or secretFile, not both');
  }
  if (o.secret !== undefined) {
    const secret = string(o.secret, join(path, 'secret'));
    if (secret.length < 16) {
      throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', join(path, 'secret'), 'too short: use at least 16 characters');
    }
    return { secret };
  }
  return {
    secretFile: opt(o, 'secretFile', DEFAULTS.isnSecretFile, (x) =>
      string(x, join(path, 'secretFile'), /^\//, 'an absolute path'),
    ),
  };
}

/** admin.tcp: { listen, token | tokenFile }; a token of at least 16 characters is required. */
function adminTcp(v: unknown, path: string): { host: string; port: number; token: string } {
  const o = object(v, path, ['listen', 'token', 'tokenFile']);
  const where = listenAddress(o.listen, join(path, 'listen'));
  let token: string | undefined;
  if (o.token !== undefined) token = string(o.token, join(path, 'token'));
  else if (o.tokenFile !== undefined) {
    const f = string(o.tokenFile, join(path, 'tokenFile'), /^\//, 'an absolute path');
    try {
      token = readFileSync(f, 'utf8').trim();
    } catch (e) {
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MISSING',
        join(path, 'tokenFile'),
        `cannot read ${f}: ${(e as Error).message}`,
      );
    }
  }
  if (token === undefined || token.length < 16)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      join(path, 'token'),
      'the TCP admin listener needs a token (token or tokenFile) of at least 16 characters',
    );
  return { ...where, token };
}

/** metrics.listen: "port", "host:port" or "[v6]:port"; the host defaults to loopback. */
function metricsConfig(v: unknown, path: string): { host: string; port: number } {
  const o = object(v, path, ['listen']);
  return listenAddress(o.listen, join(path, 'listen'));
}

function listenAddress(v: unknown, path: string): { host: string; port: number } {
  const text = typeof v === 'number' || typeof v === 'string' ? String(v) : '';
  const m = /^(?:\[([0-9a-fA-F:.]+)\]:|([0-9.]+|localhost):)?(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      `${JSON.stringify(v)} is not a listen address: use "9100", "127.0.0.1:9100" or "[::1]:9100"`,
    );
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

export const HA_DEFAULTS = {
  mode: 'pair',
  cluster: 'default',
  syncAfterMs: 2000,
  refreshSec: 30,
  drainMs: 2000,
  routeHealth: 'off',
  initialRole: 'backup',
} as const;

const HA_KEYS = [
  'mode',
  'nodeId',
  'name',
  'redis',
  'sentinel',
  'cluster',
  'syncAfterMs',
  'refreshSec',
  'drainMs',
  'routeHealth',
  'initialRole',
  'notifyFifo',
];

function haConfig(v: unknown, path: string): HaConfig {
  const o = object(v, path, HA_KEYS);
  const mode = opt(o, 'mode', HA_DEFAULTS.mode, (x) => oneOf(x, join(path, 'mode'), ['pair', 'cluster'] as const));
  if (o.nodeId === undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      join(path, 'nodeId'),
      `give every node of the ${mode} an id of its own, 1..${NODE_ID_MAX} (it names the sessions the node owns in Redis)`,
    );
  if (mode === 'pair' && o.drainMs !== undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_UNKNOWN',
      join(path, 'drainMs'),
      'drainMs is for mode: cluster (in a pair, keepalived moves the traffic)',
    );
  if (mode === 'pair' && o.routeHealth !== undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_UNKNOWN',
      join(path, 'routeHealth'),
      "routeHealth is for mode: cluster (in a pair, keepalived's VRRP holds the VIPs: a quorumDown command or a vrrp track_script moves them)",
    );
  if (mode === 'cluster') {
    for (const k of ['initialRole', 'notifyFifo'])
      if (o[k] !== undefined)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_UNKNOWN',
          join(path, k),
          'a cluster node has no VRRP role: every node forwards (use mode: pair for keepalived)',
        );
  }
  return {
    mode,
    nodeId: integer(o.nodeId, join(path, 'nodeId'), 1, NODE_ID_MAX, 'a node id'),
    name: opt(o, 'name', hostname(), (x) =>
      string(x, join(path, 'name'), /^[A-Za-z0-9_.-]{1,64}$/, 'a name of letters, digits, _ . -'),
    ),
    redis: haRedis(o, path),
    cluster: opt(o, 'cluster', HA_DEFAULTS.cluster, (x) =>
      string(x, join(path, 'cluster'), /^[A-Za-z0-9_.-]{1,64}$/, 'a name of letters, digits, _ . -'),
    ),
    syncAfterMs: opt(o, 'syncAfterMs', HA_DEFAULTS.syncAfterMs, (x) =>
      integer(x, join(path, 'syncAfterMs'), 0, 600_000, 'milliseconds'),
    ),
    refreshSec: opt(o, 'refreshSec', HA_DEFAULTS.refreshSec, (x) =>
      integer(x, join(path, 'refreshSec'), 1, 3600, 'seconds'),
    ),
    drainMs: opt(o, 'drainMs', HA_DEFAULTS.drainMs, (x) =>
      integer(x, join(path, 'drainMs'), 0, 600_000, 'milliseconds'),
    ),
    routeHealth: opt(o, 'routeHealth', HA_DEFAULTS.routeHealth, (x) =>
      oneOf(x, join(path, 'routeHealth'), ROUTE_HEALTH_RULES),
    ),
    initialRole: opt(o, 'initialRole', HA_DEFAULTS.initialRole, (x) =>
      oneOf(x, join(path, 'initialRole'), ['master', 'backup'] as const),
    ),
    ...(o.notifyFifo !== undefined
      ? { notifyFifo: string(o.notifyFifo, join(path, 'notifyFifo'), /^\//, 'an absolute path') }
      : {}),
  };
}

/** ha.redis (one server) or ha.sentinel (the primary Sentinel names), exactly one. */
function haRedis(o: Obj, path: string): HaRedis {
  if ((o.redis === undefined) === (o.sentinel === undefined))
    throw new ConfigError(
      o.redis === undefined ? 'TUNVS_ERR_CONFIG_MISSING' : 'TUNVS_ERR_CONFIG_DUPLICATE',
      join(path, 'redis'),
      'ha needs one of redis: redis://host:port or sentinel: { name, addresses: [host:port, ...] }',
    );
  if (o.redis !== undefined)
    return {
      url: string(o.redis, join(path, 'redis'), /^rediss?:\/\/[^\s/]+(\/\d+)?$/, 'a redis://host:port[/db] URL'),
    };
  const sp = join(path, 'sentinel');
  const s = object(o.sentinel, sp, ['name', 'addresses']);
  const name = string(s.name, join(sp, 'name'), /^[A-Za-z0-9_.-]{1,64}$/, "the primary's name in Sentinel");
  const addresses = list(s.addresses, join(sp, 'addresses'), 'host:port').map((a, i) => {
    const at = `${join(sp, 'addresses')}[${i}]`;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(typeof a === 'string' ? a : '');
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_TYPE',
        at,
        `${JSON.stringify(a)} is not host:port (e.g. "198.18.20.31:26379")`,
      );
    return { host: m[1] ?? m[2]!, port };
  });
  if (addresses.length === 0)
    throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', join(sp, 'addresses'), 'name at least one Sentinel');
  return { sentinel: { name, addresses } };
}

const TIMEOUT_KEYS = Object.keys(TIMEOUTS_DEFAULT_SEC) as (keyof TimeoutsSec)[];

function tunConfig(v: unknown, path: string): TunConfig {
  const o = object(v ?? {}, path, ['name', 'mtu', 'txqueuelen', 'steering', 'offload']);
  return {
    name: opt(o, 'name', DEFAULTS.tunName, (x) =>
      string(x, join(path, 'name'), /^[A-Za-z0-9_.-]{1,15}$/, 'an interface name of 1..15 letters, digits, _ . -'),
    ),
    mtu: opt(o, 'mtu', DEFAULTS.mtu, (x) => integer(x, join(path, 'mtu'), 1280, 2000, 'an MTU')),
    txqueuelen: opt(o, 'txqueuelen', DEFAULTS.txqueuelen, (x) => integer(x, join(path, 'txqueuelen'), 1, 1_000_000)),
    steering: opt(o, 'steering', true, (x) => boolean(x, join(path, 'steering'))),
    offload: opt(o, 'offload', DEFAULTS.offload, (x) => boolean(x, join(path, 'offload'))),
  };
}

function xdpConfig(v: unknown, path: string): XdpConfig {
  const o = object(v ?? {}, path, ['interfaces', 'mode', 'zeroCopy']);
  if (o.interfaces === undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      join(path, 'interfaces'),
      'io: xdp needs the interfaces to attach to',
    );
  const names = list(o.interfaces, join(path, 'interfaces'), 'interface names').map((x, i) =>
    string(x, `${join(path, 'interfaces')}[${i}]`, /^[A-Za-z0-9_.-]{1,15}$/, 'an interface name'),
  );
  if (names.length === 0 || names.length > XDP_INTERFACES_MAX)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      join(path, 'interfaces'),
      `name 1..${XDP_INTERFACES_MAX} interfaces (got ${names.length})`,
    );
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined)
    throw new ConfigError('TUNVS_ERR_CONFIG_DUPLICATE', join(path, 'interfaces'), `${dup} is named twice`);
  return {
    interfaces: names,
    mode: opt(o, 'mode', 'native', (x) => oneOf(x, join(path, 'mode'), ['native', 'generic'] as const)),
    zeroCopy: opt(o, 'zeroCopy', false, (x) => boolean(x, join(path, 'zeroCopy'))),
  };
}

function timeouts(v: unknown, path: string): TimeoutsSec {
  const o = object(v ?? {}, path, TIMEOUT_KEYS);
  const t = { ...TIMEOUTS_DEFAULT_SEC };
  for (const k of TIMEOUT_KEYS) {
    if (o[k] !== undefined) t[k] = integer(o[k], join(path, k), 1, TIMEOUT_SEC_MAX, 'whole seconds');
  }
  return t;
}

const SERVICE_KEYS = [
  'name',
  'protocol',
  'vip',
  'port',
  'scheduler',
  'realServers',
  'mode',
  'localAddresses',
  'toa',
  'stripTimestamps',
  'translateTimestamps',
  'synProxy',
  'maglevTableSize',
  'sloppy',
  'hashPort',
  'hashFallback',
  'onePacket',
  'tunnel',
  'healthCheck',
  'acl',
  'maxNewPerSec',
  'idleTimeout',
  'persistence',
  'sorryServer',
  'quorum',
  'hysteresis',
  'quorumUp',
  'quorumDown',
] as const;

/** A TUNNEL service's encapsulation (checked against its mode with the service). */
function tunnel(v: unknown, path: string): TunnelSpec {
  const o = object(v, path, ['type', 'checksum', 'port']);
  return {
    type: opt<TunnelType>(o, 'type', 'ipip', (x) => oneOf(x, join(path, 'type'), TUNNEL_TYPES)),
    ...(o.checksum !== undefined ? { checksum: boolean(o.checksum, join(path, 'checksum')) } : {}),
    ...(o.port !== undefined ? { port: integer(o.port, join(path, 'port'), 1, 65535, 'a UDP port') } : {}),
  };
}

/** One service entry (also what `tunvs service add` sends), validated. */

export function parseService(v: unknown, path: string): ServiceSpec {
  const o = object(v, path, SERVICE_KEYS);
  for (const k of ['vip', 'port', 'realServers'] as const) {
    if (o[k] === undefined)
      throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', join(path, k), 'required field is missing');
  }
  const toa = object(o.toa ?? {}, join(path, 'toa'), ['enabled', 'kind', 'kindV6', 'inSyn']);
  const kind = opt(toa, 'kind', TOA_DEFAULT.kind, (x) => x as number);
  const rs = list(o.realServers, join(path, 'realServers'), 'real servers').map((r, i) => {
    const p = `${join(path, 'realServers')}[${i}]`;
    const ro = object(r, p, ['address', 'port', 'weight', 'maxConns', 'minConns']);
    if (ro.address === undefined || ro.port === undefined)
      throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', p, 'a real server needs address and port');
    // Values are checked with the service (service.ts resolveServices), also for runtime edits.
    return {
      address: ro.address as string,
      port: ro.port as number,
      weight: opt(ro, 'weight', 1, (x) => x as number),
      ...(ro.maxConns !== undefined ? { maxConns: ro.maxConns as number } : {}),
      ...(ro.minConns !== undefined ? { minConns: ro.minConns as number } : {}),
    };
  });
  if (o.protocol === 'udp' && o.synProxy !== undefined && o.synProxy !== 'off')
    throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', join(path, 'synProxy'), 'the SYN proxy is for TCP services only');
  const mode = opt<ModeName>(o, 'mode', 'fullnat', (x) => oneOf(x, join(path, 'mode'), MODE_NAMES));
  return serviceWithDefaults({
    mode,
    name: opt(o, 'name', undefined as string | undefined, (x) => string(x, join(path, 'name'))),
    protocol: opt(o, 'protocol', 'tcp' as const, (x) => oneOf(x, join(path, 'protocol'), ['tcp', 'udp'] as const)),
    vip: o.vip as string,
    port: o.port as number,
    scheduler: opt(o, 'scheduler', 'wrr' as const, (x) => oneOf(x, join(path, 'scheduler'), SCHEDULER_NAMES)),
    realServers: rs,
    localAddresses: list(o.localAddresses ?? [], join(path, 'localAddresses'), 'addresses') as string[],
    toa: {
      enabled: opt(toa, 'enabled', mode === 'fullnat', (x) => boolean(x, join(path, 'toa.enabled'))),
      kind,
      kindV6: opt(toa, 'kindV6', kind, (x) => x as number),
      inSyn: opt(toa, 'inSyn', TOA_DEFAULT.inSyn, (x) => boolean(x, join(path, 'toa.inSyn'))),
    },
    stripTimestamps: opt(o, 'stripTimestamps', false, (x) => boolean(x, join(path, 'stripTimestamps'))),
    // Unset, these take the mode's defaults (serviceWithDefaults).
    ...(o.translateTimestamps !== undefined
      ? { translateTimestamps: boolean(o.translateTimestamps, join(path, 'translateTimestamps')) }
      : {}),
    ...(o.synProxy !== undefined
      ? { synProxy: oneOf<SynProxyMode>(o.synProxy, join(path, 'synProxy'), SYNPROXY_MODES) }
      : {}),
    ...(o.maglevTableSize !== undefined ? { maglevTableSize: o.maglevTableSize as number } : {}),
    sloppy: opt(o, 'sloppy', false, (x) => boolean(x, join(path, 'sloppy'))),
    hashPort: opt(o, 'hashPort', false, (x) => boolean(x, join(path, 'hashPort'))),
    hashFallback: opt(o, 'hashFallback', false, (x) => boolean(x, join(path, 'hashFallback'))),
    onePacket: opt(o, 'onePacket', false, (x) => boolean(x, join(path, 'onePacket'))),
    ...(o.tunnel !== undefined ? { tunnel: tunnel(o.tunnel, join(path, 'tunnel')) } : {}),
    ...(o.healthCheck !== undefined ? { healthCheck: healthCheck(o.healthCheck, join(path, 'healthCheck')) } : {}),
    ...(o.acl !== undefined ? { acl: acl(o.acl, join(path, 'acl')) } : {}),
    ...(o.maxNewPerSec !== undefined
      ? { maxNewPerSec: integer(o.maxNewPerSec, join(path, 'maxNewPerSec'), 1, 100_000_000, 'sessions per second') }
      : {}),
    ...(o.persistence !== undefined ? { persistence: persistence(o.persistence, join(path, 'persistence')) } : {}),
    ...(o.idleTimeout !== undefined
      ? { idleTimeout: integer(o.idleTimeout, join(path, 'idleTimeout'), 1, TIMEOUT_SEC_MAX, 'whole seconds') }
      : {}),
    ...(o.sorryServer !== undefined ? { sorryServer: sorryServer(o.sorryServer, join(path, 'sorryServer')) } : {}),
    // Values are checked with the service (service.ts resolveServices), as the real servers'.
    ...(o.quorum !== undefined ? { quorum: o.quorum as number } : {}),
    ...(o.hysteresis !== undefined ? { hysteresis: o.hysteresis as number } : {}),
    ...(o.quorumUp !== undefined ? { quorumUp: command(o.quorumUp, join(path, 'quorumUp')) } : {}),
    ...(o.quorumDown !== undefined ? { quorumDown: command(o.quorumDown, join(path, 'quorumDown')) } : {}),
  });
}

/** sorryServer: { address, port } (checked with the service, as a real server). */
function sorryServer(v: unknown, path: string): { address: string; port: number } {
  const o = object(v, path, ['address', 'port']);
  if (o.address === undefined || o.port === undefined)
    throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', path, 'a sorry server needs address and port');
  return { address: o.address as string, port: o.port as number };
}

/** persistence: { timeoutSec, netmask (prefix length or a.b.c.d), prefix6 } (ipvsadm -p, -M). */
function persistence(v: unknown, path: string): PersistenceSpec {
  const o = object(v ?? {}, path, ['timeoutSec', 'netmask', 'prefix6', 'group']);
  let netmask = 32;
  if (typeof o.netmask === 'string') {
    const a = parseAddress(o.netmask);
    const m = a?.af === AF_INET ? a.words[0]! >>> 0 : 1;
    let len = 0;
    while (len < 32 && (m & (0x80000000 >>> len)) !== 0) len++;
    if (m !== (len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_ADDRESS',
        join(path, 'netmask'),
        `${show(o.netmask)} is not a netmask: use a prefix length (24) or a.b.c.d with contiguous ones (255.255.255.0)`,
      );
    netmask = len;
  } else if (o.netmask !== undefined) {
    netmask = integer(o.netmask, join(path, 'netmask'), 0, 32, 'an IPv4 prefix length');
  }
  return {
    timeoutSec: opt(o, 'timeoutSec', PERSISTENCE_TIMEOUT_DEFAULT_SEC, (x) =>
      integer(x, join(path, 'timeoutSec'), 1, 86400 * 7, 'seconds'),
    ),
    netmask,
    prefix6: opt(o, 'prefix6', 128, (x) => integer(x, join(path, 'prefix6'), 0, 128, 'an IPv6 prefix length')),
    ...(o.group !== undefined
      ? {
          group: string(
            o.group,
            join(path, 'group'),
            /^[A-Za-z0-9_.:-]{1,64}$/,
            'a group name (1-64 of A-Z a-z 0-9 _ . : -)',
          ),
        }
      : {}),
  };
}

/** acl: { allow: [CIDR...], deny: [CIDR...] } (prefixes are checked in resolveServices). */
function acl(v: unknown, path: string): { allow: string[]; deny: string[] } {
  const o = object(v, path, ['allow', 'deny']);
  const cidrList = (x: unknown, p: string): string[] =>
    list(x ?? [], p, 'prefixes').map((c, i) => string(c, `${p}[${i}]`));
  return { allow: cidrList(o.allow, join(path, 'allow')), deny: cidrList(o.deny, join(path, 'deny')) };
}

/** Validate a parsed config document. Address, port, weight and kind checks that need the
 * whole service happen in resolveServices (same error class and path style). */
export function parseConfig(doc: unknown): Config {
  const o: Obj = object(doc ?? {}, '', TOP);
  const admin = object(o.admin ?? {}, 'admin', ['socket', 'tcp']);
  const services = list(o.services ?? [], 'services', 'services').map((s, i) => parseService(s, `services[${i}]`));
  const io = opt(o, 'io', 'tun', (x) => oneOf(x, 'io', ['tun', 'xdp'] as const));
  const tun = tunConfig(o.tun, 'tun');
  // With io: xdp the TUN only carries what the kernel still routes there (and what the AF_XDP
  // queues hand it to send): plain packets, so its offloads are off.
  if (io === 'xdp') tun.offload = false;
  return {
    io,
    ...(io === 'xdp' || o.xdp !== undefined ? { xdp: xdpConfig(o.xdp, 'xdp') } : {}),
    tun,
    workers: opt(o, 'workers', DEFAULTS.workers(), (x) => integer(x, 'workers', 1, WORKERS_MAX, 'a thread count')),
    workerNice: opt(o, 'workerNice', DEFAULTS.workerNice, (x) => integer(x, 'workerNice', -20, 19, 'a nice value')),
    sessions: opt(o, 'sessions', DEFAULTS.sessions, (x) => integer(x, 'sessions', 1024, 1 << 28, 'a session count')),
    rstOnExpire: opt(o, 'rstOnExpire', DEFAULTS.rstOnExpire, (x) => boolean(x, 'rstOnExpire')),
    timeouts: timeouts(o.timeouts, 'timeouts'),
    isn: isnConfig(o.isn, 'isn'),
    adminSocket: opt(admin, 'socket', DEFAULTS.adminSocket, (x) =>
      string(x, 'admin.socket', /^\//, 'an absolute path'),
    ),
    services,
    ...(o.ha !== undefined ? { ha: haConfig(o.ha, 'ha') } : {}),
    ...(admin.tcp !== undefined ? { adminTcp: adminTcp(admin.tcp, 'admin.tcp') } : {}),
    ...(o.metrics !== undefined ? { metrics: metricsConfig(o.metrics, 'metrics') } : {}),
  };
}

/** Read and validate a YAML config file. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', file, `cannot read the config file: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', file, `not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  return parseConfig(doc);
}
