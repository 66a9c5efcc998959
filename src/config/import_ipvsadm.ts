/**
 * `tunvs import ipvsadm`: LVS rules as tunvs services. Reads what `ipvsadm -Sn` prints
 * (ipvsadm-save) or `ipvsadm -Ln` (import_ipvsadm_list.ts), or a script of ipvsadm commands —
 * DPVS's and Alibaba's FULLNAT ipvsadm included (`-b` fullnat, `--add-laddr -z`, `-j`
 * synproxy), and tunvs's own options for what `tunvs list` prints beyond ipvsadm
 * (`--persistence-group`, `--sloppy`, `--sorry-server`, `--allow`, `--deny`,
 * `--max-new-per-sec`) — and gives the config's `services` (and `timeouts` from `--set`),
 * checked by the config's own validation. What tunvs does not do is refused with the line and
 * what to do instead: an import never changes what a service does without saying so (`notes`
 * says what it assumed).
 *
 *   importIpvsadm: logicalLines (or listingCommands) → tokens → parseCommand (options by ipvsadm's table) →
 *   apply (A E D C a e d P Q --set to the service table) → buildConfig (import.ts: the mode
 *   from the servers' forwarding, local addresses; validated).
 */

import { ALL_PORTS } from '../constants.js';
import type { TimeoutsSec } from '../conn/state.js';
import type { ModeName } from '../nat/modes/mode.js';
import { parseAddress } from '../service/addr.js';
import { isListing, listingCommands, type CommandLine } from './import_ipvsadm_list.js';
import {
  buildConfig,
  connLimits,
  fwmarkServices,
  ImportError,
  ipvsTunnel,
  IPVS_DEFAULT_SCHEDULER,
  IPVS_PERSISTENT_DEFAULT_SEC,
  ipvsPersistence,
  schedulerFlags,
  tunvsScheduler,
  type ImportOptions,
  type ImportResult,
  type RuleServer,
  type RuleService,
} from './import.js';

type Arg = 'none' | 'value' | 'optional';
interface OptionSpec {
  long: string;
  short?: string;
  arg: Arg;
  /** What the line does (-A, -a, --set, ...): one per line. */
  command?: true;
}

/** ipvsadm's options (upstream and DPVS); `-b` is read by command (below). */
const OPTIONS: readonly OptionSpec[] = [
  // commands
  { long: 'add-service', short: 'A', arg: 'none', command: true },
  { long: 'edit-service', short: 'E', arg: 'none', command: true },
  { long: 'delete-service', short: 'D', arg: 'none', command: true },
  { long: 'clear', short: 'C', arg: 'none', command: true },
  { long: 'add-server', short: 'a', arg: 'none', command: true },
  { long: 'edit-server', short: 'e', arg: 'none', command: true },
  { long: 'delete-server', short: 'd', arg: 'none', command: true },
  { long: 'add-laddr', short: 'P', arg: 'none', command: true },
  { long: 'del-laddr', short: 'Q', arg: 'none', command: true },
  { long: 'get-laddr', short: 'G', arg: 'none', command: true },
  { long: 'list', short: 'L', arg: 'none', command: true },
  { long: 'list', short: 'l', arg: 'none', command: true },
  { long: 'save', short: 'S', arg: 'none', command: true },
  { long: 'restore', short: 'R', arg: 'none', command: true },
  { long: 'zero', short: 'Z', arg: 'none', command: true },
  { long: 'help', short: 'h', arg: 'none', command: true },
  { long: 'version', short: 'v', arg: 'none', command: true },
  { long: 'set', arg: 'none', command: true },
  { long: 'start-daemon', arg: 'value', command: true },
  { long: 'stop-daemon', arg: 'value', command: true },
  { long: 'add-blklst', short: 'U', arg: 'none', command: true },
  { long: 'del-blklst', short: 'V', arg: 'none', command: true },
  { long: 'add-whtlst', short: 'O', arg: 'none', command: true },
  { long: 'del-whtlst', short: 'Y', arg: 'none', command: true },
  // the service
  { long: 'tcp-service', short: 't', arg: 'value' },
  { long: 'udp-service', short: 'u', arg: 'value' },
  { long: 'sctp-service', arg: 'value' },
  { long: 'fwmark-service', short: 'f', arg: 'value' },
  { long: 'icmp-service', short: 'q', arg: 'value' },
  { long: 'ipv6', short: '6', arg: 'none' },
  { long: 'scheduler', short: 's', arg: 'value' },
  { long: 'persistent', short: 'p', arg: 'optional' },
  { long: 'netmask', short: 'M', arg: 'value' },
  { long: 'ops', short: 'o', arg: 'none' },
  { long: 'pe', arg: 'value' },
  { long: 'sched-flags', arg: 'value' },
  { long: 'synproxy', short: 'j', arg: 'value' },
  { long: 'laddr', short: 'z', arg: 'value' },
  { long: 'ifname', short: 'F', arg: 'value' },
  { long: 'blklst', short: 'k', arg: 'value' },
  { long: 'whtlst', short: '2', arg: 'value' },
  { long: 'conn-timeout', arg: 'value' },
  { long: 'match', short: 'H', arg: 'value' },
  // a real server
  { long: 'real-server', short: 'r', arg: 'value' },
  { long: 'gatewaying', short: 'g', arg: 'none' },
  { long: 'ipip', short: 'i', arg: 'none' },
  { long: 'masquerading', short: 'm', arg: 'none' },
  { long: 'fullnat', arg: 'none' },
  { long: 'snat', short: 'J', arg: 'none' },
  { long: 'weight', short: 'w', arg: 'value' },
  { long: 'u-threshold', short: 'x', arg: 'value' },
  { long: 'l-threshold', short: 'y', arg: 'value' },
  { long: 'tun-type', arg: 'value' },
  { long: 'tun-port', arg: 'value' },
  { long: 'tun-nocsum', arg: 'none' },
  { long: 'tun-csum', arg: 'none' },
  { long: 'tun-remcsum', arg: 'none' },
  // output only
  { long: 'numeric', short: 'n', arg: 'none' },
  // tunvs's own, by `tunvs service add`'s names (what `tunvs list` prints beyond ipvsadm)
  { long: 'persistence-group', arg: 'value' },
  { long: 'sloppy', arg: 'none' },
  { long: 'allow', arg: 'value' },
  { long: 'deny', arg: 'value' },
  { long: 'max-new-per-sec', arg: 'value' },
  { long: 'sorry-server', arg: 'none' },
];

