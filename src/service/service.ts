/**
 * Virtual services: what the operator configures (`ServiceSpec`), the validated form with
 * stable ids that the main thread sends to workers (`ResolvedService`), and the per-worker
 * `ServiceTable` the data plane reads per packet.
 *
 * Ids: a service keeps its id for its (protocol, VIP, port) and a real server for its
 * (service, address, port) across reloads, so sessions (which store the ids) and counters
 * (indexed by id) stay right when the config changes under them. Ids are never reused
 * within a process: a removed service stays as a tombstone its old sessions can still use.
 */

import {
  ALL_PORTS,
  CONNS_CAP_MAX,
  LADDRS_PER_SERVICE_MAX,
  MAGLEV_TABLE_SIZE_DEFAULT,
  MAGLEV_TABLE_SIZE_MAX,
  PERSIST_GROUPS_MAX,
  REAL_SERVERS_MAX,
  SERVICES_MAX,
  TIMEOUT_SEC_MAX,
} from '../constants.js';
import { DROP_ACL_DENIED, DROP_RATE_LIMITED } from '../nat/verdict.js';
import { ConfigError, show } from '../config/errors.js';
import { AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP } from '../packet/headers.js';
import { metaKey } from '../conn/layout.js';
import { parseAddress, parseCidr, type ParsedAddress, type ParsedCidr } from './addr.js';
import { PrefixSet } from './prefix_set.js';
import { AddrPortMap } from './addr_map.js';
import { LocalAddressPool, PortCursors } from './laddr.js';
import { isPrime } from './sched/maglev.js';
import { MODE_NAT, MODE_NAMES, type ModeName } from '../nat/modes/mode.js';
import {
  createScheduler,
  SCHEDULER_NAMES,
  type Scheduler,
  type SchedulerName,
  type SchedulerOptions,
  type ServerPool,
} from './sched/index.js';

export type Protocol = 'tcp' | 'udp';

export const TUNNEL_TYPES = ['ipip', 'gre', 'gue'] as const;
export type TunnelType = (typeof TUNNEL_TYPES)[number];

export interface TunnelSpec {
  type: TunnelType;
  /** GRE: the GRE checksum over the GRE header and the inner packet. GUE: the UDP checksum
   * of IPv4 packets (IPv6 always has one). */
  checksum?: boolean;
  /** GUE only, and required there: the UDP port the real servers' fou (or tunvs rs decap
   * --gue-port) listens on (IPVS's --tun-port). */
  port?: number;
}

/** A TUNNEL service's encapsulation past IP-in-IP, as checked (absent: IP-in-IP). */
export interface ResolvedTunnel {
  type: 'gre' | 'gue';
  checksum: boolean;
  /** GUE's UDP destination port; 0 for GRE. */
  port: number;
}

/** The outer UDP header and the GUE header (draft-ietf-intarea-gue, version 0, no
 * extension fields). */
export const GUE_HEADERS_LEN = 8 + 4;

/** What a service's tunnel adds to the outer IP header (ServiceTable.tunnelHeader): nothing
 * for IP-in-IP, a GRE header (4, 8 with its checksum), or UDP and GUE headers. */
export function tunnelHeaderLength(t: ResolvedTunnel | undefined): number {
  if (t === undefined) return 0;
  if (t.type === 'gue') return GUE_HEADERS_LEN;
  return t.checksum ? 8 : 4;
}

/** The checked spec's encapsulation past IP-in-IP (undefined: IP-in-IP or no tunnel). */
function resolveTunnel(t: TunnelSpec | undefined): ResolvedTunnel | undefined {
  if (t === undefined || t.type === 'ipip') return undefined;
  return { type: t.type, checksum: t.checksum === true, port: t.type === 'gue' ? t.port! : 0 };
}

export interface RealServerSpec {
  address: string;
  port: number;
  /** 0 drains the server: no new sessions, existing ones continue. */
  weight: number;
  /** Session cap (ipvsadm -x, keepalived uthreshold): at this many sessions the server takes
   * no new ones until they fall under `minConns` (-y; default three quarters of the cap). */
  maxConns?: number;
  minConns?: number;
}

export interface ToaSpec {
  /** Insert the client address as a TCP option toward the real servers. */
  enabled: boolean;
  /** Option kind for IPv4 clients (length 8). 254 is what Huawei/DPVS/Alibaba readers expect. */
  kind: number;
  /** Option kind for IPv6 clients (length 20). DPVS uses 254, Alibaba's v2 used 253. */
  kindV6: number;
  /** Also put TOA in the SYN, for readers that use TCP_SAVED_SYN. */
  inSyn: boolean;
}

export interface ServiceSpec {
  name: string;
  protocol: Protocol;
  vip: string;
  port: number;
  scheduler: SchedulerName;
  realServers: RealServerSpec[];
  /** Forwarding mode (nat/modes/): fullnat (default), nat, tunnel. */
  mode: ModeName;
  /** Local addresses (same family as the VIP): FULLNAT's replacements of the client
   * address; TUNNEL's outer source (the first); NAT has none. */
  localAddresses: string[];
  toa: ToaSpec;
  /** Replace the TCP timestamp option of client SYNs with NOPs: clients behind one local
   * address then never trip the real server's PAWS check with unrelated timestamps. */
  stripTimestamps: boolean;
  /** Translate TCP timestamps toward the real servers (nat/timestamps.ts): the server sees
   * the LB's clock per tuple, so reused tuples never trip PAWS. */
  translateTimestamps: boolean;
  /** SYN proxy (nat/synproxy.ts): the LB answers SYNs with cookies and opens the connection
   * to the real server only for clients that complete the handshake. auto: per worker, when
   * half-open sessions pile up (a SYN flood), until the flood stops. */
  synProxy: SynProxyMode;
  /** Maglev table size for scheduler mh (prime). */
  maglevTableSize: number;
  /** Sloppy TCP (IPVS's sloppy_tcp), NAT, TUNNEL and DR with sh or mh only: a client packet
   * in the middle of a connection this LB has no session for (another node had it, or this
   * one restarted) makes one, to the server the scheduler picks from the client address,
   * the one the connection's SYN was sent to. Off: it is dropped (no_session). */
  sloppy: boolean;
  /** sh and mh: hash the client's port with its address (IPVS's sh-port, mh-port), so the
   * connections of one address (many clients behind one NAT) spread over the servers. */
  hashPort?: boolean;
  /** sh and mh: a client whose server cannot take a new session (at its session cap) gets
   * another one, by a second hash, rather than none (IPVS's sh-fallback, mh-fallback). A
   * server at weight 0 or down has no share of the table anyway. */
  hashFallback?: boolean;
  /** UDP only: one-packet scheduling (ipvsadm -o, keepalived's ops). Each datagram is
   * scheduled on its own, so one client socket's datagrams (a resolver's queries, a syslog
   * or statsd sender's stream) spread over the servers instead of following one session.
   * TUNNEL and DR keep no session; FULLNAT keeps one per datagram for the server's reply,
   * found only by that reply, which ends it (or idleTimeout, default ONE_PACKET_REPLY_SEC,
   * without one); NAT one per client socket and server (its reply mapping is the client's
   * own port), kept while datagrams or replies pass within that wait. */
  onePacket?: boolean;
  /** TUNNEL: the encapsulation (IPVS's --tun-type, keepalived's `lvs_method TUN type`):
   * IP-in-IP, the default; GRE (RFC 2784: 4 bytes more, the GRE checksum 4 more with
   * `checksum`, IPVS's --tun-csum), for real servers whose path or kernel takes GRE; or GUE
   * (UDP to `port` and a 4-byte GUE header: 12 bytes more), whose UDP source port follows the
   * flow, so the servers' NICs spread the tunnel's flows over their queues. */
  tunnel?: TunnelSpec;
  /** Absent: every real server is taken as up. */
  healthCheck?: HealthCheckSpec;
  /** Client ACL, checked on the first packet of a session: with `allow`, only those clients;
   * `deny` wins over `allow`. CIDRs of the service's family. */
  acl?: { allow: string[]; deny: string[] };
  /** New sessions per second the service accepts (SYN-flood guard); absent: no cap. */
  maxNewPerSec?: number;
  /** Seconds an idle session of this service is kept while ESTABLISHED (TCP) or as a UDP
   * flow (DPVS's per-service conn-timeout); absent: timeouts.established / timeouts.udp. */
  idleTimeout?: number;
  /** Persistence (ipvsadm -p): a client's new connections go to the real server its earlier
   * ones went to, while it has any and `timeoutSec` after the last; clients are grouped by
   * the IPv4 prefix length `netmask` (ipvsadm -M) or the IPv6 `prefix6`. Absent: none. */
  persistence?: PersistenceSpec;
  /** keepalived's sorry_server: while the service has lost its quorum (the weights of its
   * real servers that are up sum to less than `quorum`), its new sessions go here, and none
   * to the servers still up; established ones go on. Absent: none. */
  sorryServer?: { address: string; port: number };
  /** keepalived's quorum and hysteresis (1 and 0): quorum is lost under quorum − hysteresis
   * (or at 0) and regained at quorum + hysteresis. Read with a sorryServer, quorumUp or
   * quorumDown, and by a cluster's route health (config/check.ts warns when nothing reads them). */
  quorum?: number;
  hysteresis?: number;
  /** keepalived's quorum_up / quorum_down: a command (program by absolute path, then its
   * arguments; no shell) run when the service regains / loses its quorum, and quorumDown also
   * when it starts without it (control/health.ts). Absent: none. */
  quorumUp?: string[];
  quorumDown?: string[];
}

