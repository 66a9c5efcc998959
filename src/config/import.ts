/**
 * Importing an LVS configuration: what every source has in common. Each source (one small
 * file per tool: import_ipvsadm.ts, import_keepalived.ts) reads its own syntax into
 * `RuleService`s; this turns them into a tunvs config document and checks it with the
 * config's own validation. An import never changes what a service does without saying so:
 * what tunvs lacks is an `ImportError` naming the line, what it assumed is a note.
 *
 *   a source's parser → RuleService[] → buildConfig (one mode per service, local addresses,
 *   names; validated by parseConfig + resolveServices) → importYaml (the text to merge).
 */

import { Document, type YAMLMap, type YAMLSeq } from 'yaml';
import type { TimeoutsSec } from '../conn/state.js';
import type { ModeName } from '../nat/modes/mode.js';
import { parseAddress } from '../service/addr.js';
import { SCHEDULER_NAMES } from '../service/sched/scheduler.js';
import { IdRegistry, resolveServices, type TunnelSpec } from '../service/service.js';
import { parseConfig } from './config.js';
import { ConfigError } from './errors.js';

export class ImportError extends Error {
  readonly code = 'TUNVS_ERR_IMPORT';
  constructor(
    readonly line: number,
    message: string,
    /** The file the line is in, when the source has several (keepalived's include). */
    readonly file?: string,
  ) {
    super(`${file !== undefined ? `${file}: ` : ''}line ${line}: ${message}`);
    this.name = 'ImportError';
  }
}

export interface ImportOptions {
  /** Local addresses for FULLNAT services the source gives none, and the outer source of
   * TUNNEL services: each service takes those of its VIP's family. */
  laddrs?: readonly string[];
  /** Schedulers tunvs lacks, mapped by the operator (lblc → mh, ...). */
  schedulerMap?: Readonly<Record<string, string>>;
  /** What each firewall mark covers (`--fwmark 1=tcp/VIP:PORT,...`): the iptables rules that
   * set the marks are not in the LVS rules. */
  fwmarks?: ReadonlyMap<number, readonly FwmarkMember[]>;
}

/** One VIP:port a firewall mark covers, as the iptables rules that set it match. */
export interface FwmarkMember {
  protocol: 'tcp' | 'udp';
  vip: string;
  port: number;
}

/** `--fwmark MARK=PROTO/VIP:PORT,...` (IPv6: PROTO/[VIP]:PORT) as the mark and its members;
 * throws with what is wrong. */
