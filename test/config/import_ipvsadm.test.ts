/** `tunvs import ipvsadm`: LVS rules (ipvsadm -Sn, -Ln, scripts, DPVS's FULLNAT) as tunvs services. */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.js';
import { ImportError, importYaml, parseFwmarkOption } from '../../src/config/import.js';
import { importIpvsadm } from '../../src/config/import_ipvsadm.js';
import { distSrc } from '../../src/paths.js';
import { COUNTER_SLOTS } from '../../src/dataplane/counters.js';
import { formatList, listServices } from '../../src/control/stats.js';
import {
  ConnCounts,
  IdRegistry,
  resolveServices,
  serviceWithDefaults,
  type ServiceSpec,
} from '../../src/service/service.js';

/** What `ipvsadm -Sn` prints for an IPVS table with one service of each mode, v4 and v6. */
const SAVED = `-A -t 198.18.0.100:80 -s wrr -p 300 -M 255.255.255.0
-a -t 198.18.0.100:80 -r 198.18.20.21:8080 -m -w 1
-a -t 198.18.0.100:80 -r 198.18.20.22:8080 -m -w 2
-A -t [fd18:18::100]:80 -s mh -p 600 -M 64
-a -t [fd18:18::100]:80 -r [fd18:18:20::21]:80 -g -w 1
-a -t [fd18:18::100]:80 -r [fd18:18:20::22]:80 -g -w 0
-A -u 198.18.0.100:53 -s sh
-a -u 198.18.0.100:53 -r 198.18.20.21:53 -i -w 1
`;

const services = (text: string, laddrs?: string[]): Record<string, unknown>[] =>
  importIpvsadm(text, laddrs ? { laddrs } : {}).config.services;

function refused(text: string, o: Parameters<typeof importIpvsadm>[1] = {}): ImportError {
  try {
    importIpvsadm(text, o);
  } catch (e) {
    if (e instanceof ImportError) return e;
    throw e;
  }
  throw new Error('imported without an error');
}