export interface PersistenceSpec {
  timeoutSec: number;
  /** IPv4 prefix length 0..32 (32: per client address). */
  netmask: number;
  /** IPv6 prefix length 0..128 (128: per client address). */
  prefix6: number;
  /** Services of one group share their templates: a client's connections to any of them go
   * to one server address (LVS's persistent firewall-mark service over several VIP:ports). */
  group?: string;
}

export const SYNPROXY_MODES = ['off', 'on', 'auto'] as const;
export type SynProxyMode = (typeof SYNPROXY_MODES)[number];
/** ServiceTable.synProxy values, by SYNPROXY_MODES index. */
export const SYNPROXY_OFF = 0;
export const SYNPROXY_ON = 1;
export const SYNPROXY_AUTO = 2;

export const TOA_DEFAULT: Readonly<ToaSpec> = { enabled: true, kind: 254, kindV6: 254, inSyn: false };

/** What a health check does (control/checks/, a file each). */
export const HEALTH_CHECK_TYPES = ['tcp', 'http', 'https', 'udp', 'dns', 'smtp', 'exec'] as const;
export type HealthCheckType = (typeof HEALTH_CHECK_TYPES)[number];
/** Query types a dns check may ask (keepalived's DNS_CHECK list). */
export const DNS_QUERY_TYPES = ['A', 'NS', 'CNAME', 'SOA', 'MX', 'TXT', 'AAAA'] as const;
export type DnsQueryType = (typeof DNS_QUERY_TYPES)[number];

/** Health check of every real server of a service, run from the LB (control/health.ts). The
 * fields after `resetOnDown` belong to one type each (config/health_check.ts refuses them on
 * another). */
export interface HealthCheckSpec {
  /** tcp: a connect. http: GET `path`, expecting `expectStatus` (and the body checks below).
   * https: the same over TLS, the certificate not verified (keepalived's SSL_GET). udp: a
   * datagram (`payload`), failing on an ICMP unreachable or a wrong reply. dns: a query,
   * expecting an answer without error. smtp: the greeting, HELO and QUIT. exec: a command,
   * passing when it exits 0 (keepalived's MISC_CHECK). */
  type: HealthCheckType;
  /** Seconds between checks, and before one times out. */
  interval: number;
  timeout: number;
  /** Consecutive successes to come back up, failures to go down. */
  rise: number;
  fall: number;
  /** Seconds to the next check after a failure while the server is still up (keepalived's
   * delay_before_retry), so `fall` failures take it down sooner; default: interval. */
  retryInterval?: number;
  /** Servers start down and need `rise` passes to take sessions (keepalived's alpha);
   * default: they start up and need `fall` failures to go down. */
  startDown?: boolean;
  /** Port to check (default: the real server's). */
  port?: number;
  /** When a server goes down, end its sessions with RSTs to both sides (default: they go on). */
  resetOnDown?: boolean;
  /** Commands run when a server goes up / down (keepalived's notify_up, notify_down), as an
   * exec check's command is, with TUNVS_EVENT=up|down in the environment. */
  notifyUp?: string[];
  notifyDown?: string[];
  /** http/https. */
  path: string;
  expectStatus: number;
  /** A string the body must contain. */
  expectBody?: string;
  /** A regular expression (JavaScript syntax) the first 64 KiB of the body must match, or
   * must not match (keepalived's regex, regex_no_match). */
  expectBodyMatch?: string;
  expectBodyNoMatch?: string;
  /** The MD5 of the whole body, in hex (keepalived's digest, as genhash prints it). */
  expectBodyMd5?: string;
  /** The Host header, and over TLS the server name (SNI) when it is not an address
   * (keepalived's virtualhost); default: the server's address and port. */
  host?: string;
  /** udp: the datagram sent, in hex (default: an empty one). */
  payload?: string;
  /** udp: a reply is required, and must begin with these bytes (hex; "" takes any reply).
   * Absent: no reply is needed, only no ICMP unreachable within the timeout. */
  expectReply?: string;
  /** dns: the name asked (default ".") and the query type (default SOA). */
  query?: string;
  queryType?: DnsQueryType;
  /** smtp: the name sent with HELO (default: this host's name). */
  helo?: string;
  /** exec: the program (an absolute path) and its arguments, run without a shell; `{address}`
   * and `{port}` in them stand for the server's. It gets TUNVS_CHECK_ADDRESS / _PORT /
   * _SERVICE in its environment too. */
  command?: string[];
  /** exec: the user to run it as (default: tunvs's own). */
  user?: string;
  /** exec: exit 2..255 passes and sets the server's weight to the status − 2 (keepalived's
   * misc_dynamic); otherwise only 0 passes. */
  dynamicWeight?: boolean;
}

export const HEALTH_DEFAULT: Readonly<HealthCheckSpec> = {
  type: 'tcp',
  interval: 2,
  timeout: 1,
  rise: 2,
  fall: 3,
  path: '/',
  expectStatus: 200,
};

/** A spec with defaults filled in for what the caller left out. */
/** Defaults that depend on the mode: TOA, timestamp translation and the SYN proxy are
 * FULLNAT's (NAT may turn TOA on; TUNNEL's replies never pass the LB). */