const COMMANDS = new Set(OPTIONS.filter((o) => o.command).map((o) => o.long));

/** Options that say nothing about the rules (listing, numeric output). */
const NOT_RULES = new Set(['list', 'save', 'zero', 'help', 'version', 'get-laddr', 'restore']);

interface Parsed {
  command: string;
  opts: Map<string, string | true>;
  positional: string[];
}

/** Join `\`-continued lines, drop comments and a leading `ipvsadm`; keep the first line's number. */
function logicalLines(text: string): CommandLine[] {
  const out: CommandLine[] = [];
  const raw = text.split('\n');
  for (let i = 0; i < raw.length; i++) {
    const first = i + 1;
    let s = raw[i]!;
    while (/\\\s*$/.test(s) && i + 1 < raw.length) s = s.replace(/\\\s*$/, ' ') + raw[++i]!;
    s = s.replace(/(^|\s)#.*$/, '').trim();
    if (s === '') continue;
    out.push({ line: first, tokens: s.split(/\s+/) });
  }
  return out;
}

function findLong(name: string): OptionSpec | undefined {
  return OPTIONS.find((o) => o.long === name);
}

function findShort(c: string, command: string | undefined): OptionSpec | undefined {
  // -b: DPVS's fullnat on a real server's line; upstream's sched-flags on a service's.
  if (c === 'b')
    return command === 'add-service' || command === 'edit-service'
      ? { long: 'sched-flags', arg: 'value' }
      : { long: 'fullnat', arg: 'none' };
  return OPTIONS.find((o) => o.short === c);
}

/** One command's tokens (after `ipvsadm`), by ipvsadm's option table (popt's rules: short
 * options may cluster, `-p` takes a value only when one follows). */
function parseCommand(tokens: string[], line: number): Parsed {
  const opts = new Map<string, string | true>();
  const positional: string[] = [];
  let command: string | undefined;
  const take = (spec: OptionSpec, inline: string | undefined, i: number): number => {
    if (COMMANDS.has(spec.long)) {
      if (command !== undefined && command !== spec.long)
        throw new ImportError(line, `two commands in one line: --${command} and --${spec.long}`);
      command = spec.long;
    }
    if (spec.arg === 'none') {
      if (inline !== undefined) throw new ImportError(line, `--${spec.long} takes no value`);
      opts.set(spec.long, true);
      return i;
    }
    if (inline !== undefined) {
      opts.set(spec.long, inline);
      return i;
    }
    const next = tokens[i + 1];
    if (next !== undefined && (spec.arg === 'value' || !next.startsWith('-'))) {
      opts.set(spec.long, next);
      return i + 1;
    }
    if (spec.arg === 'value') throw new ImportError(line, `--${spec.long} needs a value`);
    opts.set(spec.long, true);
    return i;
  };
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.startsWith('--')) {
      const eq = t.indexOf('=');
      const name = t.slice(2, eq < 0 ? undefined : eq);
      const spec = findLong(name);
      if (!spec) throw new ImportError(line, `unknown option --${name}`);
      i = take(spec, eq < 0 ? undefined : t.slice(eq + 1), i);
    } else if (t.startsWith('-') && t.length > 1) {
      for (let j = 1; j < t.length; j++) {
        const spec = findShort(t[j]!, command);
        if (!spec) throw new ImportError(line, `unknown option -${t[j]!}`);
        const rest = t.slice(j + 1);
        if (spec.arg !== 'none' && rest !== '') {
          i = take(spec, rest, i);
          break;
        }
        i = take(spec, undefined, i);
      }
    } else {
      positional.push(t);
    }
  }
  if (command === undefined) throw new ImportError(line, 'no command (-A, -a, -E, -e, -D, -d, -C, --set, -P)');
  return { command, opts, positional };
}

