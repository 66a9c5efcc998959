/**
 * `tunvs import keepalived`: the LVS part of a keepalived.conf as tunvs services — its
 * `virtual_server` blocks (and `virtual_server_group`s), DPVS's and Alibaba's FULLNAT
 * keepalived included (`lvs_method FNAT`, `local_address_group` + `laddr_group_name`,
 * `syn_proxy`, `deny_address_group` / `allow_address_group` + `daddr_group_name` /
 * `waddr_group_name` as the service's `acl`), with each service's real-server checks as one
 * tunvs `healthCheck` (TCP_CHECK, HTTP_GET, SSL_GET, UDP_CHECK, DNS_CHECK, SMTP_CHECK,
 * MISC_CHECK). The VRRP
 * part is keepalived's to keep doing beside tunvs (docs/ha.md) and is left alone.
 *
 *   importKeepalived: parseBlocks (words, `{ }` blocks, comments, quotes, include) →
 *   the root (global_defs lvs_timeouts, address groups, virtual servers) → virtualServer
 *   (the service's keywords, each real_server) → healthCheck (every server's checker as one
 *   tunvs check) → buildConfig (import.ts).
 */

import { dirname, join, resolve } from 'node:path';
import { ALL_PORTS } from '../constants.js';
import type { TimeoutsSec } from '../conn/state.js';
import type { ModeName } from '../nat/modes/mode.js';
import { formatAddress, parseAddress, parseCidr } from '../service/addr.js';
import { DNS_QUERY_TYPES, type TunnelSpec } from '../service/service.js';
import {
  buildConfig,
  fwmarkServices,
  connLimits,
  ImportError,
  IPVS_DEFAULT_SCHEDULER,
  IPVS_PERSISTENT_DEFAULT_SEC,
  ipvsPersistence,
  ipvsTunnel,
  schedulerFlags,
  tunvsScheduler,
  type ImportOptions,
  type ImportResult,
  type RuleServer,
  type RuleService,
} from './import.js';

export interface KeepalivedSource {
  /** The file's path (for its includes and the errors); text as read. */
  file: string;
  text: string;
  /** Read an included file; list a directory (for an include's `*`). */
  read: (path: string) => string;
  readdir: (dir: string) => string[];
}

interface Stmt {
  file: string;
  line: number;
  words: string[];
  block?: Stmt[];
}

/** keepalived's checker defaults (check_data.c, check_api.c): delay_loop 60 s,
 * connect_timeout 5 s, retry 1, delay_before_retry 1 s. */
const KEEPALIVED_DELAY_LOOP_SEC = 60;
const KEEPALIVED_CONNECT_TIMEOUT_SEC = 5;
const KEEPALIVED_RETRY = 1;
const KEEPALIVED_DELAY_BEFORE_RETRY_SEC = 1;

/** What the VRRP side and the rest of keepalived configure: not services, left to keepalived. */
const NOT_LVS = new Set([
  'vrrp_instance',
  'vrrp_sync_group',
  'vrrp_script',
  'vrrp_track_process',
  'vrrp_track_file',
  'track_file',
  'static_ipaddress',
  'static_routes',
  'static_rules',
  'garp_group',
  'linkbeat_interfaces',
  'net_namespace',
  'bfd_instance',
  'deny_address_group',
  'allow_address_group',
]);

/** Service and server keywords that change nothing while every server is up: skipped, named. */
const SKIPPED = new Set([
  'sorry_server_inhibit',
  'omega',
  'ha_suspend',
  'smtp_alert',
  'warmup',
  'inhibit_on_failure',
  'log_all_failures',
  'hashed',
  'vip_bind_dev',
]);

/** Keywords whose behaviour tunvs lacks: refused, with what to do. */
const REFUSED: Record<string, string> = {
  persistence_engine: 'persistence engines (sip) have no tunvs equivalent',
  proxy_protocol: 'tunvs passes the client address as TOA, not the PROXY protocol',
  bps: 'per-service bandwidth limits have no tunvs equivalent',
  limit_proportion: 'per-service bandwidth limits have no tunvs equivalent',
  'src-range': 'match services have no tunvs equivalent',
  'dst-range': 'match services have no tunvs equivalent',
  iif: 'match services have no tunvs equivalent',
  oif: 'match services have no tunvs equivalent',
  hash_target: 'hash targets have no tunvs equivalent',
  quic: 'QUIC connection ids have no tunvs equivalent',
  daddr_group_name: "write the service's acl deny list in the config (docs/config.md)",
  waddr_group_name: "write the service's acl allow list in the config (docs/config.md)",
  ip_family: 'only firewall-mark services need it, and tunvs has none',
};

const METHODS: Record<string, ModeName> = { NAT: 'nat', DR: 'dr', TUN: 'tunnel', FNAT: 'fullnat' };

/** Words and `{ }` blocks, a statement per line; `#`/`!` comments; "quoted words"; `include`. */
function parseBlocks(src: KeepalivedSource, file: string, text: string, depth = 0): Stmt[] {
  const root: Stmt[] = [];
  const stack: Stmt[][] = [root];
  const openers: Stmt[] = [];
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const tokens = lines[n]!.match(/"[^"]*"|[{}]|[^\s{}"]+/g) ?? [];
    let words: string[] = [];
    const end = (): void => {
      if (words.length > 0) stack[stack.length - 1]!.push({ file, line: n + 1, words });
      words = [];
    };
    for (const t of tokens) {
      if (t.startsWith('#') || t.startsWith('!')) break;
      if (t === '{') {
        const here = stack[stack.length - 1]!;
        end();
        const owner = here[here.length - 1];
        if (!owner || owner.block) throw new ImportError(n + 1, 'a block ({) with no keyword before it', file);
        owner.block = [];
        stack.push(owner.block);
        openers.push(owner);
      } else if (t === '}') {
        end();
        if (stack.length === 1) throw new ImportError(n + 1, 'a } with no block open', file);
        stack.pop();
        openers.pop();
      } else {
        words.push(t.startsWith('"') ? t.slice(1, -1) : t);
      }
    }
    end();
  }
  const open = openers[openers.length - 1];
  if (open) throw new ImportError(open.line, `the block of ${open.words[0]!} is not closed (a } is missing)`, file);
  return expandIncludes(src, file, root, depth);
}