export function serviceWithDefaults(
  s: Partial<ServiceSpec> & Pick<ServiceSpec, 'vip' | 'port' | 'realServers'>,
): ServiceSpec {
  const mode = s.mode ?? 'fullnat';
  const full = mode === 'fullnat';
  return {
    name: s.name ?? `${s.protocol ?? 'tcp'}/${s.vip}:${s.port}`,
    protocol: s.protocol ?? 'tcp',
    vip: s.vip,
    port: s.port,
    scheduler: s.scheduler ?? 'wrr',
    realServers: s.realServers,
    mode,
    localAddresses: s.localAddresses ?? [],
    toa: { ...TOA_DEFAULT, enabled: full, ...(s.toa ?? {}) },
    stripTimestamps: s.stripTimestamps ?? false,
    translateTimestamps: s.translateTimestamps ?? full,
    synProxy: s.synProxy ?? (full ? 'auto' : 'off'),
    maglevTableSize: s.maglevTableSize ?? MAGLEV_TABLE_SIZE_DEFAULT,
    sloppy: s.sloppy ?? false,
    ...(s.hashPort ? { hashPort: true } : {}),
    ...(s.hashFallback ? { hashFallback: true } : {}),
    ...(s.onePacket ? { onePacket: true } : {}),
    ...(s.tunnel ? { tunnel: { ...s.tunnel } } : {}),
    ...(s.healthCheck ? { healthCheck: s.healthCheck } : {}),
    ...(s.acl ? { acl: s.acl } : {}),
    ...(s.maxNewPerSec !== undefined ? { maxNewPerSec: s.maxNewPerSec } : {}),
    ...(s.idleTimeout !== undefined ? { idleTimeout: s.idleTimeout } : {}),
    ...(s.persistence ? { persistence: { ...s.persistence } } : {}),
    ...(s.sorryServer ? { sorryServer: { ...s.sorryServer } } : {}),
    ...(s.quorum !== undefined ? { quorum: s.quorum } : {}),
    ...(s.hysteresis !== undefined ? { hysteresis: s.hysteresis } : {}),
    ...(s.quorumUp ? { quorumUp: [...s.quorumUp] } : {}),
    ...(s.quorumDown ? { quorumDown: [...s.quorumDown] } : {}),
  };
}

export interface ResolvedRealServer {
  id: number;
  af: number;
  addr: Int32Array;
  address: string;
  port: number;
  weight: number;
  /** Session cap and floor (RealServerSpec; 0, 0: none). */
  maxConns: number;
  minConns: number;
  /** DR: the server's link-layer address, from the neighbour table (control/link.ts). */
  mac?: string;
  /** The service's sorry server (ServiceSpec.sorryServer): last in the list, at weight 0
   * until the service loses its quorum (control/health.ts effective()). */
  sorry?: true;
}

export interface ResolvedService {
  id: number;
  name: string;
  af: number;
  proto: number;
  vip: Int32Array;
  vipText: string;
  port: number;
  scheduler: SchedulerName;
  maglevTableSize: number;
  mode: ModeName;
  toa: ToaSpec;
  stripTimestamps: boolean;
  translateTimestamps: boolean;
  synProxy: SynProxyMode;
  sloppy: boolean;
  hashPort: boolean;
  hashFallback: boolean;
  /** ServiceSpec.onePacket. */
  onePacket: boolean;
  /** TUNNEL: GRE or GUE (absent: IP-in-IP, or not TUNNEL). */
  tunnel?: ResolvedTunnel;
  laddrs: Int32Array[];
  realServers: ResolvedRealServer[];
  healthCheck?: HealthCheckSpec;
  /** Client ACL as prefixes (empty allow: everyone not denied). */
  aclAllow: ParsedCidr[];
  aclDeny: ParsedCidr[];
  /** 0: no cap. */
  maxNewPerSec: number;
  /** 0: the global timeout of the state (ServiceSpec.idleTimeout). */
  idleTimeoutSec: number;
  persistence?: PersistenceSpec;
  /** What keys this service's persistence templates: its id, or its persistence group's key
   * (IdRegistry.groupKey), so that a group's templates stay theirs whichever of its services
   * come and go. */
  persistKey: number;
  /** DR: the MAC of the LB's interface toward the real servers (control/link.ts). */
  linkMac?: string;
  /** ServiceSpec.quorum and hysteresis (their defaults unless there is a sorry server, the
   * last real server, or a quorum command). */
  quorum: number;
  hysteresis: number;
  quorumUp?: readonly string[];
  quorumDown?: readonly string[];
}

/** "aa:bb:cc:dd:ee:ff" as [first 2 bytes, last 4 bytes] (int32 words), or [0, 0]. */
export function macWords(mac: string | undefined): [number, number] {
  const b = mac?.split(':').map((x) => parseInt(x, 16)) ?? [];
  if (b.length !== 6 || b.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return [0, 0];
  return [(b[0]! << 8) | b[1]!, (b[2]! << 24) | (b[3]! << 16) | (b[4]! << 8) | b[5]! | 0];
}

/** ACL prefixes; both families may be listed (one list for a v4 and a v6 service): a
 * prefix of the other family never matches. */
function cidrs(list: readonly string[], path: string): ParsedCidr[] {
  return list.map((text, i) => {
    const c = parseCidr(text);
    if (!c)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_ADDRESS',
        `${path}[${i}]`,
        `${show(text)} is not an address or prefix: use a.b.c.d/n or x::y/n (host bits zero)`,
      );
    return c;
  });
}

/** Assigns stable ids to services, real servers and persistence groups across reloads (main
 * thread). */
export class IdRegistry {
  private readonly services = new Map<string, number>();
  private readonly servers = new Map<string, number>();
  private readonly groups = new Map<string, number>();

  serviceId(key: string, path: string): number {
    return IdRegistry.number(this.services, key, SERVICES_MAX, 'services', path);
  }

  serverId(key: string, path: string): number {
    return IdRegistry.number(this.servers, key, REAL_SERVERS_MAX, 'real servers', path);
  }

  /**
   * The template key of persistence group `name`'s services of family `af` (persistKey: after
   * every service id). A group's IPv4 and IPv6 members (a firewall mark imported over both)
   * have a key each: a template is of its client's family, and the service that names it to
   * peers (ServiceTable.keyService, the lowest id with the key) must be of that family too,
   * or no peer finds it.
   */
  groupKey(name: string, af: number, path: string): number {
    const key = `${familyName(af)} ${name}`;
    return SERVICES_MAX + IdRegistry.number(this.groups, key, PERSIST_GROUPS_MAX, 'persistence groups', path);
  }

  /** `key`'s number in `known`, or the next one (at most `max` since start). */
  private static number(known: Map<string, number>, key: string, max: number, what: string, path: string): number {
    let n = known.get(key);
    if (n === undefined) {
      n = known.size;
      if (n >= max)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_LIMIT',
          path,
          `more than ${max} ${what} since start; restart tunvs to renumber`,
        );
      known.set(key, n);
    }
    return n;
  }
}

function needAddress(text: unknown, path: string): ParsedAddress {
  const a = typeof text === 'string' ? parseAddress(text) : undefined;
  if (a === undefined)
    throw new ConfigError('TUNVS_ERR_CONFIG_ADDRESS', path, `${show(text)} is not an IPv4 or IPv6 address`);
  return a;
}

function needPort(value: unknown, path: string): number {
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > 65535)
    throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', path, `${show(value)} is not a port: use an integer 1..65535`);
  return value as number;
}

/** ServiceTable.serverAt's port for "at any port". */
export const ANY_PORT = -1;

/** A service's port: 1..65535, or 0 for every port of the VIP (IPVS's port-0 service). */
function needServicePort(value: unknown, path: string): number {
  if (value === ALL_PORTS) return ALL_PORTS;
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > 65535)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      path,
      `${show(value)} is not a port: use an integer 1..65535, or 0 for every port of the VIP`,
    );
  return value as number;
}

/** A real server's (or sorry server's) port: in an all-ports service 0, "the port the client
 * asked for" (IPVS keeps the client's port there too); else needPort. */