/** VIP:PORT, [V6]:PORT; `port` undefined when left out (a real server then takes the VIP's). */
function addressPort(v: string, line: number, what: string): { address: string; port: number | undefined } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+))(?::(\d{1,5}))?$/.exec(v);
  if (!m || parseAddress(m[1] ?? m[2]!) === undefined)
    throw new ImportError(
      line,
      `${what} ${v} is not ADDR[:PORT] or [IPV6][:PORT] (give ipvsadm -S -n: numeric addresses and ports)`,
    );
  return { address: m[1] ?? m[2]!, port: m[3] === undefined ? undefined : Number(m[3]) };
}

function serviceKey(
  p: Parsed,
  line: number,
): { key: string; protocol: 'tcp' | 'udp'; vip: string; port: number; fwmark?: number } {
  const f = p.opts.get('fwmark-service');
  if (f !== undefined) {
    // What the mark covers comes from --fwmark when the service is made a service per VIP:port.
    const mark = Number(f);
    if (!Number.isInteger(mark) || mark < 1 || mark > 0xffffffff)
      throw new ImportError(line, `-f ${String(f)}: a firewall mark is an integer 1..4294967295`);
    return { key: `fwmark ${mark}`, protocol: 'tcp', vip: '', port: ALL_PORTS, fwmark: mark };
  }
  for (const o of ['sctp-service', 'icmp-service', 'match'])
    if (p.opts.has(o)) throw new ImportError(line, `--${o}: tunvs balances TCP and UDP services (-t, -u)`);
  const tcp = p.opts.get('tcp-service');
  const udp = p.opts.get('udp-service');
  const v = tcp ?? udp;
  if (typeof v !== 'string') throw new ImportError(line, 'no service: give -t VIP:PORT or -u VIP:PORT');
  const { address, port } = addressPort(v, line, 'service');
  const protocol = tcp !== undefined ? 'tcp' : 'udp';
  // No port, or 0: every port of the VIP (a persistent service, as ipvsadm requires).
  const vport = port ?? ALL_PORTS;
  return {
    key: `${protocol} ${address.includes(':') ? `[${address}]` : address}:${vport}`,
    protocol,
    vip: address,
    port: vport,
  };
}

function refuse(p: Parsed, line: number, opts: Record<string, string>): void {
  for (const [o, why] of Object.entries(opts)) if (p.opts.has(o)) throw new ImportError(line, `--${o}: ${why}`);
}

