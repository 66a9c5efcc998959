/**
 * Changes tunvs makes to the host, each recorded with its undo so that shutdown (and a
 * failed start-up) leaves the network namespace as it was: routes of the VIPs and local
 * addresses into the TUN device, the policy rules that bring NAT services' replies to it,
 * and the sysctls forwarding needs.
 *
 * Each of those addresses also gets a blackhole route of the last metric, under the route
 * into the TUN. While tunvs runs it is never used; when the TUN goes away without an orderly
 * stop (kill -9, a crash) the blackhole is what is left, so a node with a default route
 * back upstream drops the VIPs' packets instead of bouncing them to its router until their
 * TTL runs out (ICMP time exceeded: connects fail with EHOSTUNREACH instead of retrying on
 * the peer of an HA pair once the routers follow VRRP). An orderly stop removes them unless
 * told to keep them (an HA node does: docs/ha.md); the next start adopts any it finds.
 */

import { execFileSync } from 'node:child_process';
import { isIP } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { LOOP_STALL_MS, NAT_ROUTE_TABLE, NAT_RULE_PRIORITY } from '../constants.js';
import { nativeAddon, type HostRoute } from '../dataplane/tun_device.js';
import { AF_INET, IPPROTO_TCP } from '../packet/headers.js';
import { formatAddress } from '../service/addr.js';
import type { ResolvedService } from '../service/service.js';

/** The metric of the fallback blackholes: below every route a user or tunvs adds. */
export const FALLBACK_METRIC = 4294967295;

export class SystemChanges {
  private readonly undo: (() => void)[] = [];
  /** NAT reply rules in place, by what they match. */
  private readonly natRules = new Map<string, NatRule>();
  /** Families whose NAT reply table has its default route into the TUN. */
  private readonly natTables = new Set<4 | 6>();
  /** The device NAT's reply table routes into. */
  private natDev = '';
  private readonly routes = new Map<string, Route>();
  /** Fallback blackholes by prefix (this run's and those a previous run left). */
  private readonly fallbacks = new Map<string, Route>();

  constructor(private readonly log: (msg: string) => void) {}

  /** Set a sysctl (path under /proc/sys, dotted or slashed), remembering the old value. */
  sysctl(name: string, value: string): void {
    const file = `/proc/sys/${name.replace(/\./g, '/')}`;
    let old: string;
    try {
      old = readFileSync(file, 'utf8').trim();
    } catch {
      if (name.startsWith('net.ipv6.')) return; // no IPv6 in this namespace
      throw new Error(`cannot read sysctl ${name}`);
    }
    if (old === value) return;
    try {
      writeFileSync(file, value);
    } catch (e) {
      throw new Error(`cannot set ${name}=${value} (${(e as Error).message}); in a container, give it that sysctl`);
    }
    this.undo.push(() => writeFileSync(file, old));
  }