/** The addresses a vrrp_instance puts on its interfaces when master (its virtual_ipaddress
 * and virtual_ipaddress_excluded lines: the first word, without a prefix length), canonical. */
function vrrpAddresses(instance: Stmt): string[] {
  return (instance.block ?? [])
    .filter((b) => b.words[0] === 'virtual_ipaddress' || b.words[0] === 'virtual_ipaddress_excluded')
    .flatMap((b) => (b.block ?? []).map((line) => canonical(line.words[0]!.split('/')[0]!)));
}

/** An address in its one text form (IPv6 compressed, lower case); other text as it is. */
function canonical(text: string): string {
  const a = parseAddress(text);
  return a ? formatAddress(a.af, a.words) : text;
}

function expandIncludes(src: KeepalivedSource, file: string, stmts: Stmt[], depth: number): Stmt[] {
  const out: Stmt[] = [];
  for (const s of stmts) {
    if (s.block) s.block = expandIncludes(src, file, s.block, depth);
    if (s.words[0] !== 'include') {
      out.push(s);
      continue;
    }
    if (depth > 8) throw new ImportError(s.line, 'includes nested more than 8 deep', file);
    const pattern = resolve(dirname(file), s.words[1] ?? '');
    const base = pattern.slice(pattern.lastIndexOf('/') + 1);
    const names = base.includes('*')
      ? src
          .readdir(dirname(pattern))
          .filter((f) => new RegExp(`^${base.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`).test(f))
          .sort()
          .map((f) => join(dirname(pattern), f))
      : [pattern];
    for (const f of names) {
      let text: string;
      try {
        text = src.read(f);
      } catch (e) {
        throw new ImportError(s.line, `include ${f}: ${(e as Error).message}`, file);
      }
      out.push(...parseBlocks(src, f, text, depth + 1));
    }
  }
  return out;
}

/** The LVS services of a keepalived.conf, validated; the main file's lines are named bare,
 * an included file's with its path. */
export function importKeepalived(src: KeepalivedSource, o: ImportOptions = {}): ImportResult {
  const notes: string[] = [];
  const timeouts: Partial<TimeoutsSec> = {};
  const named: NamedGroups = { vs: new Map(), laddr: new Map(), allow: new Map(), deny: new Map() };
  const servers: Stmt[] = [];
  const left = new Set<string>();
  /** The addresses the VRRP instances put on the node, canonical, with the instance. */
  const vrrp = new Map<string, string>();
  const fail = (s: Stmt, message: string): never => {
    throw new ImportError(s.line, message, s.file === src.file ? undefined : s.file);
  };
  for (const s of parseBlocks(src, src.file, src.text)) {
    const k = s.words[0]!;
    if (k === 'global_defs') {
      for (const g of s.block ?? []) if (g.words[0] === 'lvs_timeouts') lvsTimeouts(g, timeouts, fail);
    } else if (k === 'local_address_group') {
      named.laddr.set(
        s.words[1] ?? '',
        (s.block ?? []).flatMap((e) => addressRange(e, e.words[0]!, fail)),
      );
    } else if (k === 'deny_address_group' || k === 'allow_address_group') {
      // DPVS's black and white lists of client addresses: the services' acl.
      (k === 'deny_address_group' ? named.deny : named.allow).set(
        s.words[1] ?? '',
        (s.block ?? []).flatMap((e) => addressPrefixes(e, e.words[0]!, fail)),
      );
    } else if (k === 'virtual_server_group') {
      named.vs.set(s.words[1] ?? '', s.block ?? []);
    } else if (k === 'virtual_server') {
      servers.push(s);
    } else if (NOT_LVS.has(k)) {
      left.add(k);
      if (k === 'vrrp_instance') for (const a of vrrpAddresses(s)) vrrp.set(a, s.words[1] ?? '');
    } else {
      fail(s, `unknown keyword ${k} (not one keepalived's checker knows either)`);
    }
  }
  if (left.size > 0)
    notes.push(`left to keepalived (not LVS services): ${[...left].join(', ')}; docs/ha.md runs it beside tunvs`);
  const services: RuleService[] = [];
  const seen = new Map<string, Stmt>();
  for (const vs of servers) {
    const made = virtualServer(vs, named, o, notes, fail).flatMap((s) =>
      s.fwmark === undefined ? [s] : fwmarkServices(s, s.fwmark, o, notes),
    );
    for (const s of made) {
      const key = `${s.protocol} ${s.vip} ${s.port}`;
      const first = seen.get(key);
      if (first) fail(vs, `service ${s.protocol} ${s.vip}:${s.port} is configured twice (first on line ${first.line})`);
      seen.set(key, vs);
      if (s.file === src.file) delete s.file; // the main file's lines are named bare
      services.push(s);
    }
  }
  // A VIP that a VRRP instance puts on the node: with tunvs it must not be an address there.
  const vips = new Set(services.flatMap((s) => (s.vip === '' ? [] : [canonical(s.vip)])));
  for (const [address, instance] of vrrp)
    if (vips.has(address))
      notes.push(
        `${address} is a VIP and an address of vrrp_instance ${instance}: take it out of the instance's addresses, since an address of the LB never reaches tunvs (the kernel keeps its packets); let VRRP float the routers' next hop instead (docs/ha.md)`,
      );
  // One note per virtual server, however many of its servers gave cause.
  return buildConfig(services, timeouts, [...new Set(notes)], o);
}