describe('tunvs import ipvsadm: what ipvsadm -Sn saves', () => {
  it('each service with its mode (from -m -g -i), scheduler, persistence and servers', () => {
    const s = services(SAVED, ['198.18.2.9']);
    expect(s).toEqual([
      {
        name: 'tcp-198.18.0.100-80',
        protocol: 'tcp',
        vip: '198.18.0.100',
        port: 80,
        mode: 'nat',
        scheduler: 'wrr',
        persistence: { timeoutSec: 300, netmask: '255.255.255.0' },
        realServers: [
          { address: '198.18.20.21', port: 8080, weight: 1 },
          { address: '198.18.20.22', port: 8080, weight: 2 },
        ],
      },
      {
        name: 'tcp-fd18-18--100-80',
        protocol: 'tcp',
        vip: 'fd18:18::100',
        port: 80,
        mode: 'dr',
        scheduler: 'mh',
        persistence: { timeoutSec: 600, prefix6: 64 },
        realServers: [
          { address: 'fd18:18:20::21', port: 80, weight: 1 },
          { address: 'fd18:18:20::22', port: 80, weight: 0 },
        ],
      },
      {
        name: 'udp-198.18.0.100-53',
        protocol: 'udp',
        vip: '198.18.0.100',
        port: 53,
        mode: 'tunnel',
        scheduler: 'sh',
        localAddresses: ['198.18.2.9'], // the tunnel's outer source, from --laddr
        realServers: [{ address: '198.18.20.21', port: 53, weight: 1 }],
      },
    ]);
  });

  it('the YAML it prints is a config tunvs runs, with the same services', () => {
    const r = importIpvsadm(SAVED, { laddrs: ['198.18.2.9'] });
    const text = importYaml(r, 'the ipvsadm rules of rules.txt');
    expect(text).toMatch(/^# tunvs services from the ipvsadm rules of rules\.txt/);
    expect(text).toContain('      - { address: 198.18.20.22, port: 8080, weight: 2 }');
    const config = parseConfig(parse(text));
    expect(config.services.map((s) => `${s.name} ${s.mode} ${s.scheduler}`)).toEqual([
      'tcp-198.18.0.100-80 nat wrr',
      'tcp-fd18-18--100-80 dr mh',
      'udp-198.18.0.100-53 tunnel sh',
    ]);
    expect(config.services[0]!.persistence).toEqual({ timeoutSec: 300, netmask: 24, prefix6: 128 });
  });

  it('says what it assumed: IPVS timeouts when the rules set none', () => {
    const r = importIpvsadm(SAVED, { laddrs: ['198.18.2.9'] });
    expect(r.notes.join('\n')).toMatch(/no timeouts set: .* 900 s .* timeouts: \{ established: 900, finWait: 120 \}/);
    expect(r.config.timeouts).toBeUndefined();
  });
});

describe('tunvs import ipvsadm: all-ports services (port 0)', () => {
  it.each([
    [
      'ipvsadm -Sn',
      '-A -t 198.18.0.100:0 -s wlc -p 300\n-a -t 198.18.0.100:0 -r 198.18.20.21 -g -w 1\n-a -t 198.18.0.100:0 -r 198.18.20.22:0 -g -w 2\n',
    ],
    [
      'a script, no port',
      'ipvsadm -A -t 198.18.0.100 -s wlc -p 300\nipvsadm -a -t 198.18.0.100 -r 198.18.20.21 -g\nipvsadm -a -t 198.18.0.100 -r 198.18.20.22 -g -w 2\n',
    ],
    [
      'ipvsadm -Ln',
      'TCP  198.18.0.100:0 wlc persistent 300\n  -> 198.18.20.21:0 Route 1 0 0\n  -> 198.18.20.22:0 Route 2 0 0\n',
    ],
  ])("%s: a persistent service of every port, its servers on the client's port (0)", (_what, text) => {
    const [s] = services(text);
    expect(s).toMatchObject({
      name: 'tcp-198.18.0.100-0',
      port: 0,
      mode: 'dr',
      scheduler: 'wlc',
      persistence: { timeoutSec: 300 },
      realServers: [
        { address: '198.18.20.21', port: 0 },
        { address: '198.18.20.22', port: 0, weight: 2 },
      ],
    });
    const config = parseConfig(parse(importYaml(importIpvsadm(text, {}), 'rules')));
    expect(config.services[0]!.port).toBe(0);
  });
});

describe('tunvs import ipvsadm: tunnel types (--tun-type, IPVS 5.2+)', () => {
  const tun = (flags: string, flags2 = flags) =>
    `-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -i ${flags}\n-a -t 198.18.0.100:80 -r 198.18.20.22:80 -i ${flags2}\n`;
  const laddrs = ['198.18.2.9'];

  it('gre becomes tunnel.type gre, --tun-csum its checksum; ipip (and its checksum flags) the default', () => {
    expect(services(tun('--tun-type gre'), laddrs)[0]).toMatchObject({ mode: 'tunnel', tunnel: { type: 'gre' } });
    expect(services(tun('--tun-type gre --tun-csum'), laddrs)[0]!.tunnel).toEqual({ type: 'gre', checksum: true });
    expect(services(tun('--tun-type gre --tun-nocsum'), laddrs)[0]!.tunnel).toEqual({ type: 'gre' });
    for (const f of ['', '--tun-type ipip', '--tun-type ipip --tun-csum'])
      expect(services(tun(f), laddrs)[0]).not.toHaveProperty('tunnel');
    const config = parseConfig(parse(importYaml(importIpvsadm(tun('--tun-type gre --tun-csum'), { laddrs }), 'rules')));
    expect(config.services[0]!.tunnel).toEqual({ type: 'gre', checksum: true });
  });

  it('gue becomes tunnel.type gue with its --tun-port, --tun-csum its UDP checksum (--tun-nocsum, the default: none)', () => {
    expect(services(tun('--tun-type gue --tun-port 6080'), laddrs)[0]).toMatchObject({
      mode: 'tunnel',
      tunnel: { type: 'gue', port: 6080 },
    });
    expect(services(tun('--tun-type gue --tun-port 6080 --tun-csum'), laddrs)[0]!.tunnel).toEqual({
      type: 'gue',
      port: 6080,
      checksum: true,
    });
    expect(services(tun('--tun-type gue --tun-port 6080 --tun-nocsum'), laddrs)[0]!.tunnel).toEqual({
      type: 'gue',
      port: 6080,
    });
    const yaml = importYaml(importIpvsadm(tun('--tun-type gue --tun-port 6080 --tun-csum'), { laddrs }), 'rules');
    expect(parseConfig(parse(yaml)).services[0]!.tunnel).toEqual({ type: 'gue', port: 6080, checksum: true });
  });

  it.each([
    [tun('--tun-type gue'), 2, /a GUE tunnel needs its port \(--tun-port\)/],
    [tun('--tun-type gue --tun-port 0'), 2, /tunnel port 0 is not a port/],
    [tun('--tun-type vxlan'), 2, /tunnel type vxlan: use ipip, gre or gue/],
    [tun('--tun-type gre --tun-port 6080'), 2, /a tunnel port \(6080\) is GUE's/],
    [tun('--tun-type gue --tun-port 6080 --tun-remcsum'), 2, /remote checksum offload \(remcsum\) is not built/],
    [
      tun('--tun-type gue --tun-port 6080', '--tun-type gue --tun-port 6081'),
      3,
      /mixes tunnel types \(gue port 6080 on line 2, gue port 6081 here\)/,
    ],
    [tun('--tun-type gre --tun-csum --tun-nocsum'), 2, /two checksum flags/],
    [tun('--tun-type gre', ''), 3, /mixes tunnel types \(gre on line 2, ipip here\).*split/],
    [
      tun('--tun-type gre', '--tun-type gre --tun-csum'),
      3,
      /mixes tunnel types \(gre on line 2, gre with checksum here\)/,
    ],
    [
      '-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g --tun-type gre\n',
      2,
      /--tun-type goes with -i/,
    ],
  ])('refused with the line: %s', (text, line, why) => {
    const e = refused(text, { laddrs });
    expect(e.message).toMatch(new RegExp(`^line ${line}: `));
    expect(e.message).toMatch(why);
  });
});

describe('tunvs import ipvsadm: ipvsadm -Ln --tun-info (a TunnelInfo column after Forward)', () => {
  const head =
    'IP Virtual Server version 1.2.1 (size=4096)\nProt LocalAddress:Port Scheduler Flags\n' +
    '  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n';
  const laddrs = ['198.18.2.9'];

  it("gue:PORT:FLAGS, gre:FLAGS and ipip become the services' tunnels; n/a is a server without one", () => {
    const text =
      head +
      'TCP  198.18.0.100:80 rr\n' +
      '  -> 198.18.20.21:80              Tunnel  gue:6080:+c   1      0          0\n' +
      '  -> 198.18.20.22:80              Tunnel  gue:6080:+c   2      3          1\n' +
      'TCP  198.18.0.100:81 rr\n' +
      '  -> 198.18.20.21:81              Tunnel  gre:-c        1      0          0\n' +
      'TCP  198.18.0.100:82 rr\n' +
      '  -> 198.18.20.21:82              Tunnel  ipip          1      0          0\n' +
      'TCP  198.18.0.100:8080 wlc\n' +
      '  -> 198.18.20.21:8080            Masq    n/a           1      0          0\n';
    const got = services(text, laddrs);
    expect(got.map((x) => [x.port, x.mode, x.tunnel])).toEqual([
      [80, 'tunnel', { type: 'gue', port: 6080, checksum: true }],
      [81, 'tunnel', { type: 'gre' }],
      [82, 'tunnel', undefined],
      [8080, 'nat', undefined],
    ]);
    expect(got[0]!.realServers).toEqual([
      { address: '198.18.20.21', port: 80, weight: 1 },
      { address: '198.18.20.22', port: 80, weight: 2 },
    ]);
  });

  it.each([
    ['gue:6080:r+c', /remote checksum offload \(remcsum\) is not built/],
    ['vxlan:4789', /tunnel info vxlan:4789 not understood/],
  ])('refused with the line: %s', (info, why) => {
    const e = refused(`${head}TCP  198.18.0.100:80 rr\n  -> 198.18.20.21:80  Tunnel  ${info}  1  0  0\n`, { laddrs });
    expect(e.message).toMatch(/^line 5: /);
    expect(e.message).toMatch(why);
  });
});

describe("tunvs import ipvsadm: tunvs list's own words", () => {
  const shop = (port: number, rport: number, extra: Partial<ServiceSpec> = {}): ServiceSpec =>
    serviceWithDefaults({
      vip: '198.18.0.100',
      port,
      scheduler: 'wrr',
      localAddresses: ['198.18.2.9'],
      persistence: { timeoutSec: 600, netmask: 24, prefix6: 128, group: 'shop' },
      realServers: [
        { address: '198.18.20.21', port: rport, weight: 2, maxConns: 100, minConns: 75 },
        { address: '198.18.20.22', port: rport, weight: 1 },
      ],
      ...extra,
    });
  const specs = [
    shop(80, 8080, { sorryServer: { address: '198.18.20.99', port: 8080 } }),
    shop(443, 8443, {
      acl: { allow: ['198.18.100.0/24', 'fd18:18:100::/64'], deny: ['198.18.100.99/32'] },
      maxNewPerSec: 5000,
    }),
    serviceWithDefaults({
      vip: 'fd18:18::100',
      port: 80,
      mode: 'dr',
      scheduler: 'sh',
      sloppy: true,
      idleTimeout: 30,
      localAddresses: [],
      realServers: [{ address: 'fd18:18:20::21', port: 80, weight: 1 }],
    }),
    serviceWithDefaults({
      protocol: 'udp',
      vip: '198.18.0.100',
      port: 53,
      mode: 'dr',
      scheduler: 'rr',
      onePacket: true,
      localAddresses: [],
      realServers: [{ address: '198.18.20.21', port: 53, weight: 1 }],
    }),
    serviceWithDefaults({
      vip: '198.18.0.100',
      port: 8082,
      mode: 'tunnel',
      scheduler: 'rr',
      tunnel: { type: 'gre', checksum: true },
      localAddresses: ['198.18.2.9'],
      realServers: [
        { address: '198.18.20.21', port: 8082, weight: 1 },
        { address: '198.18.20.22', port: 8082, weight: 1 },
      ],
    }),
    serviceWithDefaults({
      vip: '198.18.0.100',
      port: 8083,
      mode: 'tunnel',
      scheduler: 'rr',
      tunnel: { type: 'gue', port: 6080, checksum: true },
      localAddresses: ['198.18.2.9'],
      realServers: [{ address: '198.18.20.21', port: 8083, weight: 1 }],
    }),
  ];

  it('a listing of group, sloppy, GRE and GUE tunnels, an ACL, a rate cap, caps, a sorry server and a check weight reads back as the services it lists; DOWN and quorum lost are noted', () => {
    const resolved = resolveServices(specs, new IdRegistry());
    const rs = (address: string) => resolved[0]!.realServers.find((r) => r.address === address)!.id;
    // The 80 service has lost its quorum (its sorry server in use), 198.18.20.22 is DOWN there
    // and 198.18.20.21 weighs what its check says.
    const health = {
      state: (svc: number, server: number) =>
        svc !== resolved[0]!.id
          ? undefined
          : server === rs('198.18.20.22')
            ? { up: false, lastError: 'connect: refused (3 in a row)' }
            : server === rs('198.18.20.21')
              ? { up: true, weight: 7 }
              : undefined,
      hasQuorum: (svc: number) => (svc === resolved[0]!.id ? false : undefined),
    };
    const rows = listServices(resolved, [new Float64Array(COUNTER_SLOTS)], [new ConnCounts()], health);
    const text = formatList(rows, false);
    // Its counters (--stats) are no rules.
    expect(() => importIpvsadm(formatList(rows, true))).toThrow(/line 2: a listing of counters, not of rules/);
    expect(text).toMatch(/ wrr persistent 600 mask 255\.255\.255\.0 group shop quorum lost\n/);
    expect(text).toMatch(/198\.18\.20\.21:8080 +FullNat 7 +0 +0 +cap 100\/75 weight from check \(config 2\)\n/);
    expect(text).toMatch(/198\.18\.20\.99:8080 +FullNat 1 +0 +0 +sorry server \(in use: no quorum\)\n/);
    expect(text).toMatch(/ sh conn-timeout 30 sloppy\n/);
    expect(text).toMatch(/ rr ops\n/);
    expect(text).toMatch(/:8082 rr tunnel gre csum\n/);
    expect(text).toMatch(/:8083 rr tunnel gue port 6080 csum\n/);
    expect(text).toMatch(
      /:443 wrr persistent 600 mask 255\.255\.255\.0 group shop allow 198\.18\.100\.0\/24,fd18:18:100::\/64 deny 198\.18\.100\.99\/32 rate 5000\n/,
    );
    const r = importIpvsadm(text, { laddrs: ['198.18.2.9'] });
    const back = parseConfig(parse(importYaml(r, 'rules'))).services;
    const rules = (list: readonly ServiceSpec[]) =>
      list.map((x) => ({
        ...[
          'protocol',
          'vip',
          'port',
          'mode',
          'scheduler',
          'persistence',
          'sloppy',
          'onePacket',
          'idleTimeout',
          'sorryServer',
          'localAddresses',
          'tunnel',
          'acl',
          'maxNewPerSec',
        ].reduce((o, k) => ({ ...o, [k]: x[k as keyof ServiceSpec] }), {}),
        realServers: x.realServers.map(({ address, port, weight, maxConns, minConns }) => ({
          address,
          port,
          weight,
          maxConns,
          minConns,
        })),
      }));
    expect(rules(back)).toEqual(rules(specs));
    const notes = r.notes.join('\n');
    expect(notes).toMatch(/line \d+: "quorum lost" is state, not a rule: left out/);
    expect(notes).toMatch(/line \d+: 198\.18\.20\.22:8080 is DOWN: health is state, not a rule/);
  });

  it('in a script: --persistence-group needs -p; a second sorry server, or -d of one it is not, is refused', () => {
    const base =
      '-A -t 198.18.0.100:80 -s rr -p 60 --persistence-group shop\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g\n';
    expect(services(base)[0]!.persistence).toEqual({ timeoutSec: 60, group: 'shop' });
    expect(refused('-A -t 198.18.0.100:80 -s rr --persistence-group shop\n').message).toMatch(
      /line 1: --persistence-group goes with -p/,
    );
    const sorry = `${base}-a -t 198.18.0.100:80 -r 198.18.20.99:80 -g --sorry-server\n`;
    expect(services(sorry)[0]!.sorryServer).toEqual({ address: '198.18.20.99', port: 80 });
    expect(
      services(`${sorry}-d -t 198.18.0.100:80 -r 198.18.20.99:80 --sorry-server\n`)[0]!.sorryServer,
    ).toBeUndefined();
    expect(refused(`${sorry}-a -t 198.18.0.100:80 -r 198.18.20.98:80 -g --sorry-server\n`).message).toMatch(
      /line 4: service 198\.18\.0\.100:80 has a sorry server already/,
    );
    expect(refused(`${base}-d -t 198.18.0.100:80 -r 198.18.20.98:80 --sorry-server\n`).message).toMatch(
      /line 3: 198\.18\.20\.98:80 is not the sorry server of 198\.18\.0\.100:80/,
    );
    expect(refused('TCP  198.18.0.100:80 rr\n  -> 198.18.20.21:80 Route 1 0 0 maybe\n').message).toMatch(
      /line 2: server flags not understood: maybe/,
    );
  });
});

describe("tunvs import ipvsadm: one-packet scheduling (-o, a listing's ops)", () => {
  it.each([
    ['ipvsadm -Sn', '-A -u 198.18.0.100:53 -s rr -o\n-a -u 198.18.0.100:53 -r 198.18.20.21:53 -g -w 1\n'],
    ['a script', 'ipvsadm -A -u 198.18.0.100:53 -s rr --ops\nipvsadm -a -u 198.18.0.100:53 -r 198.18.20.21:53 -g\n'],
    ['ipvsadm -Ln', 'UDP  198.18.0.100:53 rr ops\n  -> 198.18.20.21:53 Route 1 0 0\n'],
    ['tunvs list', 'UDP  198.18.0.100:53 rr persistent 60 ops conn-timeout 2\n  -> 198.18.20.21:53 Route 1 0 0\n'],
  ])('%s: a UDP service of onePacket', (_what, text) => {
    const [s] = services(text);
    expect(s).toMatchObject({ protocol: 'udp', port: 53, mode: 'dr', scheduler: 'rr', onePacket: true });
    const config = parseConfig(parse(importYaml(importIpvsadm(text, {}), 'rules')));
    expect(config.services[0]!.onePacket).toBe(true);
  });

  it('on TCP, which IPVS ignores it for, it is left out with a note; -E without -o clears it', () => {
    const r = importIpvsadm('-A -t 198.18.0.100:80 -s rr -o\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g\n', {});
    expect(r.config.services[0]!.onePacket).toBeUndefined();
    expect(r.notes.join('\n')).toMatch(
      /line 1: one-packet scheduling \(ops\) on tcp 198\.18\.0\.100:80, .* UDP only: left out/,
    );
    const [s] = services(
      '-A -u 198.18.0.100:53 -s rr -o\n-a -u 198.18.0.100:53 -r 198.18.20.21:53 -g\n-E -u 198.18.0.100:53 -s rr\n',
    );
    expect(s!.onePacket).toBeUndefined();
  });

  it('NAT takes it too (a session per client socket and server)', () => {
    const [s] = services('-A -u 198.18.0.100:53 -s rr -o\n-a -u 198.18.0.100:53 -r 198.18.20.21:53 -m\n');
    expect(s).toMatchObject({ mode: 'nat', onePacket: true });
  });
});

describe('tunvs import ipvsadm: firewall-mark services (-f), with what each mark covers (--fwmark)', () => {
  const fwmarks = new Map([
    [
      1,
      [
        { protocol: 'tcp' as const, vip: '198.18.0.100', port: 80 },
        { protocol: 'tcp' as const, vip: '198.18.0.100', port: 443 },
        { protocol: 'tcp' as const, vip: 'fd18:18::100', port: 443 },
      ],
    ],
  ]);
  it.each([
    [
      'ipvsadm -Sn',
      '-A -f 1 -s rr -p 600\n-a -f 1 -r 198.18.20.21:0 -g -w 1\n-a -f 1 -r 198.18.20.22:0 -g -w 2\n-a -f 1 -r [fd18:18:20::21]:0 -g -w 1\n',
    ],
    [
      'ipvsadm -Ln',
      'FWM  1 rr persistent 600\n  -> 198.18.20.21:0 Route 1 0 0\n  -> 198.18.20.22:0 Route 2 0 0\n  -> [fd18:18:20::21]:0 Route 1 0 0\n',
    ],
  ])('%s: a service per VIP:port the mark covers, one persistence group, the servers on each port', (_w, text) => {
    const r = importIpvsadm(text, { fwmarks });
    expect(r.config.services).toMatchObject([
      {
        name: 'tcp-198.18.0.100-80',
        port: 80,
        mode: 'dr',
        scheduler: 'rr',
        persistence: { timeoutSec: 600, group: 'fwmark-1' },
        realServers: [
          { address: '198.18.20.21', port: 80, weight: 1 },
          { address: '198.18.20.22', port: 80, weight: 2 },
        ],
      },
      { name: 'tcp-198.18.0.100-443', port: 443, realServers: [{ port: 443 }, { port: 443 }] },
      {
        name: 'tcp-fd18-18--100-443',
        vip: 'fd18:18::100',
        persistence: { group: 'fwmark-1' },
        realServers: [{ address: 'fd18:18:20::21', port: 443 }],
      },
    ]);
    const config = parseConfig(parse(importYaml(r, 'rules')));
    expect(config.services.map((s) => s.persistence?.group)).toEqual(['fwmark-1', 'fwmark-1', 'fwmark-1']);
  });

  it('--fwmark: MARK=PROTO/VIP:PORT,... or a clear error', () => {
    expect(parseFwmarkOption('7=tcp/198.18.0.100:80,udp/[fd18:18::100]:53')).toEqual([
      7,
      [
        { protocol: 'tcp', vip: '198.18.0.100', port: 80 },
        { protocol: 'udp', vip: 'fd18:18::100', port: 53 },
      ],
    ]);
    expect(() => parseFwmarkOption('tcp/198.18.0.100:80')).toThrow(/--fwmark takes MARK=PROTO\/VIP:PORT/);
    expect(() => parseFwmarkOption('1=sctp/198.18.0.100:80')).toThrow(/sctp\/198.18.0.100:80 is not PROTO\/VIP:PORT/);
    expect(() => parseFwmarkOption('1=tcp/198.18.0.100:0')).toThrow(/is not PROTO\/VIP:PORT/);
  });

  it('a server at one address on two ports is one server of the mark (IPVS ignores their ports): refused, not merged', () => {
    const e = refused('-A -f 1 -s rr\n-a -f 1 -r 198.18.20.21:80 -g\n-a -f 1 -r 198.18.20.21:443 -g -w 3', { fwmarks });
    expect(e.line).toBe(3);
    expect(e.message).toMatch(/real server 198\.18\.20\.21 is in firewall-mark service 1 twice \(lines 2 and 3\)/);
  });

  it('the CLI takes --fwmark', () => {
    const r = spawnSync(
      process.execPath,
      [
        join(distSrc(), 'cli', 'main.js'),
        'import',
        'ipvsadm',
        '--fwmark',
        '1=tcp/198.18.0.100:80,tcp/198.18.0.100:443',
      ],
      { input: '-A -f 1 -s rr -p\n-a -f 1 -r 198.18.20.21 -g\n', encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('persistence: { timeoutSec: 360, group: fwmark-1 }');
    expect(r.stdout).toContain('port: 443');
  });
});

describe('tunvs import ipvsadm: scripts of ipvsadm commands', () => {
  it("DPVS's FULLNAT: -b, --add-laddr -z (-F ignored), -j, --conn-timeout, clustered short options, continuation lines", () => {
    const script = `#!/bin/sh
# FULLNAT with DPVS
dpip addr add 198.18.0.100/32 dev dpdk0
ipvsadm -A -t 198.18.0.100:80 -s rr -j enable --conn-timeout 1800
ipvsadm --add-laddr -z 198.18.2.1 -t 198.18.0.100:80 -F dpdk0
ipvsadm -P -t 198.18.0.100:80 -z 198.18.2.2 -F dpdk0
ipvsadm -at 198.18.0.100:80 -r 198.18.20.21:80 -b
/sbin/ipvsadm -at 198.18.0.100:80 \\
    -r 198.18.20.22:80 -b -w 3   # a heavier one
ipvsadm --set 900 0 300
ipvsadm -Ln
`;
    const r = importIpvsadm(script);
    expect(r.config.services).toEqual([
      {
        name: 'tcp-198.18.0.100-80',
        protocol: 'tcp',
        vip: '198.18.0.100',
        port: 80,
        mode: 'fullnat',
        scheduler: 'rr',
        localAddresses: ['198.18.2.1', '198.18.2.2'],
        synProxy: 'on',
        idleTimeout: 1800,
        realServers: [
          { address: '198.18.20.21', port: 80, weight: 1 },
          { address: '198.18.20.22', port: 80, weight: 3 },
        ],
      },
    ]);
    expect(r.config.timeouts).toEqual({ established: 900, udp: 300 }); // 0: unchanged
    expect(r.notes).toContain('line 3: not an ipvsadm command, skipped: dpip addr add 198.18.0.100/32 dev dpdk0');
    expect(r.notes).toContain('line 11: --list is not a rule, skipped');
  });

  it('edits and deletes apply in order (-E sets every service option, -e a server, -d, -D, -C)', () => {
    const s = services(`-C
-A -t 198.18.0.100:80 -s rr -p 60
-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g
-a -t 198.18.0.100:80 -r 198.18.20.22:80 -g
-a -t 198.18.0.100:80 -r 198.18.20.23:80 -g
-E -t 198.18.0.100:80 -s sh
-e -t 198.18.0.100:80 -r 198.18.20.21:80 -g -w 5
-d -t 198.18.0.100:80 -r 198.18.20.23:80
-A -t 198.18.0.101:80
-a -t 198.18.0.101:80 -r 198.18.20.21:80
-D -t 198.18.0.101:80
`);
    expect(s).toHaveLength(1);
    expect(s[0]).toMatchObject({ scheduler: 'sh', mode: 'dr' });
    expect(s[0]!.persistence).toBeUndefined(); // -E without -p: not persistent, as ipvsadm
    expect(s[0]!.realServers).toEqual([
      { address: '198.18.20.21', port: 80, weight: 5 },
      { address: '198.18.20.22', port: 80, weight: 1 },
    ]);
  });

  it("-x / -y (connection thresholds) become the server's maxConns / minConns; -y alone is noted", () => {
    const r = importIpvsadm(`-A -t 198.18.0.100:80 -s wlc
-a -t 198.18.0.100:80 -r 198.18.20.21:80 -m -x 1000 -y 600
-a -t 198.18.0.100:80 -r 198.18.20.22:80 -m -x 500
-a -t 198.18.0.100:80 -r 198.18.20.23:80 -m -y 10 -x 0
`);
    expect(r.config.services[0]!.realServers).toEqual([
      { address: '198.18.20.21', port: 80, weight: 1, maxConns: 1000, minConns: 600 },
      { address: '198.18.20.22', port: 80, weight: 1, maxConns: 500 },
      { address: '198.18.20.23', port: 80, weight: 1 },
    ]);
    expect(r.notes).toContain('line 4: a lower threshold (10) without an upper one does nothing in IPVS: left out');
  });

  it("defaults are ipvsadm's: wlc, direct routing, weight 1, -p alone 360 s, a server's port the service's", () => {
    const s = services('-A -t 198.18.0.100:443 -p\n-a -t 198.18.0.100:443 -r 198.18.20.21\n');
    expect(s[0]).toMatchObject({
      scheduler: 'wlc',
      mode: 'dr',
      persistence: { timeoutSec: 360 },
      realServers: [{ address: '198.18.20.21', port: 443, weight: 1 }],
    });
  });

  it.each(['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'twos', 'fo', 'ovf', 'sh', 'mh'])(
    'IPVS scheduler %s is tunvs scheduler %s',
    (sched) => {
      const s = services(`-A -t 198.18.0.100:80 -s ${sched}\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g\n`);
      expect(s[0]!.scheduler).toBe(sched);
    },
  );

  it("scheduler flags: -b sh-port,sh-fallback, flag-1 / flag-2, a listing's (mh-fallback,mh-port)", () => {
    const rs = '-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g\n';
    const flags = (text: string) =>
      services(text).map((s) => [s.scheduler, s.hashPort ?? false, s.hashFallback ?? false]);
    expect(flags(`-A -t 198.18.0.100:80 -s sh -b sh-port,sh-fallback\n${rs}`)).toEqual([['sh', true, true]]);
    expect(flags(`-A -t 198.18.0.100:80 -s mh -b flag-2\n${rs}`)).toEqual([['mh', true, false]]);
    expect(flags(`-A -t 198.18.0.100:80 -s sh -b flag-1\n${rs}`)).toEqual([['sh', false, true]]);
    // -E sets the service anew: its flags too.
    expect(flags(`-A -t 198.18.0.100:80 -s sh -b sh-port\n${rs}-E -t 198.18.0.100:80 -s sh\n`)).toEqual([
      ['sh', false, false],
    ]);
    expect(flags('TCP  198.18.0.100:80 mh (mh-fallback,mh-port)\n  -> 198.18.20.21:80 Route 1 0 0\n')).toEqual([
      ['mh', true, true],
    ]);
  });

  it.each(['dh', 'lblc', 'lblcr'])('%s (by the destination) is refused: a service has one, its VIP', (sched) => {
    const e = refused(`-A -t 198.18.0.100:80 -s ${sched}\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g\n`);
    expect(e.message).toMatch(
      new RegExp(`scheduler ${sched} is not in tunvs .* one destination, its VIP.*--map-scheduler`),
    );
  });

  it('--map-scheduler maps what tunvs lacks; --laddr serves FULLNAT services without -z, by family', () => {
    const s = importIpvsadm(
      `-A -t 198.18.0.100:80 -s lblc
-a -t 198.18.0.100:80 -r 198.18.20.21:80 -b
-A -t [fd18:18::100]:80 -s rr
-a -t [fd18:18::100]:80 -r [fd18:18:20::21]:80 -b
`,
      { schedulerMap: { lblc: 'mh' }, laddrs: ['198.18.2.1', 'fd18:18:2::1'] },
    ).config.services;
    expect(s.map((x) => [x.scheduler, x.localAddresses])).toEqual([
      ['mh', ['198.18.2.1']],
      ['rr', ['fd18:18:2::1']],
    ]);
  });
});

/** What `ipvsadm -Ln` prints for SAVED's table (DPVS's listing has the same columns), with
 * `ipvsadm -L --timeout` appended. */
const LISTED = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 wrr persistent 300 mask 255.255.255.0
  -> 198.18.20.21:8080            Masq    1      3          10
  -> 198.18.20.22:8080            Masq    2      0          0
TCP  [fd18:18::100]:80 mh persistent 600 mask 64
  -> [fd18:18:20::21]:80          Route   1      0          0
  -> [fd18:18:20::22]:80          Route   0      0          0
UDP  198.18.0.100:53 sh
  -> 198.18.20.21:53              Tunnel  1      0          0
Timeout (tcp tcpfin udp): 900 120 300
`;

describe('tunvs import ipvsadm: what ipvsadm -Ln lists', () => {
  it('the same services as from ipvsadm -Sn; the timeouts from ipvsadm -L --timeout', () => {
    const r = importIpvsadm(LISTED, { laddrs: ['198.18.2.9'] });
    expect(r.config.services).toEqual(services(SAVED, ['198.18.2.9']));
    expect(r.config.timeouts).toEqual({ established: 900, finWait: 120, udp: 300 });
    expect(r.notes.join('\n')).toMatch(/read as `ipvsadm -Ln` output; DPVS's local addresses are not in it/);
    expect(importIpvsadm(LISTED.replace(/^Timeout.*\n/m, ''), { laddrs: ['198.18.2.9'] }).notes.join('\n')).toMatch(
      /append `ipvsadm -L --timeout`/,
    );
  });

  it("DPVS's: FullNat servers, synproxy, conn-timeout, a server's inhibited flag; dest-check left out with a note", () => {
    const r = importIpvsadm(
      `TCP  198.18.0.100:80 rr synproxy conn-timeout 600 dest-check internal:default
  -> 198.18.20.21:80              FullNat 1      0          0          inhibited
`,
      { laddrs: ['198.18.2.1'] },
    );
    expect(r.config.services[0]).toMatchObject({
      mode: 'fullnat',
      synProxy: 'on',
      idleTimeout: 600,
      localAddresses: ['198.18.2.1'],
    });
    expect(r.notes.join('\n')).toMatch(/line 1: DPVS's dest-check left out/);
  });

  it.each([
    ['FWM  1 rr\n  -> 198.18.20.21:80 Route 1 0 0', 1, /firewall-mark service/],
    ['TCP  198.18.0.100:80 sh (sh-fallback,flag-3)', 1, /flag-3 means nothing/],
    ['TCP  198.18.0.100:80 rr quic', 1, /service flag quic has no tunvs equivalent/],
    ['TCP  198.18.0.100:80 rr\n  -> 198.18.20.21:80 Local 1 0 0', 2, /Local .* the LB itself/],
    ['  -> 198.18.20.21:80 Route 1 0 0', 1, /a real server before any service/],
    ['MATCH tcp,from=198.18.100.0-198.18.100.255:0-0 rr', 1, /match service/],
    [
      'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\nTCP  198.18.0.100:80 1 2 3 4 5',
      1,
      /counters, not of rules/,
    ],
    ['TCP  lb.example.com:http rr\n  -> rs1.example.com:http Route 1 0 0', 1, /-n: numeric/],
  ] as const)('%s → line %i', (text, line, message) => {
    const e = refused(text);
    expect(e.line).toBe(line);
    expect(e.message).toMatch(message);
  });
});

describe('tunvs import ipvsadm: what tunvs does not do is refused, with the line', () => {
  it.each([
    ['-A -f 1 -s rr', 1, /firewall-mark service 1: .* give what it covers with --fwmark 1=tcp\/VIP:PORT/],
    ['-A -f x -s rr', 1, /-f x: a firewall mark is an integer/],
    [
      '-A -t 198.18.0.100:0 -s rr\n-a -t 198.18.0.100:0 -r 198.18.20.21 -g',
      1,
      /all-ports service .* must be persistent/,
    ],
    ['-A -t lb.example.com:http -s rr', 1, /is not ADDR\[:PORT\].*-n: numeric/],
    [
      '-A -t 198.18.0.100:80 -s lblc',
      1,
      /scheduler lblc is not in tunvs .* nearest is sh or mh .*--map-scheduler lblc=/,
    ],
    ['-A -t 198.18.0.100:80 -s sh -b mh-port', 1, /scheduler flag mh-port is for scheduler mh, not sh/],
    ['-A -t 198.18.0.100:80 -s rr -b flag-2', 1, /flag-2: tunvs scheduler rr does not hash the client/],
    ['-A -t 198.18.0.100:80 -s sh -b sh-sideways', 1, /sh-sideways is not one of IPVS's/],
    ['-A -t 198.18.0.100:80\n-A -t 198.18.0.100:80', 2, /added twice \(first on line 1\)/],
    ['-a -t 198.18.0.100:80 -r 198.18.20.21:80', 1, /does not exist here \(no -A before this line\)/],
    [
      '-A -t 198.18.0.100:80\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -m\n-a -t 198.18.0.100:80 -r 198.18.20.22:80 -g',
      3,
      /mixes forwarding methods \(nat on line 2, dr here\).*split the servers/,
    ],
    ['-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -b', 1, /no local addresses .* --laddr/],
    ['-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -i', 1, /outer source address/],
    ['-A -t 198.18.0.100:80 -s rr', 1, /no real servers, so its forwarding method is unknown/],
    ['-A -t 198.18.0.100:80 --frobnicate', 1, /unknown option --frobnicate/],
    ['-A -t 198.18.0.100:80 -s rr\n-a -t 198.18.0.100:80 -r 198.18.20.21:80 -g -w 70000', 1, /weight: 70000/],
    ['ipvsadm --add-whtlst -t 198.18.0.100:80 -2 198.18.100.1', 1, /acl \(allow, deny\)/],
  ] as const)('%s → line %i', (text, line, message) => {
    const e = refused(text);
    expect(e.line).toBe(line);
    expect(e.message).toMatch(message);
    expect(e.message.startsWith(`line ${line}: `)).toBe(true);
  });
});

describe('tunvs import ipvsadm: the command', () => {
  const cli = (args: string[], input?: string): { code: number; out: string; err: string } => {
    const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), 'import', 'ipvsadm', ...args], {
      encoding: 'utf8',
      ...(input !== undefined ? { input } : {}),
    });
    return { code: r.status ?? 1, out: r.stdout, err: r.stderr };
  };

  it('reads a file or stdin, prints the YAML, the notes on stderr; an error exits 1 with the line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-import-'));
    try {
      const file = join(dir, 'rules');
      writeFileSync(file, SAVED);
      const ok = cli([file, '--laddr', '198.18.2.9']);
      expect(ok.code, ok.err).toBe(0);
      expect(parseConfig(parse(ok.out)).services).toHaveLength(3);
      expect(ok.err).toContain('tunvs: import: no timeouts set');
      const piped = cli(['--laddr', '198.18.2.9'], SAVED);
      expect(piped.out.replace('stdin', file)).toBe(ok.out);
      const bad = cli([file]);
      expect(bad.code).toBe(1);
      expect(bad.err).toMatch(/^tunvs: import error \[TUNVS_ERR_IMPORT\] line 7: TUNNEL service .* --laddr/);
      expect(cli([file, '--map-scheduler', 'lblc']).code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