  /** Set a sysctl of a device tunvs created: it goes away with the device, no undo.
   * In a container /proc/sys is read-only: a value that is already right (inherited from
   * the `default` settings the container was given) is fine, and IPv6 settings do not
   * matter where IPv6 is off; anything else is an error that says what to set. */
  deviceSysctl(dev: string, name: string, value: string): void {
    const file = `/proc/sys/${name.replace('{dev}', dev)}`;
    try {
      if (readFileSync(file, 'utf8').trim() === value) return;
      writeFileSync(file, value);
    } catch (e) {
      const ipv6Off = (): boolean => {
        try {
          return readFileSync(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, 'utf8').trim() === '1';
        } catch {
          return true; // no IPv6 at all
        }
      };
      if (name.startsWith('net/ipv6/') && ipv6Off()) return;
      const dotted = name.replace('{dev}', dev).replace(/\//g, '.');
      throw new Error(
        `cannot set ${dotted}=${value} (${(e as Error).message}); in a container, give it the sysctl ${dotted.replace(dev, 'default')}=${value}`,
      );
    }
  }

  /** Take over the fallback blackholes a previous run left (it was killed, or kept them):
   * they are in place already, and the next routeServices withdraws those no service wants
   * any more. */
  adoptFallbacks(): void {
    for (const { family, prefix } of listFallbacks()) {
      this.fallbacks.set(prefix, { key: prefix, family, prefix, dev: '' });
    }
  }

  /** Exactly the routes of every VIP and local address of `services`: new ones added, those
   * no service uses any more (a reload or edit removed them) withdrawn with their blackholes. */
  routeServices(services: readonly ResolvedService[], dev: string): void {
    this.routeExactly(servicePrefixes(services), dev);
  }

  /**
   * Exactly these routes into the device (with their metrics, if given); every other route
   * into it withdrawn, with its blackhole. One rtnetlink request per change, no process
   * forked (native/tun.c routeChange: two `ip -batch` runs held the main thread 0.3 s for 32
   * changes on the loaded lab): the new routes, then the withdrawals, a route moved to another
   * metric losing its old one only once the new one is in place. Throws, once the rest is
   * done, if a route or blackhole could not be put in place.
   */
  routeExactly(wanted: readonly { prefix: string; metric?: number }[], dev: string): void {
    const errors: string[] = [];
    const superseded: Route[] = [];
    const prefixes = new Set(wanted.map((w) => w.prefix));
    const t0 = performance.now();
    let count = 0;
    for (const w of wanted) {
      count += this.addRoute(w.prefix.includes(':') ? '-6' : '-4', w.prefix, dev, w.metric, errors, superseded);
    }
    const stale = [...this.routes.values()].filter((r) => r.dev === dev && !prefixes.has(r.prefix));
    const staleFallbacks = [...this.fallbacks.values()].filter((r) => !prefixes.has(r.prefix));
    for (const r of [...superseded, ...stale]) this.withdraw(r);
    for (const r of staleFallbacks) this.withdrawFallback(r);
    count += superseded.length + stale.length + staleFallbacks.length;
    // On the main thread (the check's): say so when it held it like a stall would.
    const ms = Math.round(performance.now() - t0);
    if (ms >= LOOP_STALL_MS) this.log(`routes into ${dev}: ${count} changes took ${ms} ms (on the main thread)`);
    if (errors.length > 0) throw new Error(`routes into ${dev}: ${errors.join('; ')}`);
  }

  /** The routes into the device now, with their metrics. */
  routesOf(dev: string): { prefix: string; metric?: number }[] {
    return [...this.routes.values()]
      .filter((r) => r.dev === dev)
      .map((r) => ({ prefix: r.prefix, ...(r.metric !== undefined ? { metric: r.metric } : {}) }));
  }

  /** Route one prefix (/32 or /128) into the device, with its fallback blackhole; with a
   * `metric` (cluster mode: it says whether the route is announced), moving an existing
   * route to it: the old one goes to `superseded` once the new one is in place. The number
   * of changes it asked for. */
  private addRoute(
    family: '-4' | '-6',
    prefix: string,
    dev: string,
    metric: number | undefined,
    errors: string[],
    superseded: Route[],
  ): number {
    let changes = 0;
    if (!this.fallbacks.has(prefix)) {
      changes++;
      const err = routeChange(true, prefix, '', FALLBACK_METRIC);
      if (err === undefined) this.fallbacks.set(prefix, { key: prefix, family, prefix, dev: '' });
      else errors.push(`blackhole ${prefix}: ${err}`);
    }
    const key = `${prefix} ${dev}`;
    const have = this.routes.get(key);
    if (have && have.metric === metric) return changes;
    const err = routeChange(true, prefix, dev, metric);
    if (err !== undefined) {
      errors.push(`${prefix} dev ${dev}: ${err}`);
    } else {
      this.routes.set(key, { key, family, prefix, dev, ...(metric !== undefined ? { metric } : {}) });
      if (have) superseded.push(have);
    }
    return changes + 1;
  }

  private withdraw(r: Route): void {
    // Its own metric, also when it was added without one: a delete without a metric removes
    // the first route of the prefix on the device, which may be another metric's. An error:
    // gone with the device already.
    routeChange(false, r.prefix, r.dev, r.metric ?? kernelMetric(r.family));
    if (this.routes.get(r.key) === r) this.routes.delete(r.key);
  }

  private withdrawFallback(r: Route): void {
    // An error: removed by hand already.
    routeChange(false, r.prefix, '', FALLBACK_METRIC);
    if (this.fallbacks.get(r.prefix) === r) this.fallbacks.delete(r.prefix);
  }

  /**
   * NAT services' replies into the TUN: a NAT real server sends its replies to the client
   * with the LB as its gateway, so they arrive here addressed to the client, not to an
   * address routed into the TUN. One policy rule per real server and protocol — from its
   * address and service port (`ip rule ... from RIP ipproto P sport RPORT`), nothing else
   * the server sends — looks up a table of its own whose default route is the TUN device.
   * Exactly the rules `services` need; the others go. Through rtnetlink (native/tun.c
   * ruleChange, routeChange): an `ip` forked per rule held the main thread 10–30 ms each.
   */
  natReplyRules(services: readonly ResolvedService[], dev: string): void {
    this.natDev = dev;
    const wanted = new Map<string, NatRule>();
    for (const s of services) {
      if (s.mode !== 'nat') continue;
      for (const rs of s.realServers) {
        const rule: NatRule = {
          family: s.af === AF_INET ? 4 : 6,
          from: formatAddress(s.af, rs.addr),
          proto: s.proto,
          sport: rs.port,
        };
        wanted.set(`${rule.from} ${rule.proto} ${rule.sport}`, rule);
      }
    }
    for (const family of [4, 6] as const) {
      const need = [...wanted.values()].some((r) => r.family === family);
      if (need && !this.natTables.has(family)) {
        const err = routeChange(true, anyAddress(family), dev, undefined, NAT_ROUTE_TABLE);
        if (err !== undefined) throw new Error(`NAT reply table ${NAT_ROUTE_TABLE} (default dev ${dev}): ${err}`);
        this.natTables.add(family);
      }
    }
    for (const [key, rule] of wanted) {
      if (this.natRules.has(key)) continue;
      const err = natRule(true, rule);
      if (err !== undefined) throw new Error(`NAT reply rule ${describeNatRule(rule)}: ${err}`);
      this.natRules.set(key, rule);
    }
    for (const [key, rule] of this.natRules) {
      if (!wanted.has(key)) this.dropNatRule(key, rule);
    }
    for (const family of [...this.natTables]) {
      if (![...wanted.values()].some((r) => r.family === family)) this.dropNatTable(family);
    }
  }

  /** Rules of NAT_RULE_PRIORITY a previous run left (it was killed): gone, so that only this
   * run's are in place. */
  clearStaleNatRules(): void {
    for (const family of [4, 6] as const) {
      // Each delete of the priority alone takes one; until there is none (or no IPv6 here).
      for (let n = 0; n < MAX_STALE_NAT_RULES; n++) {
        if (nativeAddon().ruleChange(false, family, NAT_RULE_PRIORITY, 0, '', 0, 0) !== undefined) break;
      }
    }
  }

  private dropNatRule(key: string, rule: NatRule): void {
    natRule(false, rule); // an error: removed by hand already
    this.natRules.delete(key);
  }

  private dropNatTable(family: 4 | 6): void {
    // Its one route; an error: gone with the device already.
    routeChange(false, anyAddress(family), this.natDev, undefined, NAT_ROUTE_TABLE);
    this.natTables.delete(family);
  }

  /** Undo everything: the routes (the fallback blackholes too unless `keepFallbacks`), the
   * NAT reply rules, then the rest newest first. Never throws. */
  restore(keepFallbacks = false): void {
    for (const [key, rule] of [...this.natRules]) this.dropNatRule(key, rule);
    for (const family of [...this.natTables]) this.dropNatTable(family);
    try {
      for (const r of [...this.routes.values()]) this.withdraw(r);
      if (!keepFallbacks) for (const r of [...this.fallbacks.values()]) this.withdrawFallback(r);
    } catch (e) {
      this.log(`restore: ${(e as Error).message}`);
    }
    while (this.undo.length > 0) {
      const f = this.undo.pop()!;
      try {
        f();
      } catch (e) {
        this.log(`restore: ${(e as Error).message}`);
      }
    }
  }
}

interface Route {
  key: string;
  family: '-4' | '-6';
  prefix: string;
  /** The TUN device; '' for a fallback blackhole. */
  dev: string;
  /** Set in cluster mode (what is announced); else the kernel's default. */
  metric?: number;
}

/** The metric the kernel gives a route of `family` added without one. */
export function kernelMetric(family: '-4' | '-6'): number {
  return family === '-4' ? 0 : 1024;
}

/** One route into `dev` ('': a blackhole) put in place (`replace`) or deleted, in `table`
 * (0: main), through rtnetlink in this thread's network namespace (native/tun.c
 * routeChange): undefined when done, else why not (the kernel's reason; a prefix that is no
 * address, from a peer's entry, fails alone). */
function routeChange(
  replace: boolean,
  prefix: string,
  dev: string,
  metric: number | undefined,
  table = 0,
): string | undefined {
  try {
    return nativeAddon().routeChange(replace, prefix, dev, metric ?? -1, table) ?? undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** One NAT reply rule: from a real server's address and service port, its protocol. */
interface NatRule {
  family: 4 | 6;
  from: string;
  proto: number;
  sport: number;
}

/** A stale run's rules cleared at most (a loop's bound: each delete takes one). */
const MAX_STALE_NAT_RULES = 100_000;

/** `ip rule add|del priority NAT_RULE_PRIORITY from RIP ipproto P sport RPORT lookup
 * NAT_ROUTE_TABLE`, through rtnetlink (native/tun.c ruleChange): undefined when done, else
 * why not. */
function natRule(add: boolean, r: NatRule): string | undefined {
  return (
    nativeAddon().ruleChange(add, r.family, NAT_RULE_PRIORITY, NAT_ROUTE_TABLE, r.from, r.proto, r.sport) ?? undefined
  );
}

/** The default route's prefix of a family (NAT's reply table has only that one). */
function anyAddress(family: 4 | 6): string {
  return family === 4 ? '0.0.0.0/0' : '::/0';
}

function describeNatRule(r: NatRule): string {
  return `from ${r.from} ipproto ${r.proto === IPPROTO_TCP ? 'tcp' : 'udp'} sport ${r.sport}`;
}

/** The host prefix (/32 or /128) of an address. */
export function hostPrefix(af: number, words: ArrayLike<number>): string {
  return `${formatAddress(af, words)}/${af === AF_INET ? 32 : 128}`;
}

/** The host prefix of every VIP and local address of `services` (each once). */
export function servicePrefixes(services: readonly ResolvedService[]): { prefix: string }[] {
  const prefixes = new Set(services.flatMap((s) => [s.vip, ...s.laddrs].map((a) => hostPrefix(s.af, a))));
  return [...prefixes].map((prefix) => ({ prefix }));
}

/** The host prefix of every local address of `services` (each once). */
export function localAddressPrefixes(services: readonly ResolvedService[]): string[] {
  return [...new Set(services.flatMap((s) => s.laddrs.map((a) => hostPrefix(s.af, a))))];
}

/** The routes `ip route show SELECTOR...` lists, both families, in this network namespace
 * or the named one (`ip -n`): host prefixes, each with its metric (the kernel's default when
 * it lists none). A family the host lacks lists nothing. */
export function listRoutes(
  selector: readonly string[],
  netns?: string,
): { family: '-4' | '-6'; prefix: string; metric: number }[] {
  const found: { family: '-4' | '-6'; prefix: string; metric: number }[] = [];
  for (const family of ['-4', '-6'] as const) {
    let listed: { dst?: string; metric?: number }[];
    try {
      const args = ['-j', ...(netns === undefined ? [] : ['-n', netns]), family, 'route', 'show', ...selector];
      const out = execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
      listed = JSON.parse(out === '' ? '[]' : out) as { dst?: string; metric?: number }[];
    } catch {
      continue; // no IPv6 here: nothing to list
    }
    for (const { dst, metric } of listed) {
      if (dst === undefined) continue;
      const prefix = dst.includes('/') ? dst : `${dst}/${isIP(dst) === 6 ? 128 : 32}`;
      found.push({ family, prefix, metric: metric ?? kernelMetric(family) });
    }
  }
  return found;
}

/**
 * The VIPs and local addresses of `services` that are also addresses of this host (`local`:
 * the `local` routes of its local routing table, which the kernel consults before any other,
 * as native/tun.c localRoutes lists them): their packets are delivered to the host's own
 * sockets and never reach the TUN device. The usual cause is a VRRP address
 * kept from an LVS setup (keepalived's `virtual_ipaddress` with the VIP; with tunvs the
 * routers' next hop floats instead: docs/ha.md). By prefix, with the services that use it.
 * Exact addresses only: a VIP inside a prefix routed as local (AnyIP) is not found.
 */
export function shadowedAddresses(
  services: readonly ResolvedService[],
  localRoutes: readonly string[],
): Map<string, string[]> {
  const local = new Set(localRoutes);
  const out = new Map<string, string[]>();
  for (const s of services)
    for (const a of [s.vip, ...s.laddrs]) {
      const prefix = hostPrefix(s.af, a);
      if (!local.has(prefix)) continue;
      const names = out.get(prefix) ?? [];
      if (!names.includes(s.name)) names.push(s.name);
      out.set(prefix, names);
    }
  return out;
}

/** A route of the main table to a host prefix that leads elsewhere than into tunvs's device. */
export interface RouteElsewhere {
  prefix: string;
  /** Where: `into DEV`, `via GATEWAY`, or the route's type (unreachable, prohibit, ...). */
  to: string;
  metric: number;
  /** Into a TUN device: most likely another tunvs's (or another user-space forwarder's). */
  tun: boolean;
}

/**
 * The routes of the main table to exactly these host prefixes that lead anywhere but into
 * `dev`: into another device, via a gateway, or of another type, but not the fallback
 * blackholes (any tunvs's: they only catch what no route takes). tunvs's own route replaces
 * one of the same metric, and one of a lower metric keeps the packets from it. `routes`: the
 * main table's host routes (native/tun.c hostRoutes, one rtnetlink dump per family; it forked
 * `ip -batch` on the main thread before).
 */
export function routesElsewhere(
  prefixes: readonly string[],
  dev: string,
  routes: readonly HostRoute[] = nativeAddon().hostRoutes(0),
): RouteElsewhere[] {
  const wanted = new Set(prefixes);
  const found: RouteElsewhere[] = [];
  for (const r of routes) {
    if (!wanted.has(r.prefix)) continue;
    const family = r.prefix.includes(':') ? '-6' : '-4';
    const metric = r.metric ?? kernelMetric(family);
    if (r.type === 'blackhole' && metric === FALLBACK_METRIC) continue;
    const direct = r.type === 'unicast' && r.gateway === undefined && r.nexthops === undefined;
    if (direct && r.dev === dev) continue;
    const to =
      r.type !== 'unicast'
        ? r.type
        : r.gateway !== undefined
          ? `via ${r.gateway}`
          : r.nexthops !== undefined
            ? `over ${r.nexthops} next hops`
            : r.dev !== undefined
              ? `into ${r.dev}`
              : r.nhid !== undefined
                ? `by nexthop object ${r.nhid}`
                : 'nowhere named';
    found.push({ prefix: r.prefix, to, metric, tun: direct && r.dev !== undefined && isTunDevice(r.dev) });
  }
  return found;
}

/** Whether the link named `dev` is a TUN or TAP device (it has tun_flags in sysfs). */
function isTunDevice(dev: string): boolean {
  return existsSync(`/sys/class/net/${dev}/tun_flags`);
}

/** The fallback blackholes (routes of FALLBACK_METRIC) in this network namespace, or in the
 * named one (`ip -n`). */
export function listFallbacks(netns?: string): { family: '-4' | '-6'; prefix: string }[] {
  return listRoutes(['type', 'blackhole'], netns)
    .filter((r) => r.metric === FALLBACK_METRIC)
    .map(({ family, prefix }) => ({ family, prefix }));
}