function needServerPort(value: unknown, path: string, servicePort: number): number {
  if (servicePort !== ALL_PORTS) return needPort(value, path);
  if (value !== ALL_PORTS)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      path,
      `${show(value)}: a server of an all-ports service (port 0) takes each connection on the port the client asked for: give port 0`,
    );
  return ALL_PORTS;
}

/**
 * An all-ports service (port 0), as IPVS has them: persistent only (the connections of a
 * client to the VIP's ports belong together: FTP's control and data, an application's
 * ports), not NAT (its replies are picked out by the real server's port, docs/modes.md),
 * and a health check says which port to check.
 */
function checkAllPorts(s: ServiceSpec, p: string): void {
  if (s.persistence === undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      `${p}.persistence`,
      'an all-ports service (port 0) must be persistent, as in IPVS: give persistence (ipvsadm -p)',
    );
  if (s.mode === 'nat')
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.port`,
      "a NAT service's replies are told apart by the real server's port, so a NAT service has one port: use FULLNAT, TUNNEL or DR for all ports, or a service per port",
    );
  if (s.healthCheck !== undefined && s.healthCheck.port === undefined && s.healthCheck.type !== 'exec')
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      `${p}.healthCheck.port`,
      'the servers of an all-ports service have no port of their own (0): give the port to check',
    );
}

function familyName(af: number): string {
  return af === AF_INET ? 'IPv4' : 'IPv6';
}

function checkPersistence(x: PersistenceSpec, p: string): PersistenceSpec {
  const range = (v: number, field: string, lo: number, hi: number, what: string): void => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', `${p}.${field}`, `${show(v)} is not ${what}: use ${lo}..${hi}`);
  };
  range(x.timeoutSec, 'timeoutSec', 1, 86400 * 7, 'a timeout in seconds');
  range(x.netmask, 'netmask', 0, 32, 'an IPv4 prefix length');
  range(x.prefix6, 'prefix6', 0, 128, 'an IPv6 prefix length');
  return { ...x };
}

/** By template key (ResolvedService.persistKey): the service that names its templates to HA
 * peers and in `tunvs conns`, the lowest id among those it keys. A persistence group's moves
 * only when that service is removed (ids only grow) or a removed one with a lower id returns. */
export function templateNamers(services: readonly ResolvedService[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of services) out.set(s.persistKey, Math.min(out.get(s.persistKey) ?? s.id, s.id));
  return out;
}

/** Does a reload from `before` to `after` move a template key that both have to another
 * service? Its published templates are then named anew (an HA node writes its hash again). */
export function templateNamesMoved(before: readonly ResolvedService[], after: readonly ResolvedService[]): boolean {
  const was = templateNamers(before);
  for (const [key, id] of templateNamers(after)) if ((was.get(key) ?? id) !== id) return true;
  return false;
}

/** The services of one persistence group keep one persistence: a template made by one is
 * used by the others as it is (same timeout, same client prefix). */
function checkPersistenceGroups(specs: readonly ServiceSpec[], path: string): void {
  const first = new Map<string, number>();
  specs.forEach((s, i) => {
    const g = s.persistence?.group;
    if (g === undefined) return;
    const j = first.get(g);
    if (j === undefined) {
      first.set(g, i);
      return;
    }
    const a = specs[j]!.persistence!;
    const b = s.persistence!;
    const field = (['timeoutSec', 'netmask', 'prefix6'] as const).find((f) => a[f] !== b[f]);
    if (field !== undefined)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MODE',
        `${path}[${i}].persistence.${field}`,
        `${show(b[field])}: the services of persistence group ${show(g)} share one persistence, and ${path}[${j}] has ${show(a[field])}`,
      );
  });
}

/** A real server's maxConns and minConns (ipvsadm -x, -y): the floor below the cap, and only
 * with one; IPVS's floor when none is given is three quarters of the cap. */
function checkConnLimits(rs: RealServerSpec, p: string): { maxConns: number; minConns: number } {
  const count = (v: number, field: string): number => {
    if (!Number.isInteger(v) || v < 1 || v > CONNS_CAP_MAX)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_RANGE',
        `${p}.${field}`,
        `${show(v)} is not a session count: use 1..${CONNS_CAP_MAX}`,
      );
    return v;
  };
  if (rs.maxConns === undefined) {
    if (rs.minConns !== undefined)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MISSING',
        `${p}.minConns`,
        'minConns goes with maxConns (ipvsadm -y with -x)',
      );
    return { maxConns: 0, minConns: 0 };
  }
  const maxConns = count(rs.maxConns, 'maxConns');
  const minConns = rs.minConns === undefined ? Math.ceil((maxConns * 3) / 4) : count(rs.minConns, 'minConns');
  if (minConns > maxConns)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      `${p}.minConns`,
      `${minConns} is above maxConns ${maxConns}: the floor is under the cap`,
    );
  return { maxConns, minConns };
}

function checkIdleTimeout(v: number, p: string): number {
  if (!Number.isInteger(v) || v < 1 || v > TIMEOUT_SEC_MAX)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      p,
      `${show(v)} is not a timeout: use whole seconds 1..${TIMEOUT_SEC_MAX}`,
    );
  return v;
}

/** What each mode allows beside it (the defaults, serviceWithDefaults, always pass). */
function checkModeOptions(s: ServiceSpec, p: string): void {
  const mode = s.mode;
  if (s.sloppy) checkSloppy(s, p);
  if (s.onePacket === true) checkOnePacket(s, p);
  if (s.tunnel !== undefined) checkTunnel(s, p);
  for (const flag of ['hashPort', 'hashFallback'] as const)
    if (s[flag] === true && s.scheduler !== 'sh' && s.scheduler !== 'mh')
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MODE',
        `${p}.${flag}`,
        `${flag} is for the schedulers that hash the client, sh and mh (IPVS's ${flag === 'hashPort' ? 'sh-port, mh-port' : 'sh-fallback, mh-fallback'}), not ${s.scheduler}`,
      );
  if (mode === 'nat' || mode === 'dr') {
    if (s.localAddresses.length > 0)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MODE',
        `${p}.localAddresses`,
        mode === 'nat'
          ? 'a NAT service has no local addresses: the real servers see the client address and reply through the LB'
          : 'a DR service has no local addresses: the packet reaches the real server unchanged',
      );
  } else if (s.localAddresses.length === 0) {
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      `${p}.localAddresses`,
      mode === 'fullnat'
        ? 'FULLNAT needs at least one local address of the VIP family'
        : 'TUNNEL needs a local address of the VIP family: the source of the outer header',
    );
  }
  if (mode === 'fullnat') return;
  const name = mode.toUpperCase();
  if (s.synProxy !== 'off')
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.synProxy`,
      `the SYN proxy is for FULLNAT services, not ${name}`,
    );
  if (s.translateTimestamps)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.translateTimestamps`,
      `timestamps are translated for FULLNAT services only (${name} keeps the client's own tuple)`,
    );
  if (mode === 'tunnel' || mode === 'dr') {
    const j = s.realServers.findIndex((r) => r.port !== s.port);
    if (j >= 0)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MODE',
        `${p}.realServers[${j}].port`,
        `${show(s.realServers[j]!.port)} is not the service port ${s.port}: ${name} delivers the client's packet unchanged, so the real server listens on the VIP's port`,
      );
  }
  if ((mode === 'tunnel' || mode === 'dr') && s.stripTimestamps)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.stripTimestamps`,
      `a ${name} service passes client packets as they are (the replies skip the LB)`,
    );
  if ((mode === 'tunnel' || mode === 'dr') && s.toa.enabled)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.toa.enabled`,
      `a ${name} real server sees the client address itself (and its replies skip the LB): no TOA`,
    );
}

