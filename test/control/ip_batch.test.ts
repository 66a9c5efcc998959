/**
 * IpBatch: many `ip` commands in one process, each command's outcome reported to it (the
 * cluster watchdog's route changes). Runs `ip` in a network namespace of its own (root), and
 * SystemChanges' route moves there (the built dist: rtnetlink, native/tun.c routeChange); the
 * report parser runs anywhere.
 */

import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { failedLines, IpBatch } from '../../src/control/ip_batch.js';
import { distSrc } from '../../src/paths.js';

const root = process.getuid?.() === 0;
const ns = `tib${process.pid % 100000}`;

it("reads ip's batch report: each failed command's messages, by line", () => {
  const report =
    'RTNETLINK answers: No such process\nCommand failed -:2\nError: any valid prefix is expected rather than "x".\nCommand failed -:5\n';
  expect([...failedLines(report)]).toEqual([
    [2, 'RTNETLINK answers: No such process'],
    [5, 'Error: any valid prefix is expected rather than "x".'],
  ]);
});

it('refuses an argument that would split the batch line', () => {
  expect(() => new IpBatch().add(['route', 'del', '198.18.0.1/32 dev x'])).toThrow(/cannot be batched/);
});

describe.skipIf(!root)('in a namespace (root)', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'add', 'tb0', 'type', 'veth', 'peer', 'name', 'tb1']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'tb0', 'up']);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'tb1', 'up']);
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  const routes = (family: '-4' | '-6'): string[] =>
    (
      JSON.parse(execFileSync('ip', ['-j', '-n', ns, family, 'route', 'show', 'dev', 'tb0'], { encoding: 'utf8' })) as {
        dst: string;
        metric?: number;
      }[]
    )
      .filter((r) => !r.dst.startsWith('fe80'))
      .map((r) => `${r.dst} ${r.metric ?? 0}`);

  it('runs every command in order whatever the others did, and tells each its outcome', () => {
    const batch = new IpBatch(ns);
    const seen: (string | undefined)[] = [];
    batch.add(['route', 'replace', '198.18.250.1/32', 'dev', 'tb0', 'metric', '100'], (e) => seen.push(e));
    batch.add(['route', 'del', '198.18.250.9/32', 'dev', 'tb0'], (e) => seen.push(e));
    batch.add(['route', 'replace', 'fd18:18:250::1/128', 'dev', 'tb0', 'metric', '100'], (e) => seen.push(e));
    batch.add(['route', 'replace', '198.18.250.1/32', 'dev', 'tb0', 'metric', '200']); // no outcome wanted
    batch.add(['route', 'del', '198.18.250.1/32', 'dev', 'tb0', 'metric', '100'], (e) => seen.push(e));
    expect(batch.size).toBe(5);
    batch.run();
    expect(batch.size).toBe(0);
    expect(seen[0]).toBeUndefined();
    expect(seen[1]).toMatch(/No such process/);
    expect(seen.slice(2)).toEqual([undefined, undefined]);
    expect(routes('-4')).toEqual(['198.18.250.1 200']);
    expect(routes('-6')).toEqual(['fd18:18:250::1 100']);
  });

  it('SystemChanges: a route moved from no metric to one loses exactly its old one, IPv6 too', () => {
    // Run where the routes are: tunvs changes the routes of the namespace it runs in.
    const a = ['198.18.250.9/32', 'fd18:18:250::9/128'];
    const script = `import(${JSON.stringify(join(distSrc(), 'control', 'system.js'))}).then(({ SystemChanges }) => {
      const s = new SystemChanges(() => {});
      s.routeExactly(${JSON.stringify(a.map((prefix) => ({ prefix })))}, 'tb0');
      s.routeExactly(${JSON.stringify(a.map((prefix) => ({ prefix, metric: 100 })))}, 'tb0');
    })`;
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script]);
    // \`ip route del\` without a metric took the IPv6 route of metric 100 (the first one listed).
    expect(routes('-4')).toContain('198.18.250.9 100');
    expect(routes('-4')).not.toContain('198.18.250.9 0');
    expect(routes('-6')).toContain('fd18:18:250::9 100');
    expect(routes('-6')).not.toContain('fd18:18:250::9 1024');
  });

  it('SystemChanges: routes and blackholes as ip makes them, a bad prefix fails alone, restore removes them', () => {
    // In the namespace: put, show (as ip -d sees them), a set with a prefix that is no
    // address (a peer's entry gone wrong), show, restore, show.
    const script = `import(${JSON.stringify(join(distSrc(), 'control', 'system.js'))}).then(({ SystemChanges }) => {
      const { execFileSync } = require('node:child_process');
      const show = () => ['-4', '-6'].flatMap((f) => JSON.parse(execFileSync('ip', ['-j', '-d', f, 'route', 'show', 'table', 'main'], { encoding: 'utf8' })))
        .filter((r) => r.dst.startsWith('198.18.250.2') || r.dst.startsWith('fd18:18:250::2'))
        .map((r) => [r.type, r.dst, r.dev ?? '-', r.protocol, r.scope, r.metric ?? 0].join(' ')).sort();
      const s = new SystemChanges(() => {});
      s.routeExactly([{ prefix: '198.18.250.20/32' }, { prefix: 'fd18:18:250::20/128', metric: 10 }], 'tb0');
      const first = show();
      let error = '';
      try { s.routeExactly([{ prefix: '198.18.250.20/32' }, { prefix: '198.18.250.256/32' }], 'tb0'); } catch (e) { error = e.message; }
      const second = show();
      s.restore();
      console.log(JSON.stringify({ first, error, second, after: show() }));
    })`;
    const out = JSON.parse(
      execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8' }),
    ) as {
      first: string[];
      error: string;
      second: string[];
      after: string[];
    };
    expect(out.first).toEqual([
      'blackhole 198.18.250.20 - boot global 4294967295',
      'blackhole fd18:18:250::20 lo boot global 4294967295', // the kernel's, as for ip's
      'unicast 198.18.250.20 tb0 boot link 0',
      'unicast fd18:18:250::20 tb0 boot global 10',
    ]);
    // The bad one is refused (and its blackhole), the rest is done: the IPv6 route withdrawn.
    expect(out.error).toMatch(
      /^routes into tb0: blackhole 198\.18\.250\.256\/32: .*ADDRESS\/LENGTH.*; 198\.18\.250\.256\/32 dev tb0: /,
    );
    expect(out.second).toEqual([
      'blackhole 198.18.250.20 - boot global 4294967295',
      'unicast 198.18.250.20 tb0 boot link 0',
    ]);
    expect(out.after).toEqual([]);
  });

  it("SystemChanges: a killed run's NAT reply rules are cleared at start, both families, and no other rule", () => {
    const rule = (family: '-4' | '-6', args: string[]): void => {
      execFileSync('ip', ['-n', ns, family, 'rule', 'add', ...args]);
    };
    rule('-4', ['priority', '10789', 'from', '198.18.20.21', 'ipproto', 'tcp', 'sport', '8080', 'lookup', '4789']);
    rule('-4', ['priority', '10789', 'from', '198.18.20.22', 'ipproto', 'udp', 'sport', '53', 'lookup', '4789']);
    rule('-6', ['priority', '10789', 'from', 'fd18:18:20::21', 'ipproto', 'tcp', 'sport', '8080', 'lookup', '4789']);
    rule('-4', ['priority', '10790', 'from', '198.18.20.21', 'lookup', '4789']); // not tunvs's
    const script = `import(${JSON.stringify(join(distSrc(), 'control', 'system.js'))}).then(({ SystemChanges }) => {
      new SystemChanges(() => {}).clearStaleNatRules();
    })`;
    execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script]);
    const rules = (family: '-4' | '-6'): string =>
      execFileSync('ip', ['-n', ns, family, 'rule', 'show'], { encoding: 'utf8' });
    expect(rules('-4')).not.toMatch(/^10789:/m);
    expect(rules('-6')).not.toMatch(/^10789:/m);
    expect(rules('-4')).toMatch(/^10790:\s+from 198\.18\.20\.21 lookup 4789/m);
  });

  it('when ip itself cannot run, every command fails with why', () => {
    const batch = new IpBatch(`${ns}-missing`);
    const seen: (string | undefined)[] = [];
    batch.add(['route', 'replace', '198.18.250.2/32', 'dev', 'tb0'], (e) => seen.push(e));
    batch.add(['route', 'replace', '198.18.250.3/32', 'dev', 'tb0'], (e) => seen.push(e));
    batch.run();
    expect(seen).toHaveLength(2);
    for (const e of seen) expect(e).toMatch(/netns|No such file/i);
  });
});