function lvsTimeouts(g: Stmt, t: Partial<TimeoutsSec>, fail: (s: Stmt, m: string) => never): void {
  const fields: Record<string, keyof TimeoutsSec> = { tcp: 'established', tcpfin: 'finWait', udp: 'udp' };
  for (let i = 1; i + 1 < g.words.length; i += 2) {
    const f = fields[g.words[i]!];
    const v = Number(g.words[i + 1]);
    if (!f || !Number.isInteger(v) || v < 0)
      fail(g, `lvs_timeouts takes tcp N tcpfin N udp N, got ${g.words.join(' ')}`);
    if (v > 0) t[f] = v;
  }
}

/** The named groups a virtual_server refers to. */
interface NamedGroups {
  vs: Map<string, Stmt[]>;
  laddr: Map<string, string[]>;
  /** DPVS's allow_address_group / deny_address_group: client prefixes. */
  allow: Map<string, string[]>;
  deny: Map<string, string[]>;
}

/** keepalived's address range (the last IPv4 byte or IPv6 group: 10.0.0.1-10), checked: the
 * text before the last part, the part's base, and its first and last value; undefined for a
 * plain address. */
function parseRange(
  s: Stmt,
  word: string,
  fail: (s: Stmt, m: string) => never,
): { head: string; v6: boolean; from: number; to: number } | undefined {
  const m = /^(.*?)([0-9a-fA-F]+)-([0-9a-fA-F]+)$/.exec(word);
  if (!m) {
    if (parseAddress(word) === undefined) fail(s, `${word} is not an address`);
    return undefined;
  }
  const v6 = m[1]!.includes(':');
  const r = { head: m[1]!, v6, from: parseInt(m[2]!, v6 ? 16 : 10), to: parseInt(m[3]!, v6 ? 16 : 10) };
  const last = (i: number): string => `${r.head}${v6 ? i.toString(16) : i}`;
  if (!(r.to >= r.from) || parseAddress(last(r.from)) === undefined || parseAddress(last(r.to)) === undefined)
    fail(s, `${word} is not an address range`);
  return r;
}

/** An address, or keepalived's range, as addresses (local addresses: up to 1024). */
function addressRange(s: Stmt, word: string, fail: (s: Stmt, m: string) => never): string[] {
  const r = parseRange(s, word, fail);
  if (!r) return [word];
  if (r.to - r.from > 1023) fail(s, `${word} is not a range of up to 1024 addresses`);
  const out: string[] = [];
  for (let i = r.from; i <= r.to; i++) out.push(`${r.head}${r.v6 ? i.toString(16) : i}`);
  return out;
}

/** An address, a prefix, or keepalived's range, as the fewest prefixes that cover it (an
 * acl's entries). DPVS's `ipset:` members are refused: tunvs lists prefixes. */
function addressPrefixes(s: Stmt, word: string, fail: (s: Stmt, m: string) => never): string[] {
  if (word.startsWith('ipset:'))
    fail(s, `${word}: tunvs's acl lists prefixes, not ipsets: write the set's prefixes in the group`);
  if (word.includes('/')) {
    if (parseCidr(word) === undefined) fail(s, `${word} is not a prefix`);
    return [word];
  }
  const r = parseRange(s, word, fail);
  if (!r) return [`${word}/${word.includes(':') ? 128 : 32}`];
  const bits = r.v6 ? 128 : 32;
  const out: string[] = [];
  for (let i = r.from; i <= r.to;) {
    let size = 1; // the largest aligned block from i that stays within the range
    while (i % (size * 2) === 0 && i + size * 2 - 1 <= r.to) size *= 2;
    out.push(`${r.head}${r.v6 ? i.toString(16) : i}/${bits - Math.log2(size)}`);
    i += size;
  }
  return out;
}

/** A virtual_server's port; none, or 0: every port of the VIP (persistent, as keepalived
 * requires). */
function vipPort(s: Stmt, port: string | undefined, fail: (s: Stmt, m: string) => never): number {
  if (port === undefined) return ALL_PORTS;
  const n = Number(port);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(s, `${port} is not a port`);
  return n;
}

/**
 * The servers and check of an all-ports member (port 0) or a firewall-mark service (`what`
 * says which). IPVS keeps the client's port for every connection of these and ignores a real
 * server's port, which keepalived's checkers still use as theirs; tunvs gives the servers
 * port 0 (a mark's: its members' ports, fwmarkServices) and the check that port, one for all.
 */
function allPortsServers(
  vs: Stmt,
  what: string,
  realServers: readonly { rs: RuleServer; check?: ServerCheck; stmt: Stmt }[],
  healthCheck: Record<string, unknown> | undefined,
  notes: string[],
  fail: (s: Stmt, m: string) => never,
): { servers: Map<string, RuleServer>; healthCheck?: Record<string, unknown> } {
  const servers = new Map<string, RuleServer>();
  for (const { rs, stmt } of realServers) {
    const key = `${rs.address}|${ALL_PORTS}`;
    if (servers.has(key)) fail(stmt, `real_server ${rs.address} is in this ${what} twice`);
    servers.set(key, { ...rs, port: ALL_PORTS });
  }
  if (realServers.some((r) => r.rs.port !== ALL_PORTS))
    notes.push(
      `line ${vs.line}: ${what} keeps the port each client asked for, as IPVS does: the real servers' ports are only their checks' ports`,
    );
  if (healthCheck === undefined || healthCheck.port !== undefined || healthCheck.type === 'exec')
    return { servers, ...(healthCheck ? { healthCheck } : {}) };
  const ports = new Set(realServers.map((r) => r.check!.port));
  if (ports.size !== 1)
    fail(vs, 'the real servers are checked on different ports: tunvs checks one port for all servers of a service');
  const port = [...ports][0]!;
  if (port === ALL_PORTS) fail(vs, `${what} whose real servers have no port: give their checkers a connect_port`);
  return { servers, healthCheck: { ...healthCheck, port } };
}