export function parseFwmarkOption(text: string): [number, FwmarkMember[]] {
  const m = /^(\d+)=(.+)$/.exec(text);
  const mark = m ? Number(m[1]) : NaN;
  if (!m || !Number.isInteger(mark) || mark < 1 || mark > 0xffffffff)
    throw new Error(`--fwmark takes MARK=PROTO/VIP:PORT,... (1=tcp/198.18.0.100:80,tcp/198.18.0.100:443), got ${text}`);
  const members = m[2]!.split(',').map((x) => {
    const e = /^(tcp|udp)\/(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(x);
    const port = e ? Number(e[4]) : 0;
    if (!e || parseAddress(e[2] ?? e[3]!) === undefined || port < 1 || port > 65535)
      throw new Error(`--fwmark ${mark}: ${x} is not PROTO/VIP:PORT (tcp/198.18.0.100:80, udp/[fd18:18::100]:53)`);
    return { protocol: e[1] as 'tcp' | 'udp', vip: e[2] ?? e[3]!, port };
  });
  return [mark, members];
}

/** The VIP:ports of firewall mark `mark` (the operator's --fwmark); refused without. */
function fwmarkMembers(mark: number, o: ImportOptions, fail: (message: string) => never): readonly FwmarkMember[] {
  const members = o.fwmarks?.get(mark);
  if (members === undefined)
    return fail(
      `firewall-mark service ${mark}: the iptables rules that set the mark are not in these rules: ` +
        `give what it covers with --fwmark ${mark}=tcp/VIP:PORT,... (a service each, one persistence group)`,
    );
  return members;
}

/** The persistence group of a firewall-mark service's members. */
function fwmarkGroup(mark: number): string {
  return `fwmark-${mark}`;
}

/**
 * A firewall-mark service (IPVS matches the mark, not an address) as a service per VIP:port
 * it covers, sharing its scheduler, servers and options, and its persistence as one group (a
 * client's connections to any of them go to one server, as in IPVS). IPVS keeps each
 * connection's port on a mark's servers: they take the member's.
 */
export function fwmarkServices(s: RuleService, mark: number, o: ImportOptions, notes: string[]): RuleService[] {
  const members = fwmarkMembers(mark, o, (m) => {
    throw new ImportError(s.line, m, s.file);
  });
  const byAddress = new Map<string, RuleServer>();
  for (const r of s.servers.values()) {
    const first = byAddress.get(r.address);
    if (first)
      throw new ImportError(
        r.line,
        `real server ${r.address} is in firewall-mark service ${mark} twice (lines ${first.line} and ${r.line}): IPVS ignores the ports of a mark's servers, so they are one server`,
        s.file,
      );
    byAddress.set(r.address, r);
  }
  const ported = [...s.servers.values()].filter((r) => r.port !== 0);
  if (ported.length > 0)
    notes.push(
      `line ${s.line}: firewall-mark service ${mark} keeps the port each client asked for, as IPVS does: its servers' ports (${[...new Set(ported.map((r) => r.port))].join(', ')}) are left out`,
    );
  return members.map((m) => {
    const v6 = m.vip.includes(':');
    const servers = [...s.servers.values()].filter((r) => r.address.includes(':') === v6);
    const out: RuleService = {
      ...s,
      protocol: m.protocol,
      vip: m.vip,
      port: m.port,
      servers: new Map(servers.map((r) => [`${r.address}|${m.port}`, { ...r, port: m.port }])),
      laddrs: s.laddrs.filter((a) => a.includes(':') === v6),
      ...(s.persistence ? { persistence: { ...s.persistence, group: fwmarkGroup(mark) } } : {}),
    };
    delete out.fwmark;
    return out;
  });
}

export interface ImportResult {
  /** A config document: `services`, and `timeouts` when the source sets them. */
  config: { timeouts?: Partial<TimeoutsSec>; services: Record<string, unknown>[] };
  /** What the import assumed or skipped, a line each. */
  notes: string[];
}

export interface RuleServer {
  line: number;
  address: string;
  port: number;
  weight: number;
  mode: ModeName;
  /** IPVS's upper and lower connection thresholds (ipvsadm -x -y, keepalived uthreshold
   * lthreshold): the config's maxConns, minConns. */
  maxConns?: number;
  minConns?: number;
  /** TUNNEL: the encapsulation (ipvsTunnel; absent: IP-in-IP). */
  tunnel?: TunnelSpec;
}

/** IPVS's tunnel type, checksum flag and port (ipvsadm --tun-type, --tun-csum / --tun-nocsum /
 * --tun-remcsum, --tun-port; keepalived's `lvs_method TUN type T port P csum`) as the
 * config's `tunnel`: undefined for IP-in-IP (IPVS ignores the checksum flags there), GRE with
 * its checksum or without, GUE to its port with the UDP checksum or without (IPVS's default).
 * GUE's remote checksum offload is refused: tunvs sends whole checksums. */
export function ipvsTunnel(
  type: string | undefined,
  csum: 'csum' | 'nocsum' | 'remcsum' | undefined,
  port: string | undefined,
  fail: (m: string) => never,
): TunnelSpec | undefined {
  if (type !== undefined && type !== 'ipip' && type !== 'gre' && type !== 'gue')
    fail(`tunnel type ${type}: use ipip, gre or gue`);
  if (port !== undefined && type !== 'gue') fail(`a tunnel port (${port}) is GUE's: give --tun-type gue`);
  if (csum === 'remcsum')
    fail(
      "remote checksum offload (remcsum) is not built: tunvs's GUE packets carry a whole UDP checksum (csum) or none (nocsum)",
    );
  if (type === 'gue') {
    if (port === undefined) fail('a GUE tunnel needs its port (--tun-port): the UDP port the real servers listen on');
    if (!/^\d{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535)
      fail(`tunnel port ${port} is not a port (1-65535)`);
    return { type: 'gue', port: Number(port), ...(csum === 'csum' ? { checksum: true } : {}) };
  }
  if (type !== 'gre') return undefined;
  return { type: 'gre', ...(csum === 'csum' ? { checksum: true } : {}) };
}

/** A server's tunnel in an error message: ipip, gre, gue port P, each "with checksum". */
function tunnelWords(t: TunnelSpec | undefined): string {
  if (t === undefined) return 'ipip';
  return `${t.type}${t.port !== undefined ? ` port ${t.port}` : ''}${t.checksum ? ' with checksum' : ''}`;
}

/** A server's thresholds as the config's maxConns / minConns: IPVS takes 0 as none, and a lower
 * threshold without an upper one does nothing there (noted, left out). */
export function connLimits(
  upper: number | undefined,
  lower: number | undefined,
  note: (m: string) => void,
): { maxConns?: number; minConns?: number } {
  if (!upper) {
    if (lower) note(`a lower threshold (${lower}) without an upper one does nothing in IPVS: left out`);
    return {};
  }
  return { maxConns: upper, ...(lower ? { minConns: lower } : {}) };
}

/** A service as a source describes it, before it is a tunvs service. */
export interface RuleService {
  line: number;
  file?: string;
  protocol: 'tcp' | 'udp';
  vip: string;
  port: number;
  scheduler: string;
  /** IPVS's scheduler flags as the config's: sh-port / mh-port, sh-fallback / mh-fallback. */
  hashPort?: true;
  hashFallback?: true;
  /** ipvsadm -o, keepalived's ops: one-packet scheduling (the config's onePacket). */
  onePacket?: true;
  /** tunvs's --sloppy (tunvs list's `sloppy`): the config's sloppy. */
  sloppy?: true;
  persistence?: { timeoutSec: number; netmask?: number | string; prefix6?: number; group?: string };
  /** A firewall-mark service's mark, until fwmarkServices makes it a service per VIP:port. */
  fwmark?: number;
  synProxy?: 'on' | 'off';
  /** DPVS's per-service conn-timeout: the config's idleTimeout. */
  idleTimeout?: number;
  servers: Map<string, RuleServer>;
  laddrs: string[];
  /** The config's `healthCheck`, when the source checks the servers. */
  healthCheck?: Record<string, unknown>;
  /** Client prefixes let in (none: all) and kept out (DPVS's allow / deny address groups;
   * tunvs list's `allow`, `deny`). */
  acl?: { allow?: string[]; deny?: string[] };
  /** tunvs's --max-new-per-sec (tunvs list's `rate`): the config's maxNewPerSec. */
  maxNewPerSec?: number;
  /** keepalived's sorry_server, quorum, hysteresis, quorum_up and quorum_down. */
  sorryServer?: { address: string; port: number };
  quorum?: number;
  hysteresis?: number;
  quorumUp?: string[];
  quorumDown?: string[];
}

/** IPVS's `-p` / keepalived's `persistence_timeout` without a value (libipvs
 * IPVS_SVC_PERSISTENT_TIMEOUT, 6 minutes). */
export const IPVS_PERSISTENT_DEFAULT_SEC = 360;
/** ipvsadm's default scheduler (DEF_SCHED). */
export const IPVS_DEFAULT_SCHEDULER = 'wlc';

/** IPVS persistence (`-p T -M MASK`, keepalived's persistence_timeout and _granularity) as
 * the config's: the mask is a prefix length for IPv6, a length or a.b.c.d for IPv4. */
export function ipvsPersistence(
  vip: string,
  timeoutSec: number,
  mask: string | undefined,
): NonNullable<RuleService['persistence']> {
  if (mask === undefined) return { timeoutSec };
  if (vip.includes(':')) return { timeoutSec, prefix6: Number(mask) };
  return { timeoutSec, netmask: /^\d+$/.test(mask) ? Number(mask) : mask };
}

/** What to use instead of each IPVS scheduler tunvs lacks (said in the error). */
const SCHEDULER_ADVICE: Record<string, string> = {
  lblc: 'sh or mh (lblc keeps a destination address on one server, for caches; a tunvs service has one destination, its VIP)',
  lblcr:
    'sh or mh (lblcr keeps a destination address on a set of servers, for caches; a tunvs service has one destination, its VIP)',
  dh: 'sh or mh (dh hashes the destination address, for caches; a tunvs service has one destination, its VIP)',
  conhash: 'sh or mh (consistent hashing by the client)',
};

/** An IPVS scheduler name as tunvs's, through the operator's map; refused with the nearest. */
export function tunvsScheduler(name: string, o: ImportOptions, fail: (message: string) => never): string {
  const sched = o.schedulerMap?.[name] ?? name;
  if ((SCHEDULER_NAMES as readonly string[]).includes(sched)) return sched;
  const advice = SCHEDULER_ADVICE[sched];
  return fail(
    `scheduler ${sched} is not in tunvs (${SCHEDULER_NAMES.join(', ')})` +
      (advice ? `; the nearest is ${advice}: map it with --map-scheduler ${sched}=...` : ''),
  );
}

/**
 * IPVS's scheduler flags (ipvsadm -b, keepalived's sh-port ... keywords) as service `s`'s
 * hashPort / hashFallback. Each names a scheduler (sh-port) or is a number (flag-1: the
 * fallback, flag-2: the port, of sh and mh alike); as ipvsadm, a named flag must be of the
 * service's IPVS scheduler, `ipvs`; and the tunvs one it maps to must hash the client.
 */
export function schedulerFlags(
  s: RuleService,
  ipvs: string,
  flags: readonly string[],
  fail: (m: string) => never,
): void {
  for (const flag of flags) {
    const m = /^(?:(sh|mh)-(port|fallback)|flag-([123]))$/.exec(flag);
    if (!m) fail(`scheduler flag ${flag} is not one of IPVS's (sh-port, sh-fallback, mh-port, mh-fallback, flag-1..3)`);
    if (m[1] !== undefined && m[1] !== ipvs) fail(`scheduler flag ${flag} is for scheduler ${m[1]}, not ${ipvs}`);
    if (m[3] === '3') fail('scheduler flag flag-3 means nothing to sh and mh, nor to tunvs');
    if (s.scheduler !== 'sh' && s.scheduler !== 'mh')
      fail(`scheduler flag ${flag}: tunvs scheduler ${s.scheduler} does not hash the client (sh and mh do)`);
    if (m[2] === 'port' || m[3] === '2') s.hashPort = true;
    else s.hashFallback = true;
  }
}

/** The services (in order) and timeouts as a config document, validated. */
export function buildConfig(
  services: readonly RuleService[],
  timeouts: Partial<TimeoutsSec>,
  notes: string[],
  o: ImportOptions,
): ImportResult {
  const out = services.map((s) => toService(s, o));
  // IPVS schedules single packets of UDP only, and ignores the flag on TCP.
  for (const s of services)
    if (s.onePacket && s.protocol === 'tcp')
      notes.push(
        `line ${s.line}: one-packet scheduling (ops) on tcp ${s.vip}:${s.port}, which IPVS applies to UDP only: left out`,
      );
  if (Object.keys(timeouts).length === 0 && out.length > 0)
    notes.push(
      "no timeouts set: the kernel's IPVS keeps idle TCP connections 900 s and FIN_WAIT 120 s, " +
        "tunvs 90 s and 7 s (DPVS's): to keep IPVS's, add timeouts: { established: 900, finWait: 120 } " +
        '(or give the services that need it an idleTimeout)',
    );
  if (out.some((x) => x.mode === 'fullnat' && x.synProxy === undefined))
    notes.push(
      'FULLNAT services without a SYN proxy setting take tunvs synProxy: auto (cookies only under a SYN flood, docs/synproxy.md)',
    );
  const config = { ...(Object.keys(timeouts).length > 0 ? { timeouts } : {}), services: out };
  validate(config, services);
  return { config, notes };
}

function toService(s: RuleService, o: ImportOptions): Record<string, unknown> {
  const fail = (line: number, message: string): never => {
    throw new ImportError(line, message, s.file);
  };
  const servers = [...s.servers.values()];
  if (servers.length === 0)
    fail(
      s.line,
      `service ${s.protocol} ${s.vip}:${s.port} has no real servers, so its forwarding method is unknown: add them, or leave the service out`,
    );
  const mode = servers[0]!.mode;
  const other = servers.find((r) => r.mode !== mode);
  if (other)
    fail(
      other.line,
      `service ${s.protocol} ${s.vip}:${s.port} mixes forwarding methods (${mode} on line ${servers[0]!.line}, ${other.mode} here): a tunvs service has one mode; split the servers into two services`,
    );
  const tunnel = JSON.stringify(servers[0]!.tunnel ?? null);
  const otherTunnel = servers.find((r) => JSON.stringify(r.tunnel ?? null) !== tunnel);
  if (mode === 'tunnel' && otherTunnel)
    fail(
      otherTunnel.line,
      `service ${s.protocol} ${s.vip}:${s.port} mixes tunnel types (${tunnelWords(servers[0]!.tunnel)} on line ${servers[0]!.line}, ${tunnelWords(otherTunnel.tunnel)} here): a tunvs service has one; split the servers into two services`,
    );
  const v6 = s.vip.includes(':');
  let laddrs = s.laddrs;
  if ((mode === 'fullnat' || mode === 'tunnel') && laddrs.length === 0) {
    laddrs = (o.laddrs ?? []).filter((a) => a.includes(':') === v6);
    if (laddrs.length === 0)
      fail(
        s.line,
        mode === 'fullnat'
          ? `FULLNAT service ${s.vip}:${s.port} has no local addresses in the source: give them with --laddr A`
          : `TUNNEL service ${s.vip}:${s.port} needs the tunnel's outer source address: give it with --laddr A`,
      );
    if (mode === 'tunnel') laddrs = laddrs.slice(0, 1);
  }
  if (mode !== 'fullnat' && mode !== 'tunnel' && s.laddrs.length > 0)
    fail(s.line, `service ${s.vip}:${s.port} has local addresses but its servers are ${mode}`);
  return {
    name: `${s.protocol}-${s.vip.replace(/:/g, '-')}-${s.port}`,
    protocol: s.protocol,
    vip: s.vip,
    port: s.port,
    mode,
    scheduler: s.scheduler,
    ...(s.hashPort ? { hashPort: true } : {}),
    ...(s.hashFallback ? { hashFallback: true } : {}),
    ...(s.onePacket && s.protocol === 'udp' ? { onePacket: true } : {}),
    ...(s.sloppy ? { sloppy: true } : {}),
    ...(mode === 'tunnel' && servers[0]!.tunnel ? { tunnel: servers[0]!.tunnel } : {}),
    ...(laddrs.length > 0 ? { localAddresses: laddrs } : {}),
    ...(s.persistence ? { persistence: s.persistence } : {}),
    ...(s.synProxy ? { synProxy: s.synProxy } : {}),
    ...(s.idleTimeout !== undefined ? { idleTimeout: s.idleTimeout } : {}),
    ...(s.healthCheck ? { healthCheck: s.healthCheck } : {}),
    ...(s.acl ? { acl: { allow: s.acl.allow ?? [], deny: s.acl.deny ?? [] } } : {}),
    ...(s.maxNewPerSec !== undefined ? { maxNewPerSec: s.maxNewPerSec } : {}),
    ...(s.sorryServer ? { sorryServer: s.sorryServer } : {}),
    ...(s.quorum !== undefined ? { quorum: s.quorum } : {}),
    ...(s.hysteresis !== undefined ? { hysteresis: s.hysteresis } : {}),
    ...(s.quorumUp ? { quorumUp: s.quorumUp } : {}),
    ...(s.quorumDown ? { quorumDown: s.quorumDown } : {}),
    realServers: servers.map((r) => ({
      address: r.address,
      port: r.port,
      weight: r.weight,
      ...(r.maxConns !== undefined ? { maxConns: r.maxConns } : {}),
      ...(r.minConns !== undefined ? { minConns: r.minConns } : {}),
    })),
  };
}

/** The config's own checks; an error names the source line of the service it is about. */
function validate(config: ImportResult['config'], services: readonly RuleService[]): void {
  try {
    const c = parseConfig(config);
    resolveServices(c.services, new IdRegistry());
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const i = /^services\[(\d+)\]/.exec(e.path);
    const s = i ? services[Number(i[1])] : undefined;
    throw new ImportError(s?.line ?? 0, `as a tunvs service: ${e.message}`, s?.file);
  }
}

/** The config document as YAML: a block per service, a line per real server. */
export function importYaml(r: ImportResult, what: string): string {
  const doc = new Document(r.config, { aliasDuplicateObjects: false });
  const services = doc.get('services') as YAMLSeq<YAMLMap>;
  for (const s of services.items) {
    for (const k of [
      'localAddresses',
      'persistence',
      'tunnel',
      'healthCheck',
      'acl',
      'sorryServer',
      'quorumUp',
      'quorumDown',
    ]) {
      const v = s.get(k) as YAMLSeq | YAMLMap | undefined;
      if (v) v.flow = true;
    }
    for (const r of (s.get('realServers') as YAMLSeq<YAMLMap>).items) r.flow = true;
  }
  const t = doc.get('timeouts') as YAMLMap | undefined;
  if (t) t.flow = true;
  doc.commentBefore =
    ` tunvs services from ${what}.\n` +
    ' Check them, then merge them into the config (docs/config.md has every other field).';
  return doc.toString({ lineWidth: 0 });
}