/** Sloppy TCP makes a session from a packet that says nothing of how the connection began:
 * only where nothing but the real server is to be known, and known from the packet. */
function checkSloppy(s: ServiceSpec, p: string): void {
  const why =
    s.protocol !== 'tcp'
      ? 'UDP sessions are made by any packet already'
      : s.mode === 'fullnat'
        ? 'a FULLNAT connection has a local port and sequence delta of its own, which a packet in its middle does not tell (sync the sessions: docs/ha.md)'
        : s.scheduler !== 'sh' && s.scheduler !== 'mh'
          ? `scheduler ${s.scheduler} may pick another server than the connection's SYN went to; use sh or mh, which pick from the client address alone, the same on every node`
          : undefined;
  if (why !== undefined) throw new ConfigError('TUNVS_ERR_CONFIG_MODE', `${p}.sloppy`, `sloppy TCP: ${why}`);
}

/** One-packet scheduling needs datagrams a session need not follow. */
function checkOnePacket(s: ServiceSpec, p: string): void {
  if (s.protocol !== 'udp')
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.onePacket`,
      'one-packet scheduling is for UDP datagrams: a TCP connection is one flow, its packets must reach one server',
    );
}

/** An encapsulation is TUNNEL's; its checksum GRE's or GUE's; its port GUE's, and GUE's
 * required. */
function checkTunnel(s: ServiceSpec, p: string): void {
  const t = s.tunnel!;
  if (!TUNNEL_TYPES.includes(t.type))
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_UNKNOWN',
      `${p}.tunnel.type`,
      `${show(t.type)} is not a tunnel type: use ${TUNNEL_TYPES.join(', ')}`,
    );
  if (s.mode !== 'tunnel')
    throw new ConfigError('TUNVS_ERR_CONFIG_MODE', `${p}.tunnel`, `tunnel is for TUNNEL services, not ${s.mode}`);
  if (t.checksum === true && t.type === 'ipip')
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MODE',
      `${p}.tunnel.checksum`,
      "IP-in-IP has no checksum of its own: the checksum is GRE's or GUE's (type: gre or gue)",
    );
  if (t.type !== 'gue') {
    if (t.port !== undefined)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_MODE',
        `${p}.tunnel.port`,
        `a tunnel port is GUE's (UDP): ${t.type} has none (type: gue)`,
      );
    return;
  }
  if (t.port === undefined)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_MISSING',
      `${p}.tunnel.port`,
      'GUE needs the UDP port the real servers listen on (their `ip fou add port P gue`, or tunvs rs decap --gue-port P)',
    );
  if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535)
    throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', `${p}.tunnel.port`, `${show(t.port)} is not a port (1-65535)`);
}

/** The service's sorry server as its last real server: weight 0 (no sessions) until the
 * service loses its quorum. Not one of its real servers (keepalived allows that; tunvs would
 * have two entries with one id). */
function sorryServer(
  spec: { address: string; port: number },
  path: string,
  af: number,
  servicePort: number,
  serviceKey: string,
  rsKeys: ReadonlySet<string>,
  ids: IdRegistry,
): ResolvedRealServer {
  const a = needAddress(spec.address, `${path}.address`);
  if (a.af !== af)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_FAMILY',
      `${path}.address`,
      `${spec.address} is ${familyName(a.af)} but the VIP is ${familyName(af)}: tunvs forwards within one family`,
    );
  const port = needServerPort(spec.port, `${path}.port`, servicePort);
  const rkey = `${Array.from(a.words).join(',')}|${port}`;
  if (rsKeys.has(rkey))
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_DUPLICATE',
      path,
      `${spec.address}:${port} is one of the real servers: a sorry server is another server`,
    );
  return {
    id: ids.serverId(`${serviceKey}|${rkey}`, path),
    af: a.af,
    addr: a.words,
    address: spec.address,
    port,
    weight: 0,
    maxConns: 0,
    minConns: 0,
    sorry: true,
  };
}

function checkQuorum(s: ServiceSpec, p: string): { quorum: number; hysteresis: number } {
  const quorum = s.quorum ?? 1;
  const hysteresis = s.hysteresis ?? 0;
  if (!Number.isInteger(quorum) || quorum < 1 || quorum > 0x7fffffff)
    throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', `${p}.quorum`, `${show(quorum)} is not valid: use an integer ≥ 1`);
  if (!Number.isInteger(hysteresis) || hysteresis < 0 || hysteresis >= quorum)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      `${p}.hysteresis`,
      `${show(hysteresis)} is not valid: use an integer 0..quorum − 1`,
    );
  return { quorum, hysteresis };
}