interface CheckSettings {
  delayLoop?: number;
  connectTimeout?: number;
  retry?: number;
  delayBeforeRetry?: number;
  /** keepalived's alpha: servers start down. */
  alpha?: boolean;
  /** A real server's notify_up / notify_down command lines. */
  notifyUp?: string;
  notifyDown?: string;
  /** The Host of HTTP_GET / SSL_GET (a url's own wins). */
  virtualhost?: string;
}

/** The timer and retry keywords a service, a server or a checker may carry (true: taken). */
function checkSetting(w: string[], c: CheckSettings): boolean {
  const v = Number(w[1]);
  if (w[0] === 'delay_loop') c.delayLoop = v;
  else if (w[0] === 'connect_timeout') c.connectTimeout = v;
  else if (w[0] === 'retry' || w[0] === 'nb_get_retry') c.retry = v;
  else if (w[0] === 'virtualhost') c.virtualhost = w[1];
  else if (w[0] === 'delay_before_retry') c.delayBeforeRetry = v;
  else if (w[0] === 'alpha') c.alpha = true;
  else return false;
  return true;
}

/** One `virtual_server` (a group's: one per member) as services. */
function virtualServer(
  vs: Stmt,
  named: NamedGroups,
  o: ImportOptions,
  notes: string[],
  fail: (s: Stmt, m: string) => never,
): RuleService[] {
  const [, a, b] = vs.words;
  const where = `line ${vs.line} (virtual_server ${vs.words.slice(1).join(' ')})`;
  const members: { addr: string; port: number }[] = [];
  /** A firewall-mark service's mark: a service per VIP:port it covers (--fwmark), made by
   * fwmarkServices once this one is read. */
  let fwmark: number | undefined;
  if (a === 'fwmark') {
    fwmark = Number(b);
    if (!Number.isInteger(fwmark) || fwmark < 1 || fwmark > 0xffffffff)
      fail(vs, `virtual_server fwmark ${b ?? ''}: a firewall mark is an integer 1..4294967295`);
    members.push({ addr: '', port: ALL_PORTS });
  } else if (a === 'group') {
    const g = named.vs.get(b ?? '');
    if (!g) fail(vs, `virtual_server_group ${b ?? ''} is not defined`);
    if (g.length === 0) fail(vs, `virtual_server_group ${b ?? ''} is empty: give it a VIP and port (or a range)`);
    for (const e of g) {
      if (e.words[0] === 'fwmark')
        fail(
          e,
          'a firewall-mark member of a group: give its VIP:ports to the group itself, or write a virtual_server fwmark N (with --fwmark N=...)',
        );
      const port = vipPort(e, e.words[1], fail);
      for (const addr of addressRange(e, e.words[0]!, fail)) members.push({ addr, port });
    }
  } else {
    if (a === undefined || parseAddress(a) === undefined) fail(vs, `virtual_server ${a ?? ''}: not an address`);
    members.push({ addr: a, port: vipPort(vs, b, fail) });
  }
  let scheduler: string | undefined;
  let method: { mode: ModeName; tunnel?: TunnelSpec } | undefined;
  let protocol: 'tcp' | 'udp' | undefined;
  let timeoutSec: number | undefined;
  let granularity: string | undefined;
  let laddrs: string[] = [];
  const acl: { allow?: string[]; deny?: string[] } = {};
  let synProxy: 'on' | undefined;
  let onePacket = false;
  let idleTimeout: number | undefined;
  let sorry: { address: string; port: number } | undefined;
  let sorryMethod: ModeName | undefined;
  let quorum: number | undefined;
  let hysteresis: number | undefined;
  /** quorum_up / quorum_down: the statement (its command line is words[1]). */
  const quorumCmd: { up?: Stmt; down?: Stmt } = {};
  let defaultWeight = 1;
  const checks: CheckSettings = {};
  const rsStmts: Stmt[] = [];
  /** sh-port, sh-fallback, mh-..., flag-1..3: read once the scheduler is known. */
  const flagStmts: Stmt[] = [];
  let ipvsScheduler = IPVS_DEFAULT_SCHEDULER;
  const skipped = new Set<string>();
  for (const s of vs.block ?? []) {
    const [k, v] = s.words as [string, string | undefined];
    if (k === 'lb_algo' || k === 'lvs_sched') {
      ipvsScheduler = v ?? '';
      scheduler = tunvsScheduler(ipvsScheduler, o, (m) => {
        throw new ImportError(s.line, m, s.file);
      });
    } else if (/^(?:sh|mh)-(?:port|fallback)$|^flag-\d$/.test(k)) flagStmts.push(s);
    else if (k === 'lb_kind' || k === 'lvs_method') method = forwarding(s, fail);
    else if (k === 'protocol') {
      if (v !== 'TCP' && v !== 'UDP') fail(s, `protocol ${v ?? ''}: tunvs balances TCP and UDP`);
      protocol = v === 'TCP' ? 'tcp' : 'udp';
    } else if (k === 'persistence_timeout') timeoutSec = v === undefined ? IPVS_PERSISTENT_DEFAULT_SEC : Number(v);
    else if (k === 'persistence_granularity') granularity = v;
    else if (k === 'laddr_group_name') {
      const g = named.laddr.get(v ?? '');
      if (!g) fail(s, `local_address_group ${v ?? ''} is not defined`);
      laddrs = g!;
    } else if (k === 'daddr_group_name' || k === 'waddr_group_name') {
      const deny = k === 'daddr_group_name';
      const g = (deny ? named.deny : named.allow).get(v ?? '');
      if (!g) fail(s, `${deny ? 'deny' : 'allow'}_address_group ${v ?? ''} is not defined`);
      acl[deny ? 'deny' : 'allow'] = g!;
    } else if (k === 'syn_proxy') synProxy = 'on';
    else if (k === 'ops') onePacket = true;
    // DPVS's keepalived: the service's conn-timeout.
    else if (k === 'establish_timeout') idleTimeout = Number(v);
    else if (k === 'sorry_server') {
      const [, addr, port] = s.words;
      if (addr === undefined || parseAddress(addr) === undefined || !/^\d+$/.test(port ?? ''))
        fail(s, `sorry_server ${s.words.slice(1).join(' ')}: give an address and a port`);
      sorry = { address: addr, port: Number(port) };
    } else if (k === 'sorry_server_lvs_method') sorryMethod = forwarding(s, fail).mode;
    else if (k === 'quorum') quorum = Number(v);
    else if (k === 'hysteresis') hysteresis = Number(v);
    else if (k === 'quorum_up' || k === 'quorum_down') {
      quorumCmd[k === 'quorum_up' ? 'up' : 'down'] = s;
      if (s.words.length > 2)
        notes.push(`${where}: ${k} ${s.words.slice(2).join(' ')}: tunvs runs it as the check's user`);
    } else if (k === 'weight') defaultWeight = Number(v);
    else if (k === 'real_server') rsStmts.push(s);
    else if (checkSetting(s.words, checks)) continue;
    // A firewall-mark service's family: its members' addresses (--fwmark) say it.
    else if (k === 'ip_family' && fwmark !== undefined) continue;
    else if (REFUSED[k] !== undefined) fail(s, `${k}: ${REFUSED[k]}`);
    else if (SKIPPED.has(k)) skipped.add(k);
    else fail(s, `unknown keyword ${k} in a virtual_server`);
  }
  if (protocol === undefined && fwmark === undefined) {
    protocol = 'udp';
    notes.push(
      `${where}: no protocol, so UDP, as keepalived makes it (the kernel's default): write protocol TCP if you meant TCP`,
    );
  }
  if (scheduler === undefined) {
    scheduler = IPVS_DEFAULT_SCHEDULER;
    notes.push(`${where}: no lvs_sched, ${IPVS_DEFAULT_SCHEDULER} assumed (IPVS's default)`);
  }
  if (
    method === undefined &&
    rsStmts.some((r) => !(r.block ?? []).some((x) => /^(lb_kind|lvs_method)$/.test(x.words[0]!)))
  )
    notes.push(`${where}: no lvs_method, NAT (keepalived's default)`);
  const realServers = rsStmts.map((r) =>
    realServer(r, where, members[0]!.port, method ?? { mode: 'nat' }, defaultWeight, checks, notes, skipped, fail),
  );
  const twice = realServers.find(
    (r, i) => realServers.findIndex((x) => x.rs.address === r.rs.address && x.rs.port === r.rs.port) !== i,
  );
  if (twice) fail(twice.stmt, `real_server ${twice.rs.address} ${twice.rs.port} is in this virtual_server twice`);
  if (skipped.size > 0)
    notes.push(
      `${where}: skipped (no effect while the servers are up; tunvs has no such setting): ${[...skipped].join(', ')}`,
    );
  const healthCheck = commonCheck(vs, realServers, notes, fail);
  if (sorryMethod !== undefined && sorryMethod !== (method?.mode ?? 'nat'))
    fail(vs, `sorry_server_lvs_method ${sorryMethod}: tunvs forwards to the sorry server as to the real servers`);
  const timed = sorry !== undefined || quorumCmd.up !== undefined || quorumCmd.down !== undefined;
  if (!timed && (quorum !== undefined || hysteresis !== undefined))
    notes.push(
      `${where}: quorum and hysteresis skipped: without a sorry_server, quorum_up or quorum_down they change nothing`,
    );
  /** A quorum command for the member at `addr` (its address in it as `{address}`, as a real
   * server's in its commands). */
  const quorumLine = (st: Stmt | undefined, addr: string): string[] | undefined => {
    if (!st) return undefined;
    const argv = commandLine(st.words[1] ?? '', addr);
    if (!argv) fail(st, `${st.words[0]!} ${st.words[1] ?? ''}: name the program by its absolute path`);
    return argv;
  };
  return members.map(({ addr, port }) => {
    const v6 = addr.includes(':');
    const up = quorumLine(quorumCmd.up, addr);
    const down = quorumLine(quorumCmd.down, addr);
    const p = timeoutSec !== undefined ? ipvsPersistence(addr, timeoutSec, granularity) : undefined;
    const what = fwmark !== undefined ? `firewall-mark service ${fwmark}` : 'an all-ports service';
    const all = port === ALL_PORTS ? allPortsServers(vs, what, realServers, healthCheck, notes, fail) : undefined;
    const check = all ? all.healthCheck : healthCheck;
    const service: RuleService = {
      line: vs.line,
      ...(vs.file ? { file: vs.file } : {}),
      protocol: protocol ?? 'tcp', // a firewall mark's members say theirs
      ...(fwmark !== undefined ? { fwmark } : {}),
      vip: addr,
      port,
      scheduler,
      ...(p ? { persistence: p } : {}),
      ...(synProxy ? { synProxy } : {}),
      ...(onePacket ? { onePacket: true as const } : {}),
      ...(idleTimeout ? { idleTimeout } : {}),
      ...(acl.allow?.length || acl.deny?.length ? { acl } : {}),
      ...(sorry ? { sorryServer: sorry } : {}),
      ...(timed && quorum !== undefined ? { quorum } : {}),
      ...(timed && hysteresis !== undefined ? { hysteresis } : {}),
      ...(up ? { quorumUp: up } : {}),
      ...(down ? { quorumDown: down } : {}),
      servers:
        all?.servers ??
        new Map(
          realServers.map(({ rs }) => [`${rs.address}|${rs.port}`, { ...rs, port: rs.portGiven ? rs.port : port }]),
        ),
      // A mark's members may be of both families: fwmarkServices gives each its own.
      laddrs: fwmark !== undefined ? laddrs : laddrs.filter((l) => l.includes(':') === v6),
      ...(check ? { healthCheck: check } : {}),
    };
    for (const st of flagStmts) schedulerFlags(service, ipvsScheduler, [st.words[0]!], (m) => fail(st, m));
    return service;
  });
}