/** A service's options (-A, -E: ipvsadm sets them all, defaults for what is left out). */
function serviceOptions(p: Parsed, line: number, s: RuleService, o: ImportOptions): void {
  refuse(p, line, { pe: 'persistence engines (sip) have no tunvs equivalent' });
  const given = p.opts.get('scheduler');
  const ipvs = typeof given === 'string' ? given : IPVS_DEFAULT_SCHEDULER;
  const fail = (m: string): never => {
    throw new ImportError(line, m);
  };
  s.scheduler = tunvsScheduler(ipvs, o, fail);
  delete s.hashPort;
  delete s.hashFallback;
  const flags = p.opts.get('sched-flags');
  if (typeof flags === 'string') schedulerFlags(s, ipvs, flags.split(','), fail);
  const persistent = p.opts.get('persistent');
  delete s.persistence;
  if (persistent !== undefined) {
    const mask = p.opts.get('netmask');
    s.persistence = ipvsPersistence(
      s.vip,
      persistent === true ? IPVS_PERSISTENT_DEFAULT_SEC : Number(persistent),
      typeof mask === 'string' ? mask : undefined,
    );
  } else if (p.opts.has('netmask')) {
    throw new ImportError(line, '-M (netmask) goes with -p (persistent)');
  }
  const group = p.opts.get('persistence-group');
  if (group !== undefined) {
    if (!s.persistence) throw new ImportError(line, '--persistence-group goes with -p (persistent)');
    s.persistence.group = String(group);
  }
  delete s.sloppy;
  if (p.opts.has('sloppy')) s.sloppy = true;
  delete s.onePacket;
  if (p.opts.has('ops')) s.onePacket = true;
  const idle = p.opts.get('conn-timeout');
  delete s.idleTimeout;
  // DPVS: the idle timeout of the service's connections (0: the global ones).
  if (typeof idle === 'string' && idle !== '0') s.idleTimeout = Number(idle);
  // tunvs's client ACL (comma-separated prefixes, as tunvs list prints them) and rate cap.
  const prefixes = (o: string): string[] => {
    const v = p.opts.get(o);
    return typeof v === 'string' ? v.split(',').filter((x) => x !== '') : [];
  };
  delete s.acl;
  if (p.opts.has('allow') || p.opts.has('deny')) s.acl = { allow: prefixes('allow'), deny: prefixes('deny') };
  const rate = p.opts.get('max-new-per-sec');
  delete s.maxNewPerSec;
  if (rate !== undefined) {
    if (typeof rate !== 'string' || !/^\d+$/.test(rate))
      throw new ImportError(line, `--max-new-per-sec takes new sessions per second, got ${String(rate)}`);
    s.maxNewPerSec = Number(rate);
  }
  const syn = p.opts.get('synproxy');
  delete s.synProxy;
  if (syn === 'enable') s.synProxy = 'on';
  else if (syn === 'disable') s.synProxy = 'off';
  else if (syn !== undefined) throw new ImportError(line, `-j takes enable or disable, got ${String(syn)}`);
}

function serverOptions(p: Parsed, line: number, s: RuleService, notes: string[]): RuleServer {
  refuse(p, line, { snat: 'SNAT services have no tunvs equivalent' });
  const r = p.opts.get('real-server');
  if (typeof r !== 'string') throw new ImportError(line, 'no real server: give -r ADDR[:PORT]');
  const { address, port } = addressPort(r, line, 'real server');
  const fwd = (['gatewaying', 'ipip', 'masquerading', 'fullnat'] as const).filter((f) => p.opts.has(f));
  if (fwd.length > 1) throw new ImportError(line, `two forwarding methods: ${fwd.map((f) => `--${f}`).join(' ')}`);
  const mode: ModeName = ({ gatewaying: 'dr', ipip: 'tunnel', masquerading: 'nat', fullnat: 'fullnat' } as const)[
    fwd[0] ?? 'gatewaying' // ipvsadm's default: direct routing
  ];
  const w = p.opts.get('weight');
  const threshold = (o: string): number | undefined => {
    const v = p.opts.get(o);
    return typeof v === 'string' ? Number(v) : undefined;
  };
  const limits = connLimits(threshold('u-threshold'), threshold('l-threshold'), (m) =>
    notes.push(`line ${line}: ${m}`),
  );
  const value = (o: string): string | undefined => {
    const v = p.opts.get(o);
    return v === undefined ? undefined : String(v);
  };
  const csum = (['tun-csum', 'tun-nocsum', 'tun-remcsum'] as const).filter((f) => p.opts.has(f));
  if (csum.length > 1) throw new ImportError(line, `two checksum flags: ${csum.map((f) => `--${f}`).join(' ')}`);
  const tunnel = ipvsTunnel(
    value('tun-type'),
    csum[0]?.slice(4) as 'csum' | 'nocsum' | 'remcsum' | undefined,
    value('tun-port'),
    (m) => {
      throw new ImportError(line, m);
    },
  );
  if (tunnel && mode !== 'tunnel') throw new ImportError(line, '--tun-type goes with -i (tunneling)');
  return {
    line,
    address,
    port: port ?? s.port,
    weight: w === undefined ? 1 : Number(w),
    mode,
    ...limits,
    ...(tunnel ? { tunnel } : {}),
  };
}

/** `-a`, `-e` or `-d` of a service's sorry server (--sorry-server: tunvs's, keepalived's
 * sorry_server): the server of last resort, not one of the scheduled. */