/** Check specs and give them ids. Throws ConfigError naming the field on the first problem. */
export function resolveServices(specs: readonly ServiceSpec[], ids: IdRegistry, path = 'services'): ResolvedService[] {
  const out: ResolvedService[] = [];
  const seen = new Set<string>();
  const vipAddrs = new Set<string>();
  const lipOwners = new Map<string, string>();
  specs.forEach((s, i) => {
    const p = `${path}[${i}]`;
    if (s.protocol !== 'tcp' && s.protocol !== 'udp')
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_UNKNOWN',
        `${p}.protocol`,
        `${show(s.protocol)} is not supported: use "tcp" or "udp"`,
      );
    const vip = needAddress(s.vip, `${p}.vip`);
    const port = needServicePort(s.port, `${p}.port`);
    if (port === ALL_PORTS) checkAllPorts(s, p);
    if (!SCHEDULER_NAMES.includes(s.scheduler))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_UNKNOWN',
        `${p}.scheduler`,
        `${show(s.scheduler)} is not a scheduler: use one of ${SCHEDULER_NAMES.join(', ')}`,
      );
    if (s.scheduler === 'mh' && (!isPrime(s.maglevTableSize) || s.maglevTableSize > MAGLEV_TABLE_SIZE_MAX))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_RANGE',
        `${p}.maglevTableSize`,
        `${show(s.maglevTableSize)} must be a prime up to ${MAGLEV_TABLE_SIZE_MAX} (e.g. 251, 65537)`,
      );
    for (const [field, kind] of [
      ['kind', s.toa.kind],
      ['kindV6', s.toa.kindV6],
    ] as const) {
      if (!Number.isInteger(kind) || kind < 2 || kind > 255)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_RANGE',
          `${p}.toa.${field}`,
          `${show(kind)} is not a TCP option kind: use an integer 2..255 (254 is the usual TOA kind)`,
        );
    }
    const key = `${s.protocol}|${vip.af}|${Array.from(vip.words).join(',')}|${port}`;
    if (seen.has(key))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_DUPLICATE',
        p,
        `service ${s.protocol} ${s.vip}:${port} is configured twice`,
      );
    seen.add(key);
    vipAddrs.add(`${vip.af}|${Array.from(vip.words).join(',')}`);
    if (!MODE_NAMES.includes(s.mode))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_UNKNOWN',
        `${p}.mode`,
        `${show(s.mode)} is not a forwarding mode: use one of ${MODE_NAMES.join(', ')}`,
      );
    checkModeOptions(s, p);
    if (s.localAddresses.length > LADDRS_PER_SERVICE_MAX)
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_LIMIT',
        `${p}.localAddresses`,
        `${s.localAddresses.length} local addresses; at most ${LADDRS_PER_SERVICE_MAX}`,
      );
    const laddrs = s.localAddresses.map((text, j) => {
      const a = needAddress(text, `${p}.localAddresses[${j}]`);
      if (a.af !== vip.af)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_FAMILY',
          `${p}.localAddresses[${j}]`,
          `${text} is ${familyName(a.af)} but the VIP is ${familyName(vip.af)}: use local addresses of the VIP's family`,
        );
      lipOwners.set(`${a.af}|${Array.from(a.words).join(',')}`, `${p}.localAddresses[${j}]`);
      return a.words;
    });
    const id = ids.serviceId(key, p);
    const rsKeys = new Set<string>();
    const realServers: ResolvedRealServer[] = s.realServers.map((rs, j) => {
      const rp = `${p}.realServers[${j}]`;
      const a = needAddress(rs.address, `${rp}.address`);
      if (a.af !== vip.af)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_FAMILY',
          `${rp}.address`,
          `${rs.address} is ${familyName(a.af)} but the VIP is ${familyName(vip.af)}: tunvs forwards within one family`,
        );
      const rport = needServerPort(rs.port, `${rp}.port`, port);
      if (!Number.isInteger(rs.weight) || rs.weight < 0 || rs.weight > 65535)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_RANGE',
          `${rp}.weight`,
          `${show(rs.weight)} is not a weight: use an integer 0..65535 (0 drains)`,
        );
      const rkey = `${Array.from(a.words).join(',')}|${rport}`;
      if (rsKeys.has(rkey))
        throw new ConfigError('TUNVS_ERR_CONFIG_DUPLICATE', rp, `real server ${rs.address}:${rport} is listed twice`);
      rsKeys.add(rkey);
      return {
        id: ids.serverId(`${key}|${rkey}`, rp),
        af: a.af,
        addr: a.words,
        address: rs.address,
        port: rport,
        weight: rs.weight,
        ...checkConnLimits(rs, rp),
      };
    });
    if (s.sorryServer) realServers.push(sorryServer(s.sorryServer, `${p}.sorryServer`, vip.af, port, key, rsKeys, ids));
    const quorum = checkQuorum(s, p);
    const tunnel = resolveTunnel(s.tunnel);
    out.push({
      id,
      name: s.name,
      af: vip.af,
      proto: s.protocol === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP,
      vip: vip.words,
      vipText: s.vip,
      port,
      scheduler: s.scheduler,
      maglevTableSize: s.maglevTableSize,
      mode: s.mode,
      toa: { ...s.toa },
      stripTimestamps: s.stripTimestamps,
      translateTimestamps: s.translateTimestamps,
      synProxy: s.protocol === 'tcp' ? s.synProxy : 'off',
      sloppy: s.sloppy,
      hashPort: s.hashPort === true,
      hashFallback: s.hashFallback === true,
      onePacket: s.onePacket === true,
      ...(tunnel ? { tunnel } : {}),
      laddrs,
      realServers,
      ...(s.healthCheck ? { healthCheck: { ...s.healthCheck } } : {}),
      aclAllow: cidrs(s.acl?.allow ?? [], `${p}.acl.allow`),
      aclDeny: cidrs(s.acl?.deny ?? [], `${p}.acl.deny`),
      maxNewPerSec: s.maxNewPerSec ?? 0,
      idleTimeoutSec: s.idleTimeout === undefined ? 0 : checkIdleTimeout(s.idleTimeout, `${p}.idleTimeout`),
      ...(s.persistence ? { persistence: checkPersistence(s.persistence, `${p}.persistence`) } : {}),
      persistKey:
        s.persistence?.group === undefined ? id : ids.groupKey(s.persistence.group, vip.af, `${p}.persistence.group`),
      ...quorum,
      ...(s.quorumUp ? { quorumUp: [...s.quorumUp] } : {}),
      ...(s.quorumDown ? { quorumDown: [...s.quorumDown] } : {}),
    });
  });
  checkPersistenceGroups(specs, path);
  for (const [lip, where] of lipOwners) {
    if (vipAddrs.has(lip))
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_DUPLICATE',
        where,
        'a local address must not also be a VIP: replies to it could not be told from client traffic',
      );
  }
  return out;
}

/** Per-worker active/inactive session counts by real-server id (read by lc/wlc, and by the
 * main thread for `tunvs list`: hence shared memory, written only by the worker). */
export class ConnCounts {
  readonly sab: SharedArrayBuffer;
  readonly active: Int32Array;
  readonly inactive: Int32Array;

  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer(REAL_SERVERS_MAX * 8);
    this.active = new Int32Array(this.sab, 0, REAL_SERVERS_MAX);
    this.inactive = new Int32Array(this.sab, REAL_SERVERS_MAX * 4, REAL_SERVERS_MAX);
  }
}

/** Map-key meta bytes for address sets kept in the same map as services. */
const META_VIP = 0xfe;
const META_LIP = 0xfd;

/** TOA mode bits per service. */
export const TOA_ON = 1;
export const TOA_IN_SYN = 2;

/** What one worker reads per packet about services and real servers, by id. */
export class ServiceTable {
  readonly alive = new Uint8Array(SERVICES_MAX);
  readonly af = new Int32Array(SERVICES_MAX);
  readonly proto = new Int32Array(SERVICES_MAX);
  readonly vport = new Int32Array(SERVICES_MAX);
  readonly vip = new Int32Array(SERVICES_MAX * 4);
  readonly toaMode = new Int32Array(SERVICES_MAX);
  readonly toaKindV4 = new Int32Array(SERVICES_MAX);
  readonly toaKindV6 = new Int32Array(SERVICES_MAX);
  readonly stripTs = new Uint8Array(SERVICES_MAX);
  readonly translateTs = new Uint8Array(SERVICES_MAX);
  /** SYNPROXY_OFF / _ON / _AUTO. */
  readonly synProxy = new Uint8Array(SERVICES_MAX);
  /** 1: a mid-connection client packet without a session makes one (ServiceSpec.sloppy). */
  readonly sloppy = new Uint8Array(SERVICES_MAX);
  /** 1: sh and mh hash the client's port too (ServiceSpec.hashPort). */
  readonly hashPort = new Uint8Array(SERVICES_MAX);
  /** 1: each UDP datagram is scheduled on its own (ServiceSpec.onePacket). */
  readonly onePacket = new Uint8Array(SERVICES_MAX);
  /** TUNNEL: bytes after the outer IP header (tunnelHeaderLength: 0 IP-in-IP, 4 or 8 GRE,
   * 12 GUE). */
  readonly tunnelHeader = new Uint8Array(SERVICES_MAX);
  /** TUNNEL GUE: the UDP destination port (0: not GUE). */
  readonly tunnelPort = new Uint16Array(SERVICES_MAX);
  /** TUNNEL GUE: 1 when IPv4 packets carry the UDP checksum. */
  readonly tunnelCsum = new Uint8Array(SERVICES_MAX);
  /** Forwarding mode id (nat/modes/mode.ts MODE_*). */
  readonly mode = new Uint8Array(SERVICES_MAX);
  /** Persistence timeout in seconds (0: none) and the client address mask (4 words). */
  readonly persistSec = new Int32Array(SERVICES_MAX);
  /** What keys service i's persistence templates (ResolvedService.persistKey). */
  readonly persistKey = new Int32Array(SERVICES_MAX);
  /** By template key: the service whose VIP, port and protocol name its templates to HA peers
   * (templateNamers; a removed one's stays, for the deletes of its last templates). */
  readonly keyService = new Int32Array(SERVICES_MAX + PERSIST_GROUPS_MAX);
  readonly persistMask = new Int32Array(SERVICES_MAX * 4);
  /** TUNNEL: the outer header's source address by service (4 words each; the service's
   * first local address). */
  readonly tunnelSrc = new Int32Array(SERVICES_MAX * 4);
  /** DR: each real server's MAC (2 words by id: macWords; 0, 0 unknown), the LB's own on
   * that link, and whether the link is open. */
  readonly rsMac = new Int32Array(REAL_SERVERS_MAX * 2);
  readonly linkMac = new Int32Array(2);
  linkUp = false;
  /** Some service is in NAT mode: replies to clients arrive (dataplane/shard.ts). */
  natReplies = false;
  readonly names: string[] = [];
  readonly schedulers: (Scheduler | undefined)[] = [];
  /** The options each service's scheduler was made with (a change makes a new one). */
  private readonly schedulerOptions: SchedulerOptions[] = [];
  readonly pools: (ServerPool | undefined)[] = [];
  readonly laddrs: (LocalAddressPool | undefined)[] = [];
  /** Client ACLs and the new-session cap (this worker's share, per second; 0: none). */
  readonly aclAllow: PrefixSet[] = [];
  readonly aclDeny: PrefixSet[] = [];
  readonly aclAllowOn = new Uint8Array(SERVICES_MAX);
  readonly rate = new Float64Array(SERVICES_MAX);
  readonly tokens = new Float64Array(SERVICES_MAX);
  readonly tokensAt = new Float64Array(SERVICES_MAX);
  private workers = 1;
  /** Port cursors per local address, shared by the services (laddr.ts); made at the first apply. */
  private cursors: PortCursors | undefined;
  /** The HA peers' worker counts (setPeerWorkers), for cursors made later. */
  private peerWorkers: readonly number[] = [];
  /** Real servers by id: address (4 words), port. */
  readonly rsAddr = new Int32Array(REAL_SERVERS_MAX * 4);
  readonly rsPort = new Int32Array(REAL_SERVERS_MAX);
  readonly rsService = new Int32Array(REAL_SERVERS_MAX).fill(-1);
  /** Weight of each real server in its service now (0: drained, DOWN, or no longer listed):
   * a persistence template to it stops attracting new sessions. */
  readonly rsWeight = new Int32Array(REAL_SERVERS_MAX);
  private map = new AddrPortMap(1);
  /** An all-ports service (port 0) is in the map, live or removed: lookup() looks for one. */
  private allPorts = false;
  /** A cluster's other nodes' local addresses (null: none). A taken-over peer's sessions
   * answer on them, and their replies are owned like those to our own (shard.ts). */
  private peerLips: AddrPortMap | null = null;