/** `lb_kind` / `lvs_method M`: the mode, and for TUN its `type T`, `port P` and checksum word
 * (keepalived 2.x) as the config's `tunnel` (ipvsTunnel). */
function forwarding(s: Stmt, fail: (s: Stmt, m: string) => never): { mode: ModeName; tunnel?: TunnelSpec } {
  const [, m, ...rest] = s.words;
  const mode = METHODS[m ?? ''];
  if (!mode) fail(s, `${s.words[0]!} ${m ?? ''}: one of NAT, DR, TUN, FNAT`);
  if (mode !== 'tunnel' || rest.length === 0) return { mode };
  let type: string | undefined;
  let port: string | undefined;
  let csum: 'csum' | 'nocsum' | 'remcsum' | undefined;
  for (let i = 0; i < rest.length; i++) {
    const w = rest[i]!;
    if (w === 'type') type = rest[++i];
    else if (w === 'port') port = rest[++i];
    else if (w === 'csum' || w === 'nocsum' || w === 'remcsum') csum = w;
    else fail(s, `${s.words[0]!} TUN ${w}: not type, port or a checksum word (csum, nocsum, remcsum)`);
  }
  const tunnel = ipvsTunnel(type, csum, port, (msg) => fail(s, msg));
  return { mode, ...(tunnel ? { tunnel } : {}) };
}

