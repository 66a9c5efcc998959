/**
 * The cluster watchdog's routes (ha/watchdog.ts): it withdraws a hung tunvs's announced
 * routes and, once tunvs answers again, puts them back as tunvs records them then, not as
 * they were. tunvs may have moved routes while it was withdrawn; its later changes go from
 * its own record. Runs the watchdog's functions and tunvs's route changes (the built dist)
 * in a network namespace of its own, on a veth (root).
 */

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE, ROUTE_METRIC_QUIET } from '../../src/constants.js';
import { distSrc } from '../../src/paths.js';

const root = process.getuid?.() === 0;
const ns = `twd${process.pid % 100000}`;
const dev = 'tw0';

describe.skipIf(!root)('the watchdog restores what tunvs records (root)', () => {
  beforeAll(() => {
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'tw1']);
    execFileSync('ip', ['-n', ns, 'link', 'set', dev, 'up']);
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  /** Every route into the device: "prefix metric", v4 then v6. */
  const routes = (): string[] =>
    (['-4', '-6'] as const).flatMap((family) =>
      (
        JSON.parse(execFileSync('ip', ['-j', '-n', ns, family, 'route', 'show', 'dev', dev], { encoding: 'utf8' })) as {
          dst: string;
          metric?: number;
        }[]
      )
        .filter((r) => !r.dst.startsWith('fe80'))
        .map((r) => `${r.dst} ${r.metric ?? 0}`)
        .sort(),
    );

  /** Run `body` (JavaScript with `s`, a SystemChanges, and `w`, the watchdog module) in the
   * namespace; its last expression's JSON is returned. */
  const inNamespace = (body: string): unknown => {
    const script = `Promise.all([
      import(${JSON.stringify(join(distSrc(), 'control', 'system.js'))}),
      import(${JSON.stringify(join(distSrc(), 'ha', 'watchdog.js'))}),
    ]).then(([{ SystemChanges }, w]) => {
      const s = new SystemChanges(() => {});
      const out = (() => { ${body} })();
      process.stdout.write(JSON.stringify(out));
    })`;
    return JSON.parse(execFileSync('ip', ['netns', 'exec', ns, process.execPath, '-e', script], { encoding: 'utf8' }));
  };

  it('a route tunvs moved or dropped while withdrawn stays as tunvs has it; the others come back', () => {
    const A = ROUTE_METRIC_ANNOUNCED;
    const Q = ROUTE_METRIC_QUIET;
    const rank = (n: number): number => ROUTE_METRIC_BACKUP_BASE + n;
    const out = inNamespace(`
      s.routeExactly([
        { prefix: '198.18.251.1/32', metric: ${A} },      // a VIP route health will withdraw
        { prefix: '198.18.251.2/32', metric: ${rank(2)} }, // a peer's address, rank 2
        { prefix: '198.18.251.3/32', metric: ${A} },      // unchanged
        { prefix: '198.18.251.4/32', metric: ${rank(1)} }, // a peer forgotten meanwhile
        { prefix: '198.18.251.5/32', metric: ${Q} },      // quiet all along
        { prefix: 'fd18:18:251::1/128', metric: ${A} },   // unchanged, v6
      ], '${dev}');
      const { moved, errors } = w.withdrawRoutes('${dev}');
      const hung = s.routesOf('${dev}').length;
      // tunvs resumes and moves routes from its record: route health quiets .1, a dead peer
      // ahead of it makes it rank 1 for .2, .4 is no longer routed.
      s.routeExactly([
        { prefix: '198.18.251.1/32', metric: ${Q} },
        { prefix: '198.18.251.2/32', metric: ${rank(1)} },
        { prefix: '198.18.251.3/32', metric: ${A} },
        { prefix: '198.18.251.5/32', metric: ${Q} },
        { prefix: 'fd18:18:251::1/128', metric: ${A} },
      ], '${dev}');
      const again = w.restoreRoutes('${dev}', moved, s.routesOf('${dev}'));
      return { moved: moved.map((r) => r.prefix).sort(), errors, hung, again };
    `) as { moved: string[]; errors: string[]; hung: number; again: number };
    expect(out.errors).toEqual([]);
    expect(out.moved).toEqual([
      '198.18.251.1/32',
      '198.18.251.2/32',
      '198.18.251.3/32',
      '198.18.251.4/32',
      'fd18:18:251::1/128',
    ]);
    expect(out.hung).toBe(6);
    // .2 (rank 1 now), .3 and the v6 VIP are announced again; .1 stays quiet, .4 is gone.
    expect(out.again).toBe(3);
    expect(routes()).toEqual(
      [
        `198.18.251.1 ${Q}`,
        `198.18.251.2 ${rank(1)}`,
        `198.18.251.3 ${A}`,
        `198.18.251.5 ${Q}`,
        `fd18:18:251::1 ${A}`,
      ].sort(),
    );
  });

  it('with no change meanwhile, every withdrawn route comes back as it was', () => {
    execFileSync('ip', ['-n', ns, 'route', 'flush', 'dev', dev]);
    execFileSync('ip', ['-n', ns, '-6', 'route', 'flush', 'dev', dev]);
    const out = inNamespace(`
      const plan = [
        { prefix: '198.18.252.1/32', metric: ${ROUTE_METRIC_ANNOUNCED} },
        { prefix: '198.18.252.2/32', metric: ${ROUTE_METRIC_BACKUP_BASE + 3} },
        { prefix: 'fd18:18:252::1/128', metric: ${ROUTE_METRIC_ANNOUNCED} },
      ];
      s.routeExactly(plan, '${dev}');
      const before = s.routesOf('${dev}');
      const { moved } = w.withdrawRoutes('${dev}');
      const quiet = JSON.parse(require('node:child_process').execFileSync('ip', ['-j', 'route', 'show', 'dev', '${dev}'], { encoding: 'utf8' })).map((r) => r.metric);
      return { before, moved: moved.length, quiet, again: w.restoreRoutes('${dev}', moved, s.routesOf('${dev}')) };
    `) as { moved: number; quiet: number[]; again: number };
    expect(out.moved).toBe(3);
    expect(out.quiet).toEqual([ROUTE_METRIC_QUIET, ROUTE_METRIC_QUIET]);
    expect(out.again).toBe(3);
    expect(routes()).toEqual(
      [
        `198.18.252.1 ${ROUTE_METRIC_ANNOUNCED}`,
        `198.18.252.2 ${ROUTE_METRIC_BACKUP_BASE + 3}`,
        `fd18:18:252::1 ${ROUTE_METRIC_ANNOUNCED}`,
      ].sort(),
    );
  });
});
