/**
 * native/tun.c's rtnetlink reads, which replaced `ip` processes forked on the main thread
 * (on the loaded soak machine two of them every 10 s blocked it for up to a second, and
 * keepalived's check of a healthy pair node timed out): localRoutes, the host's own addresses
 * (the local table's `local` routes) that the shadowed-VIP check compares the services with
 * every SHADOW_CHECK_MS, and routeGet, the kernel's route to one address that DR's plan asks
 * for every real server at each start, reload and edit, and hostRoutes, the main table's
 * routes to host prefixes that a reload or edit adding a VIP looks through for other routes to
 * it (system.ts routesElsewhere). Read in a network namespace of their own (root), against
 * what `ip` finds there.
 */

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';
import { FALLBACK_METRIC, routesElsewhere } from '../../src/control/system.js';
import type { HostRoute } from '../../src/dataplane/tun_device.js';

const root = process.getuid?.() === 0;
const ns = `tnl${process.pid % 100000}`;

describe.skipIf(!root)('in a namespace (root)', () => {
  beforeAll(() => {
    const ip = (...args: string[]): void => void execFileSync('ip', ['-n', ns, ...args]);
    execFileSync('ip', ['netns', 'add', ns]);
    ip('link', 'set', 'lo', 'up');
    ip('link', 'add', 'tl0', 'type', 'veth', 'peer', 'name', 'tl1');
    ip('link', 'set', 'tl0', 'up');
    ip('link', 'set', 'tl1', 'up');
    ip('addr', 'add', '198.18.251.1/24', 'dev', 'tl0');
    ip('-6', 'addr', 'add', 'fd18:18:251::1/64', 'dev', 'tl0', 'nodad');
    // A local route of its own, no address with it (AnyIP's exact case).
    ip('route', 'add', 'local', '198.18.252.7/32', 'dev', 'lo', 'table', 'local');
    // Routes of the main table are not the host's addresses.
    ip('route', 'add', '198.18.253.0/24', 'dev', 'tl0');
    ip('route', 'add', '198.18.254.0/24', 'via', '198.18.251.2');
    ip('-6', 'route', 'add', 'fd18:18:254::/64', 'via', 'fd18:18:251::2');
    // Host routes of every kind routesElsewhere must tell apart.
    ip('route', 'add', '198.18.9.1/32', 'via', '198.18.251.2', 'metric', '7');
    ip('route', 'add', '198.18.9.2/32', 'dev', 'tl0');
    ip('route', 'add', 'blackhole', '198.18.9.3/32');
    ip('route', 'add', 'unreachable', '198.18.9.4/32', 'metric', '5');
    ip('route', 'add', '198.18.9.5/32', 'nexthop', 'via', '198.18.251.2', 'nexthop', 'via', '198.18.251.3');
    ip('nexthop', 'add', 'id', '5', 'via', '198.18.251.2', 'dev', 'tl0');
    ip('route', 'add', '198.18.9.6/32', 'nhid', '5');
    ip('route', 'add', '198.18.9.7/32', 'dev', 'tl0', 'table', '300');
    ip('-6', 'route', 'add', 'blackhole', 'fd18:18:9::3/128', 'metric', '99');
    ip('-6', 'route', 'add', 'fd18:18:9::2/128', 'dev', 'tl0');
    ip(
      '-6',
      'route',
      'add',
      'fd18:18:9::5/128',
      'nexthop',
      'via',
      'fd18:18:251::2',
      'nexthop',
      'via',
      'fd18:18:251::3',
    );
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  /** What `call` (an expression of the addon `a`) returns in a process inside the namespace. */
  const native = (call: string): unknown =>
    JSON.parse(
      execFileSync(
        'ip',
        [
          'netns',
          'exec',
          ns,
          process.execPath,
          '-e',
          `const a = require(${JSON.stringify(join(packageRoot(), 'native', 'build', 'Release', 'tunvs_native.node'))});
           let r; try { r = ${call}; } catch (e) { r = { error: e.message }; }
           process.stdout.write(JSON.stringify(r));`,
        ],
        { encoding: 'utf8' },
      ),
    );
  const read = (): string[] => native('a.localRoutes()') as string[];

  it("lists the namespace's addresses and local routes, both families, as ip does", () => {
    const got = read();
    expect(got).toEqual(
      expect.arrayContaining(['127.0.0.1/32', '198.18.251.1/32', 'fd18:18:251::1/128', '198.18.252.7/32', '::1/128']),
    );
    expect(got.some((r) => r.startsWith('198.18.253.'))).toBe(false);
    const listed = (family: '-4' | '-6'): string[] =>
      (
        JSON.parse(
          execFileSync('ip', ['-j', '-n', ns, family, 'route', 'show', 'table', 'local', 'type', 'local'], {
            encoding: 'utf8',
          }),
        ) as { dst: string }[]
      ).map((r) => (r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`));
    // Link-local addresses come with the link, maybe between the two reads.
    const stable = (l: string[]): string[] => l.filter((r) => !r.startsWith('fe80:')).sort();
    expect(stable(got)).toEqual(stable([...listed('-4'), ...listed('-6')]));
  });

  it('follows an address as it comes and goes (a VRRP address at a role change)', () => {
    execFileSync('ip', ['-n', ns, 'addr', 'add', '198.18.251.99/24', 'dev', 'tl0']);
    expect(read()).toContain('198.18.251.99/32');
    execFileSync('ip', ['-n', ns, 'addr', 'del', '198.18.251.99/24', 'dev', 'tl0']);
    expect(read()).not.toContain('198.18.251.99/32');
  });

  it("routeGet: the interface and gateway ip's route get finds, {} without a route", () => {
    const cases: [string, object][] = [
      ['198.18.251.7', { dev: 'tl0' }],
      ['198.18.253.9', { dev: 'tl0' }],
      ['198.18.254.9', { dev: 'tl0', gateway: '198.18.251.2' }],
      ['fd18:18:251::7', { dev: 'tl0' }],
      ['fd18:18:254::9', { dev: 'tl0', gateway: 'fd18:18:251::2' }],
      ['198.18.251.1', { dev: 'lo' }],
      // No default route in the namespace: the kernel has no route (ENETUNREACH).
      ['198.18.99.1', {}],
      ['fd18:18:99::1', {}],
    ];
    for (const [address, want] of cases) {
      expect(native(`a.routeGet(${JSON.stringify(address)})`), address).toEqual(want);
      let listed: { dev?: string; gateway?: string }[] = [];
      try {
        listed = JSON.parse(
          execFileSync('ip', ['-j', '-n', ns, 'route', 'get', address], { encoding: 'utf8', stdio: 'pipe' }),
        ) as typeof listed;
      } catch {
        // ip: no route
      }
      const [r] = listed;
      const fromIp: object = r === undefined ? {} : { dev: r.dev, ...(r.gateway ? { gateway: r.gateway } : {}) };
      expect(fromIp, address).toEqual(want);
    }
    const bad = native("a.routeGet('not an address')") as { error?: string };
    expect(bad.error).toMatch(/an IPv4 or IPv6 address/);
  });

  it("hostRoutes: a table's routes to host prefixes, as ip -j lists them", () => {
    const got = native('a.hostRoutes(0)') as HostRoute[];
    const listed: HostRoute[] = [];
    for (const family of ['-4', '-6'])
      for (const r of JSON.parse(
        execFileSync('ip', ['-j', '-n', ns, family, 'route', 'show', 'table', 'main'], { encoding: 'utf8' }),
      ) as (HostRoute & { dst: string; nexthops?: unknown[] })[]) {
        const prefix = r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`;
        if (!prefix.endsWith(family === '-4' ? '/32' : '/128')) continue;
        listed.push({
          prefix,
          type: r.type ?? 'unicast',
          ...(r.dev === undefined ? {} : { dev: r.dev }),
          ...(r.gateway === undefined ? {} : { gateway: r.gateway }),
          ...(r.metric === undefined ? {} : { metric: r.metric }),
          ...(r.nexthops === undefined ? {} : { nexthops: r.nexthops.length }),
          ...(r.nhid === undefined ? {} : { nhid: r.nhid }),
        });
      }
    expect(got).toEqual(listed);
    expect(got.map((r) => r.prefix)).toEqual(
      expect.arrayContaining(['198.18.9.1/32', '198.18.9.6/32', 'fd18:18:9::5/128']),
    );
    // Another table's routes are not the main table's, and the other way round.
    expect(got.some((r) => r.prefix === '198.18.9.7/32')).toBe(false);
    expect(native('a.hostRoutes(300)')).toEqual([{ prefix: '198.18.9.7/32', type: 'unicast', dev: 'tl0' }]);
    expect((native("a.hostRoutes('main')") as { error?: string }).error).toMatch(/a table number/);
  });

  it('routesElsewhere reads them: where each route leads, fallbacks and our own left out', () => {
    const routes = native('a.hostRoutes(0)') as HostRoute[];
    const wanted = [2, 3, 5].map((n) => `fd18:18:9::${n}/128`);
    for (let n = 1; n <= 7; n++) wanted.push(`198.18.9.${n}/32`);
    // tl0 stands for tunvs's device: the direct routes into it are its own.
    expect(routesElsewhere(wanted, 'tl0', routes)).toEqual([
      { prefix: '198.18.9.1/32', to: 'via 198.18.251.2', metric: 7, tun: false },
      { prefix: '198.18.9.3/32', to: 'blackhole', metric: 0, tun: false },
      { prefix: '198.18.9.4/32', to: 'unreachable', metric: 5, tun: false },
      { prefix: '198.18.9.5/32', to: 'over 2 next hops', metric: 0, tun: false },
      { prefix: '198.18.9.6/32', to: 'via 198.18.251.2', metric: 0, tun: false },
      { prefix: 'fd18:18:9::3/128', to: 'blackhole', metric: 99, tun: false },
      { prefix: 'fd18:18:9::5/128', to: 'over 2 next hops', metric: 1024, tun: false },
    ]);
    // Into another device (not a TUN: this host has no tl0), and a fallback blackhole skipped.
    const fallback = { prefix: '198.18.9.8/32', type: 'blackhole', metric: FALLBACK_METRIC };
    expect(routesElsewhere(['198.18.9.2/32', '198.18.9.8/32'], 'tunvs0', [...routes, fallback])).toEqual([
      { prefix: '198.18.9.2/32', to: 'into tl0', metric: 0, tun: false },
    ]);
  });
});