/** keepalived's checkers tunvs runs, as its check types. */
const CHECKERS: Readonly<Record<string, ServerCheck['type']>> = {
  TCP_CHECK: 'tcp',
  HTTP_GET: 'http',
  SSL_GET: 'https',
  UDP_CHECK: 'udp',
  DNS_CHECK: 'dns',
  SMTP_CHECK: 'smtp',
  MISC_CHECK: 'exec',
};

/** What one server's checker asks, as a tunvs check (before the servers are compared): the
 * check's own fields (CHECK_FIELDS), the port and the timing. */
interface ServerCheck {
  type: 'tcp' | 'http' | 'https' | 'udp' | 'dns' | 'smtp' | 'exec';
  path?: string;
  expectStatus?: number;
  expectBodyMd5?: string;
  expectBodyMatch?: string;
  expectBodyNoMatch?: string;
  host?: string;
  payload?: string;
  expectReply?: string;
  query?: string;
  queryType?: string;
  helo?: string;
  command?: string[];
  user?: string;
  dynamicWeight?: boolean;
  /** The port checked (the server's own unless connect_port). */
  port: number;
  interval: number;
  timeout: number;
  fall: number;
  retryInterval?: number;
  startDown?: boolean;
  notifyUp?: string[];
  notifyDown?: string[];
}

/** The fields of a ServerCheck that every server of a service must have alike (their port
 * may differ: each checks its own). */
const CHECK_FIELDS = [
  'type',
  'path',
  'expectStatus',
  'expectBodyMd5',
  'expectBodyMatch',
  'expectBodyNoMatch',
  'host',
  'payload',
  'expectReply',
  'query',
  'queryType',
  'helo',
  'command',
  'user',
  'dynamicWeight',
  'interval',
  'timeout',
  'fall',
  'retryInterval',
  'startDown',
  'notifyUp',
  'notifyDown',
] as const;

/** A server's address in a command's arguments, as the exec check's `{address}` (MISC_CHECK
 * scripts name their server: `misc_path "/etc/keepalived/check.sh 10.0.0.21"`), so the
 * servers' commands compare alike. Only the whole address, not a longer one it begins. */
function addressPlaceholder(arg: string, addr: string): string {
  // A firewall mark's service has no address of its own (its members get theirs later).
  if (addr === '') return arg;
  const esc = addr.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return arg.replace(new RegExp(`(?<![0-9A-Za-z.:])${esc}(?![0-9A-Za-z.:])`, 'g'), '{address}');
}

/** A keepalived command line (misc_path, notify_up, ...) as argv, the server's address in it
 * as `{address}`; undefined unless the program is an absolute path. */
function commandLine(line: string, addr: string): string[] | undefined {
  const argv = line.split(/\s+/).filter((a) => a !== '');
  return argv[0]?.startsWith('/') ? argv.map((a) => addressPlaceholder(a, addr)) : undefined;
}