  /** `counts`: this worker's; `nodeCounts`: every forwarder's on the LB, this one's included
   * (session caps count them all; default: this worker's alone). */
  constructor(
    readonly counts: ConnCounts,
    private readonly nodeCounts: readonly ConnCounts[] = [counts],
  ) {}

  /** HA: the worker counts of the nodes that install this node's sessions (laddr.ts
   * PortCursors.setPeerWorkers: a full shard borrows ports every one of them serves). */
  setPeerWorkers(counts: readonly number[]): void {
    this.peerWorkers = counts;
    this.cursors?.setPeerWorkers(counts);
  }

  /** Every local address continues from where the port sweep stands at `nowMs`. */
  restartPorts(nowMs: number): void {
    this.cursors?.restartAt(nowMs);
  }

  /**
   * Install a new set of services (start-up or reload). Services no longer listed stop
   * matching new traffic but keep their id data, so their sessions run on until they end.
   * Schedulers of services whose pool did not change keep their state.
   */
  apply(services: readonly ResolvedService[], worker: number, workers: number, nowMs: number): void {
    this.workers = workers;
    if (!this.cursors) {
      this.cursors = new PortCursors(worker, workers);
      this.cursors.setPeerWorkers(this.peerWorkers);
    }
    // Removed services stay in the map as tombstones (alive 0): a packet of one of their
    // sessions still finds its service, while natInbound refuses them new sessions (IPVS
    // likewise finds a connection before it looks for a service). The live services are set
    // after them, so a service that takes a removed one's VIP and port wins.
    const listed = new Set(services.map((s) => s.id));
    const tombstones: number[] = [];
    for (let id = 0; id < this.proto.length; id++) if (this.proto[id] !== 0 && !listed.has(id)) tombstones.push(id);
    const map = new AddrPortMap(
      services.length * 3 + tombstones.length + services.reduce((n, s) => n + s.laddrs.length, 0) + 1,
    );
    for (const id of tombstones)
      map.set(metaKey(this.af[id]!, this.proto[id]!), this.vport[id]!, this.vip.subarray(id * 4, id * 4 + 4), id);
    this.allPorts = services.some((s) => s.port === ALL_PORTS) || tombstones.some((id) => this.vport[id] === ALL_PORTS);
    this.alive.fill(0);
    this.rsWeight.fill(0);
    this.linkUp = false;
    this.natReplies = services.some((s) => MODE_NAMES.indexOf(s.mode) === MODE_NAT);
    for (const [key, id] of templateNamers(services)) this.keyService[key] = id;
    for (const s of services) {
      const id = s.id;
      this.alive[id] = 1;
      this.af[id] = s.af;
      this.proto[id] = s.proto;
      this.vport[id] = s.port;
      this.vip.set(s.vip, id * 4);
      this.toaMode[id] = (s.toa.enabled ? TOA_ON : 0) | (s.toa.inSyn ? TOA_IN_SYN : 0);
      this.toaKindV4[id] = s.toa.kind;
      this.toaKindV6[id] = s.toa.kindV6;
      this.stripTs[id] = s.stripTimestamps ? 1 : 0;
      this.translateTs[id] = s.translateTimestamps && !s.stripTimestamps ? 1 : 0;
      this.synProxy[id] = SYNPROXY_MODES.indexOf(s.synProxy);
      this.sloppy[id] = s.sloppy ? 1 : 0;
      this.hashPort[id] = s.hashPort ? 1 : 0;
      this.onePacket[id] = s.onePacket ? 1 : 0;
      this.tunnelHeader[id] = tunnelHeaderLength(s.tunnel);
      this.tunnelPort[id] = s.tunnel?.port ?? 0;
      this.tunnelCsum[id] = s.tunnel?.checksum === true ? 1 : 0;
      this.mode[id] = MODE_NAMES.indexOf(s.mode);
      if (s.laddrs.length > 0) this.tunnelSrc.set(s.laddrs[0]!, id * 4);
      // Only this family's prefixes can match; an allow list of only the other family
      // still means "not everyone".
      this.aclAllow[id] = new PrefixSet(s.aclAllow.filter((c) => c.af === s.af));
      this.aclAllowOn[id] = s.aclAllow.length > 0 ? 1 : 0;
      this.aclDeny[id] = new PrefixSet(s.aclDeny.filter((c) => c.af === s.af));
      const rate = s.maxNewPerSec / this.workers;
      if (this.rate[id] !== rate) {
        this.rate[id] = rate;
        this.tokens[id] = Math.max(rate, 1);
      }
      this.names[id] = s.name;
      const pool: ServerPool = {
        count: s.realServers.length,
        weights: Int32Array.from(s.realServers, (r) => r.weight),
        ids: Int32Array.from(s.realServers, (r) => r.id),
        keys: s.realServers.map((r) => `${r.address}|${r.port}`),
        active: this.counts.active,
        inactive: this.counts.inactive,
        node: this.nodeCounts,
        maxConns: Int32Array.from(s.realServers, (r) => r.maxConns),
        minConns: Int32Array.from(s.realServers, (r) => r.minConns),
        overloaded: new Uint8Array(s.realServers.length),
      };
      for (const r of s.realServers) {
        this.rsAddr.set(r.addr, r.id * 4);
        this.rsPort[r.id] = r.port;
        this.rsService[r.id] = id;
        this.rsWeight[r.id] = r.weight;
        this.rsMac.set(macWords(r.mac), r.id * 2);
      }
      if (s.linkMac !== undefined) {
        this.linkMac.set(macWords(s.linkMac));
        this.linkUp = true;
      }
      this.persistSec[id] = s.persistence?.timeoutSec ?? 0;
      this.persistKey[id] = s.persistKey;
      const bits = s.af === AF_INET ? (s.persistence?.netmask ?? 32) : (s.persistence?.prefix6 ?? 128);
      for (let k = 0; k < 4; k++) {
        const b = Math.min(32, Math.max(0, bits - 32 * k));
        this.persistMask[id * 4 + k] = b === 0 ? 0 : (0xffffffff << (32 - b)) | 0;
      }
      const old = this.pools[id];
      const opts: SchedulerOptions = { maglevTableSize: s.maglevTableSize, fallback: s.hashFallback };
      const was = this.schedulerOptions[id];
      const sameServers =
        old !== undefined &&
        old.count === pool.count &&
        old.ids.every((v, i) => v === pool.ids[i]) &&
        this.schedulers[id]?.name === s.scheduler &&
        was?.maglevTableSize === opts.maglevTableSize &&
        was.fallback === opts.fallback;
      if (sameServers) {
        // Only new weights move a scheduler (Maglev and sh rebuild their tables, wrr starts
        // its round again). Every health change pushes every service: a Maglev table of
        // 65,537 slots took ~7 ms to build (1.6 ms now), so 100 mh services held each
        // forwarder ~0.7 s at every push when they were all rebuilt (1.5–3.7 ms now).
        const reweighed = old.weights.some((w, i) => w !== pool.weights[i]);
        old.weights.set(pool.weights);
        old.maxConns.set(pool.maxConns);
        old.minConns.set(pool.minConns);
        if (reweighed) this.schedulers[id]!.update();
      } else {
        this.pools[id] = pool;
        this.schedulers[id] = createScheduler(s.scheduler, pool, opts);
        this.schedulerOptions[id] = opts;
      }
      // A new pool takes the cursors its addresses already have (another service's, or
      // its own before the list changed): ports keep going round in turn.
      const oldPool = this.laddrs[id];
      if (oldPool === undefined || !oldPool.sameAddresses(s.laddrs)) {
        this.laddrs[id] = new LocalAddressPool(s.laddrs, this.cursors, nowMs);
      }
      map.set(metaKey(s.af, s.proto), s.port, s.vip, id);
      map.set(metaKey(s.af, META_VIP), 0, s.vip, id);
      for (const l of s.laddrs) map.set(metaKey(s.af, META_LIP), 0, l, id);
    }
    this.map = map;
  }

