/**
 * native/tun.c localRoutes: the host's own addresses (the local table's `local` routes) from
 * one rtnetlink dump per family, what the shadowed-VIP check compares the services with every
 * SHADOW_CHECK_MS on the main thread; before, two `ip` processes forked there blocked it for
 * up to a second on a loaded machine. Read in a network namespace of its own (root), against
 * what `ip route show table local type local` lists there.
 */

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';

const root = process.getuid?.() === 0;
const ns = `tlr${process.pid % 100000}`;

describe.skipIf(!root)('localRoutes in a namespace (root)', () => {
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
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  /** localRoutes() as a process inside the namespace reads it. */
  const read = (): string[] =>
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
           process.stdout.write(JSON.stringify(a.localRoutes()));`,
        ],
        { encoding: 'utf8' },
      ),
    ) as string[];

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
});