/** A url's keywords into `check` (HTTP_GET, SSL_GET). */
function urlBlock(u: Stmt, check: ServerCheck, fail: (s: Stmt, m: string) => never): void {
  let regex: string | undefined;
  let noMatch = false;
  for (const x of u.block ?? []) {
    const [k, v] = x.words as [string, string | undefined];
    if (k === 'path') check.path = v;
    else if (k === 'status_code') {
      if (x.words.length !== 2 || !/^\d{3}$/.test(v ?? ''))
        fail(x, `status_code ${x.words.slice(1).join(' ')}: tunvs expects one status (expectStatus)`);
      check.expectStatus = Number(v);
    } else if (k === 'digest') {
      if (!/^[0-9a-fA-F]{32}$/.test(v ?? '')) fail(x, `digest ${v ?? ''}: not an MD5 in hex`);
      check.expectBodyMd5 = v!.toLowerCase();
    } else if (k === 'regex') {
      try {
        new RegExp(v ?? '');
      } catch (e) {
        fail(x, `regex ${v ?? ''}: not a regular expression tunvs (JavaScript) reads: ${(e as Error).message}`);
      }
      regex = v;
    } else if (k === 'regex_no_match') noMatch = true;
    else if (['regex_options', 'regex_min_offset', 'regex_max_offset', 'regex_stop'].includes(k))
      fail(x, `${k}: tunvs matches the regex against the body's first 64 KiB, without options`);
    else if (k === 'virtualhost') check.host = v;
    else fail(x, `unknown keyword ${k} in a url`);
  }
  if (regex !== undefined) check[noMatch ? 'expectBodyNoMatch' : 'expectBodyMatch'] = regex;
}

/** One real server's checker (`c`) as a tunvs check of `addr`. */
function checker(
  c: Stmt,
  addr: string,
  port: number,
  settings: CheckSettings,
  notes: string[],
  where: string,
  skipped: Set<string>,
  fail: (s: Stmt, m: string) => never,
): ServerCheck {
  const kind = c.words[0]!;
  const type = CHECKERS[kind];
  if (type === undefined) fail(c, `${kind}: tunvs runs ${Object.keys(CHECKERS).join(', ')}`);
  const check: ServerCheck = { type, port, interval: 0, timeout: 0, fall: 0 };
  let urls = 0;
  let miscTimeout: number | undefined;
  for (const s of c.block ?? []) {
    const [k, v] = s.words as [string, string | undefined];
    const rest = s.words.slice(1);
    if (k === 'connect_port') check.port = Number(v);
    else if (k === 'connect_ip' && v !== addr)
      fail(s, `connect_ip ${v ?? ''}: tunvs checks the real server's own address`);
    else if (checkSetting(s.words, settings)) continue;
    else if (k === 'url' && (type === 'http' || type === 'https')) {
      if (++urls > 1) fail(s, 'a second url: tunvs checks one path');
      urlBlock(s, check, fail);
    } else if (type === 'udp' && k === 'payload') check.payload = hexWords(s, rest, fail);
    else if (type === 'udp' && k === 'require_reply') check.expectReply = hexWords(s, rest, fail);
    else if (type === 'udp' && (k === 'min_reply_length' || k === 'max_reply_length'))
      fail(s, `${k}: tunvs checks that the reply begins with require_reply's bytes, not its length`);
    else if (type === 'dns' && k === 'type') {
      const t = (v ?? '').toUpperCase();
      if (!(DNS_QUERY_TYPES as readonly string[]).includes(t))
        fail(s, `type ${v ?? ''}: tunvs asks ${DNS_QUERY_TYPES.join(', ')}`);
      check.queryType = t;
    } else if (type === 'dns' && k === 'name') check.query = v;
    else if (type === 'smtp' && k === 'helo_name') check.helo = v;
    else if (type === 'smtp' && k === 'host')
      fail(s, "a host block: tunvs checks the real server's own address (connect_ip, connect_port)");
    else if (type === 'exec' && k === 'misc_path') {
      const argv = commandLine(v ?? '', addr);
      if (!argv) fail(s, `misc_path ${v ?? ''}: name the program by its absolute path`);
      check.command = argv;
    } else if (type === 'exec' && k === 'misc_timeout') miscTimeout = Number(v);
    else if (type === 'exec' && k === 'misc_dynamic') check.dynamicWeight = true;
    else if (type === 'exec' && k === 'user') {
      check.user = v;
      if (s.words.length > 2)
        notes.push(`${where}: MISC_CHECK user ${rest.join(' ')}: tunvs runs it with the user's own group`);
    } else if (['http_protocol', 'fast_recovery', 'bindto', 'bind_port', 'bind_if', 'connect_ip'].includes(k)) continue;
    else if (SKIPPED.has(k)) skipped.add(k);
    else fail(s, `unknown keyword ${k} in ${kind}`);
  }
  if (type === 'exec' && check.command === undefined) fail(c, 'MISC_CHECK without misc_path');
  for (const [k, line] of [
    ['notifyUp', settings.notifyUp],
    ['notifyDown', settings.notifyDown],
  ] as const) {
    if (line === undefined) continue;
    const argv = commandLine(line, addr);
    if (!argv) fail(c, `notify_${k === 'notifyUp' ? 'up' : 'down'} ${line}: name the program by its absolute path`);
    check[k] = argv;
  }
  if ((type === 'http' || type === 'https') && check.expectStatus === undefined) {
    check.expectStatus = 200;
    if (check.expectBodyMd5 === undefined)
      notes.push(`${where}: ${kind} without status_code: keepalived takes 200-299, tunvs expects 200`);
  }
  if (type === 'http' || type === 'https') check.host ??= settings.virtualhost;
  check.interval = settings.delayLoop ?? KEEPALIVED_DELAY_LOOP_SEC;
  // A command's timeout is misc_timeout (keepalived: the delay_loop without one).
  check.timeout =
    type === 'exec' ? (miscTimeout ?? check.interval) : (settings.connectTimeout ?? KEEPALIVED_CONNECT_TIMEOUT_SEC);
  // keepalived retries `retry` times after a failure, delay_before_retry apart, then marks
  // the server down.
  check.fall = (settings.retry ?? KEEPALIVED_RETRY) + 1;
  if (check.fall > 1) check.retryInterval = settings.delayBeforeRetry ?? KEEPALIVED_DELAY_BEFORE_RETRY_SEC;
  if (settings.alpha) check.startDown = true;
  return check;
}