  /**
   * May a new session of service `svc` from client address (a0..a3) start now? 0 if so,
   * else the drop reason. Only the first packet of a session pays for this.
   */
  admit(svc: number, a0: number, a1: number, a2: number, a3: number, nowMs: number): number {
    const denied = this.acl(svc, a0, a1, a2, a3);
    if (denied !== 0) return denied;
    const rate = this.rate[svc]!;
    if (rate > 0) {
      // token bucket: `rate` per second, a burst of one second's worth (at least 1)
      const t = Math.min(Math.max(rate, 1), this.tokens[svc]! + ((nowMs - this.tokensAt[svc]!) * rate) / 1000);
      this.tokensAt[svc] = nowMs;
      if (t < 1) {
        this.tokens[svc] = t;
        return DROP_RATE_LIMITED;
      }
      this.tokens[svc] = t - 1;
    }
    return 0;
  }

  /** Service `svc`'s server at address (a0..a3) and `port` (a server of an all-ports service
   * at any; ANY_PORT: the first at the address), or −1. A persistence group's template names
   * an address (its members forward to it on their own ports); a sync record, an address and
   * port. */
  serverAt(svc: number, a0: number, a1: number, a2: number, a3: number, port: number): number {
    const pool = this.pools[svc];
    if (pool === undefined) return -1;
    const addr = this.rsAddr;
    for (let i = 0; i < pool.count; i++) {
      const id = pool.ids[i]!;
      const b = id * 4;
      if (
        (port === ANY_PORT || this.rsPort[id] === port || this.rsPort[id] === ALL_PORTS) &&
        addr[b] === a0 &&
        addr[b + 1] === a1 &&
        addr[b + 2] === a2 &&
        addr[b + 3] === a3
      )
        return id;
    }
    return -1;
  }

  /** The ACL part of admit() alone (the SYN proxy answers no SYN of a client it would not
   * admit, and takes a token only when the handshake is done). */
  acl(svc: number, a0: number, a1: number, a2: number, a3: number): number {
    const deny = this.aclDeny[svc];
    if (deny !== undefined && deny.has(a0, a1, a2, a3)) return DROP_ACL_DENIED;
    if (this.aclAllowOn[svc] === 1 && !this.aclAllow[svc]!.has(a0, a1, a2, a3)) return DROP_ACL_DENIED;
    return 0;
  }

  /** Service id listening on (af, proto, address, port), or −1: the service of that port,
   * else the VIP's all-ports service (port 0). That second look costs a packet that finds
   * no service (a reply) a probe only while an all-ports service exists. */
  lookup(af: number, proto: number, a0: number, a1: number, a2: number, a3: number, port: number): number {
    const svc = this.map.get((af << 8) | proto, port, a0, a1, a2, a3);
    if (svc >= 0 || !this.allPorts) return svc;
    return this.map.get((af << 8) | proto, ALL_PORTS, a0, a1, a2, a3);
  }

  isVip(af: number, a0: number, a1: number, a2: number, a3: number): boolean {
    return this.map.get((af << 8) | META_VIP, 0, a0, a1, a2, a3) >= 0;
  }

  /** One of this node's local addresses, or a cluster peer's (setPeerLocalAddresses). */
  isLocalAddress(af: number, a0: number, a1: number, a2: number, a3: number): boolean {
    return this.isOwnLocalAddress(af, a0, a1, a2, a3) || this.peerLocalHolder(af, a0, a1, a2, a3) >= 0;
  }

  /** One of this node's own local addresses (a service's localAddresses)? */
  isOwnLocalAddress(af: number, a0: number, a1: number, a2: number, a3: number): boolean {
    return this.map.get((af << 8) | META_LIP, 0, a0, a1, a2, a3) >= 0;
  }

  /** Which node holds this cluster peer's local address now (PeerLocalAddress.holder); −1:
   * not a peer's local address. */
  peerLocalHolder(af: number, a0: number, a1: number, a2: number, a3: number): number {
    if (this.peerLips === null) return -1;
    return this.peerLips.get((af << 8) | META_LIP, 0, a0, a1, a2, a3);
  }

  /** The cluster peers' local addresses (family, address words and holder each), replacing
   * the last. */
  setPeerLocalAddresses(addrs: readonly PeerLocalAddress[]): void {
    if (addrs.length === 0) {
      this.peerLips = null;
      return;
    }
    const map = new AddrPortMap(addrs.length);
    for (const a of addrs) map.set(metaKey(a.af, META_LIP), 0, a.words, a.holder);
    this.peerLips = map;
  }
}

/** A cluster peer's local address as the data plane takes it. */
export interface PeerLocalAddress extends ParsedAddress {
  /** The node the routers send it to now: the peer while it is alive, else its first live
   * backup (ha/announce.ts adopterOf; maybe this node); 0: none. A FULLNAT session on it
   * is that node's (ha/session_sync.ts reconcile). */
  holder: number;
}

export { AF_INET, AF_INET6 };