function sorryServer(command: string, r: RuleServer, s: RuleService, line: number): void {
  const same = s.sorryServer?.address === r.address && s.sorryServer.port === r.port;
  if (command === 'add-server' && s.sorryServer && !same)
    throw new ImportError(line, `service ${s.vip}:${s.port} has a sorry server already (one per service)`);
  if (command !== 'add-server' && !same)
    throw new ImportError(line, `${r.address}:${r.port} is not the sorry server of ${s.vip}:${s.port}`);
  if (command === 'delete-server') delete s.sorryServer;
  else s.sorryServer = { address: r.address, port: r.port };
}

/** The services of `text` (ipvsadm rules) as a tunvs config document, validated. */
export function importIpvsadm(text: string, o: ImportOptions = {}): ImportResult {
  const services = new Map<string, RuleService>();
  const timeouts: Partial<TimeoutsSec> = {};
  const notes: string[] = [];
  for (const { line, tokens } of isListing(text) ? listingCommands(text, notes) : logicalLines(text)) {
    if (/(^|\/)ipvsadm$/.test(tokens[0]!)) tokens.shift();
    else if (!tokens[0]!.startsWith('-')) {
      notes.push(`line ${line}: not an ipvsadm command, skipped: ${tokens.join(' ')}`);
      continue;
    }
    if (tokens.length === 0) continue;
    const p = parseCommand(tokens, line);
    const c = p.command;
    if (NOT_RULES.has(c)) {
      notes.push(`line ${line}: --${c} is not a rule, skipped`);
      continue;
    }
    if (c === 'start-daemon' || c === 'stop-daemon') {
      notes.push(`line ${line}: IPVS's sync daemon, skipped: tunvs syncs sessions through Redis (ha:, docs/ha.md)`);
      continue;
    }
    if (c === 'add-blklst' || c === 'del-blklst' || c === 'add-whtlst' || c === 'del-whtlst')
      throw new ImportError(line, `--${c}: write the service's acl (allow, deny) in the config (docs/config.md)`);
    if (c === 'clear') {
      services.clear();
      continue;
    }
    if (c === 'set') {
      if (p.positional.length !== 3) throw new ImportError(line, '--set takes three timeouts: tcp tcpfin udp');
      const [tcp, fin, udp] = p.positional.map(Number) as [number, number, number];
      // 0 leaves a timeout as it was (ipvsadm).
      if (tcp > 0) timeouts.established = tcp;
      if (fin > 0) timeouts.finWait = fin;
      if (udp > 0) timeouts.udp = udp;
      continue;
    }
    const k = serviceKey(p, line);
    const s = services.get(k.key);
    if (c === 'add-service') {
      if (s) throw new ImportError(line, `service ${k.key} is added twice (first on line ${s.line})`);
      const n: RuleService = { line, ...k, scheduler: IPVS_DEFAULT_SCHEDULER, servers: new Map(), laddrs: [] };
      serviceOptions(p, line, n, o);
      services.set(k.key, n);
      continue;
    }
    if (!s) throw new ImportError(line, `service ${k.key} does not exist here (no -A before this line)`);
    if (c === 'edit-service') serviceOptions(p, line, s, o);
    else if (c === 'delete-service') services.delete(k.key);
    else if (c === 'add-laddr' || c === 'del-laddr') {
      const z = p.opts.get('laddr');
      if (typeof z !== 'string') throw new ImportError(line, `--${c} needs -z LOCAL-ADDRESS`);
      const { address } = addressPort(z, line, 'local address');
      if (c === 'add-laddr') s.laddrs.push(address);
      else s.laddrs = s.laddrs.filter((a) => a !== address);
    } else if (p.opts.has('sorry-server')) {
      sorryServer(c, serverOptions(p, line, s, notes), s, line);
    } else {
      const r = serverOptions(p, line, s, notes);
      const rk = `${r.address}|${r.port}`;
      if (c === 'add-server') {
        if (s.servers.has(rk)) throw new ImportError(line, `real server ${r.address}:${r.port} is added twice`);
        s.servers.set(rk, r);
      } else if (!s.servers.has(rk)) {
        throw new ImportError(line, `real server ${r.address}:${r.port} is not in service ${k.key}`);
      } else if (c === 'edit-server') s.servers.set(rk, r);
      else s.servers.delete(rk);
    }
  }
  const expanded = [...services.values()].flatMap((s) =>
    s.fwmark === undefined ? [s] : fwmarkServices(s, s.fwmark, o, notes),
  );
  return buildConfig(expanded, timeouts, notes, o);
}