/** keepalived's hex strings (payload, require_reply): bytes in hex, spaces allowed between them. */
function hexWords(s: Stmt, words: string[], fail: (s: Stmt, m: string) => never): string {
  const text = words.join('');
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text))
    fail(s, `${s.words[0]} ${words.join(' ')}: tunvs takes bytes in hex, two digits each (no masks)`);
  return text.toLowerCase();
}

function realServer(
  r: Stmt,
  where: string,
  vport: number,
  method: { mode: ModeName; tunnel?: TunnelSpec },
  defaultWeight: number,
  vsChecks: CheckSettings,
  notes: string[],
  skipped: Set<string>,
  fail: (s: Stmt, m: string) => never,
): { rs: RuleServer & { portGiven: boolean }; check?: ServerCheck; stmt: Stmt } {
  const [, addr, port] = r.words;
  if (addr === undefined || parseAddress(addr) === undefined) fail(r, `real_server ${addr ?? ''}: not an address`);
  const rs: RuleServer & { portGiven: boolean } = {
    line: r.line,
    address: addr,
    port: port === undefined ? vport : Number(port),
    portGiven: port !== undefined,
    weight: defaultWeight,
    mode: method.mode,
    ...(method.tunnel ? { tunnel: method.tunnel } : {}),
  };
  const settings: CheckSettings = { ...vsChecks };
  const checkers: Stmt[] = [];
  let upper: number | undefined;
  let lower: number | undefined;
  for (const s of r.block ?? []) {
    const k = s.words[0]!;
    if (k === 'weight') rs.weight = Number(s.words[1]);
    else if (k === 'uthreshold') upper = Number(s.words[1]);
    else if (k === 'lthreshold') lower = Number(s.words[1]);
    else if (k === 'lb_kind' || k === 'lvs_method') {
      const f = forwarding(s, fail);
      rs.mode = f.mode;
      if (f.tunnel) rs.tunnel = f.tunnel;
      else delete rs.tunnel;
    } else if (k === 'notify_up' || k === 'notify_down') {
      settings[k === 'notify_up' ? 'notifyUp' : 'notifyDown'] = s.words[1];
      if (s.words.length > 2)
        notes.push(
          `${where}, real_server ${addr}: ${k} ${s.words.slice(2).join(' ')}: tunvs runs it as the check's user`,
        );
    } else if (/^[A-Z]+_(CHECK|GET)$/.test(k)) checkers.push(s);
    else if (checkSetting(s.words, settings)) continue;
    else if (REFUSED[k] !== undefined) fail(s, `${k}: ${REFUSED[k]}`);
    else if (SKIPPED.has(k)) skipped.add(k);
    else fail(s, `unknown keyword ${k} in a real_server`);
  }
  Object.assign(
    rs,
    connLimits(upper, lower, (m) => notes.push(`${where}, real_server ${addr}: ${m}`)),
  );
  if (checkers.length > 1) fail(checkers[1]!, 'a second checker: tunvs runs one check per real server');
  const c = checkers[0];
  if (!c) return { rs, stmt: r };
  const check = checker(c, addr, rs.port, settings, notes, where, skipped, fail);
  return { rs, check, stmt: r };
}

/** Every server's check as the service's one check (tunvs checks all its servers alike). */
function commonCheck(
  vs: Stmt,
  servers: { rs: RuleServer; check?: ServerCheck; stmt: Stmt }[],
  notes: string[],
  fail: (s: Stmt, m: string) => never,
): Record<string, unknown> | undefined {
  const checked = servers.filter((s) => s.check);
  if (checked.length === 0) return undefined;
  const bare = servers.find((s) => !s.check);
  if (bare)
    fail(bare.stmt, 'this real server has no checker and others have: tunvs checks all servers of a service alike');
  const c0 = checked[0]!.check!;
  const ownPort = checked.every((s) => s.check!.port === s.rs.port);
  for (const { check: c, stmt } of checked) {
    const differs = CHECK_FIELDS.find((k) => JSON.stringify(c![k]) !== JSON.stringify(c0[k]));
    if (differs)
      fail(
        stmt,
        `its check differs from the first server's in ${differs}: tunvs checks all servers of a service alike`,
      );
    if (!ownPort && c!.port !== c0.port)
      fail(stmt, "its connect_port differs from the other servers': tunvs checks their own port or one port for all");
  }
  const interval = Math.max(1, Math.ceil(c0.interval));
  const timeout = Math.min(Math.max(1, Math.ceil(c0.timeout)), interval, 60);
  if (interval !== c0.interval || timeout !== c0.timeout)
    notes.push(
      `line ${vs.line}: checks every ${c0.interval} s with a ${c0.timeout} s timeout become ${interval} s and ${timeout} s ` +
        '(tunvs: whole seconds, a timeout within the interval, at most 60 s)',
    );
  // A retry sooner than the next check, in whole seconds (tunvs: 1..interval).
  const retry = c0.retryInterval === undefined ? undefined : Math.max(1, Math.ceil(c0.retryInterval));
  if (retry !== undefined && retry !== c0.retryInterval)
    notes.push(`line ${vs.line}: delay_before_retry ${c0.retryInterval} s becomes ${retry} s (tunvs: whole seconds)`);
  const own = Object.fromEntries(
    CHECK_FIELDS.filter(
      (k) => !['type', 'interval', 'timeout', 'fall', 'retryInterval'].includes(k) && c0[k] !== undefined,
    ).map((k) => [k, c0[k]]),
  );
  return {
    type: c0.type,
    interval,
    timeout,
    rise: 1,
    fall: c0.fall,
    ...(retry !== undefined && retry < interval ? { retryInterval: retry } : {}),
    ...own,
    ...(!ownPort ? { port: c0.port } : {}),
  };
}
