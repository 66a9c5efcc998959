/** `tunvs check --config FILE`: a config checked as `tunvs run` takes it, nothing run. */

import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkConfig } from '../../src/config/check.js';
import { ConfigError } from '../../src/config/errors.js';
import { labConfig } from '../../src/lab/topology.js';
import { distSrc } from '../../src/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'tunvs-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string): string => {
  const f = join(dir, `c${n++}.yaml`);
  writeFileSync(f, text);
  return f;
};
const cli = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

const GOOD = `workers: 2
isn: { secret: "0123456789abcdef0123" }
services:
  - name: web
    vip: 198.18.0.100
    port: 80
    localAddresses: [198.18.2.1]
    healthCheck: { type: http }
    realServers: [{ address: 198.18.20.21, port: 8080, weight: 1 }]
  - name: db
    vip: fd18:18::100
    port: 5432
    mode: dr
    scheduler: sh
    hashPort: true
    idleTimeout: 3600
    realServers: [{ address: "fd18:18:20::21", port: 5432, weight: 1 }]
`;

describe('tunvs check', () => {
  it('says what a good file sets up, a service a line, and exits 0', () => {
    const f = file(GOOD);
    const r = cli('check', '--config', f);
    expect(r.code).toBe(0);
    expect(r.out).toBe(
      `${f}: OK
  io tun, device tunvs0 (mtu 1500), 2 workers, 1048576 sessions; no ha (a single LB)
2 services:
  web: TCP 198.18.0.100:80, fullnat, wrr, 1 real server, 1 local address, http check
  db: TCP [fd18:18::100]:5432, dr, sh (port), 1 real server, idle 3600 s
`,
    );
  });

  it('names an all-ports service, a persistence group and one-packet scheduling', () => {
    const f = file(`isn: { secret: "0123456789abcdef0123" }
services:
  - name: dns
    protocol: udp
    vip: 198.18.0.104
    port: 53
    onePacket: true
    idleTimeout: 2
    localAddresses: [198.18.2.1]
    realServers: [{ address: 198.18.20.21, port: 53 }]
  - name: ftp
    vip: 198.18.0.102
    port: 0
    persistence: { timeoutSec: 600 }
    localAddresses: [198.18.2.1]
    healthCheck: { type: tcp, port: 21 }
    realServers: [{ address: 198.18.20.21, port: 0 }]
  - name: web
    vip: 198.18.0.103
    port: 80
    persistence: { group: shop }
    localAddresses: [198.18.2.1]
    realServers: [{ address: 198.18.20.21, port: 8080 }]
  - name: gre
    vip: 198.18.0.105
    port: 80
    mode: tunnel
    tunnel: { type: gre, checksum: true }
    localAddresses: [198.18.2.1]
    realServers: [{ address: 198.18.20.21, port: 80 }]
  - name: gue
    vip: 198.18.0.106
    port: 80
    mode: tunnel
    tunnel: { type: gue, port: 6080 }
    localAddresses: [198.18.2.1]
    realServers: [{ address: 198.18.20.21, port: 80 }]
`);
    const r = cli('check', '--config', f);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(
      '  ftp: TCP 198.18.0.102:0 (every port), fullnat, wrr, 1 real server, 1 local address, persistent 600, tcp check\n',
    );
    expect(r.out).toContain(
      '  web: TCP 198.18.0.103:80, fullnat, wrr, 1 real server, 1 local address, persistent 300 (group shop)\n',
    );
    expect(r.out).toContain(
      '  dns: UDP 198.18.0.104:53, fullnat, wrr, 1 real server, 1 local address, each datagram scheduled alone, reply wait 2 s\n',
    );
    expect(r.out).toContain(
      '  gre: TCP 198.18.0.105:80, tunnel (GRE with checksum), wrr, 1 real server, 1 local address\n',
    );
    expect(r.out).toContain(
      '  gue: TCP 198.18.0.106:80, tunnel (GUE to UDP port 6080, without the UDP checksum), wrr, 1 real server, 1 local address\n',
    );
  });

  it('refuses what run refuses, service checks included, with the path in the file; exit 1', () => {
    const r = cli('check', '--config', file(GOOD.replace('port: 5432, weight', 'port: 5433, weight')));
    expect(r.code).toBe(1);
    expect(r.err).toMatch(
      /^tunvs: config error \[TUNVS_ERR_CONFIG_MODE\] services\[1\]\.realServers\[0\]\.port: 5433 is not the service port 5432/,
    );
    expect(cli('check', '--config', join(dir, 'none.yaml')).err).toMatch(/cannot read the config file/);
    expect(cli('check', '--config', file('services: [')).err).toMatch(/not valid YAML/);
    expect(cli('check').code).toBe(2);
  });

  it("names the warnings tunvs run would log: a pair's or a cluster's node without a shared ISN key", () => {
    const text = GOOD.replace(/^isn: .*\n/m, '').replace(
      'services:',
      'ha:\n  nodeId: 1\n  name: lb-a\n  redis: "redis://198.18.20.30:6379"\n  cluster: c1\nservices:',
    );
    const out = checkConfig(file(text));
    expect(out).toMatch(/ha pair "c1", node 1 \(lb-a\), Redis redis:\/\/198\.18\.20\.30:6379/);
    expect(out).toMatch(/^warning: ha: give both LBs of the pair the same isn\.secret/m);
    const cluster = checkConfig(file(text.replace('  cluster: c1\n', '  cluster: c1\n  mode: cluster\n')));
    expect(cluster).toMatch(/^warning: ha: give every node of the cluster the same isn\.secret/m);
  });

  it('warns of an exec check whose program is missing or not executable; names a sorry server', () => {
    const script = join(dir, 'check.sh');
    writeFileSync(script, '#!/bin/sh\nexit 0\n', { mode: 0o644 });
    const exec = (program: string): string =>
      checkConfig(
        file(
          GOOD.replace(
            'healthCheck: { type: http }',
            `healthCheck: { type: exec, command: [${program}] }\n    sorryServer: { address: 198.18.20.99, port: 8080 }`,
          ),
        ),
      );
    expect(exec(script)).toMatch(
      /^warning: services\[0\] \(web\): healthCheck\.command .*check\.sh: not executable: every server of the service will fail its check$/m,
    );
    expect(exec(join(dir, 'missing.sh'))).toMatch(/missing\.sh: no such file/);
    expect(exec(dir)).toMatch(/: not a file:/);
    chmodSync(script, 0o755);
    const ok = exec(script);
    expect(ok).not.toMatch(/warning/);
    expect(ok).toMatch(
      /web: TCP 198\.18\.0\.100:80, fullnat, wrr, 1 real server, a sorry server, 1 local address, exec check/,
    );
    // Run as tunvs's own user (root), a program others could change is named: the file, then
    // a directory on its path; not with a user of its own.
    chmodSync(script, 0o777);
    expect(exec(script)).toMatch(
      /^warning: services\[0\] \(web\): healthCheck\.command .*check\.sh: .*check\.sh can be written by users other than root/m,
    );
    chmodSync(script, 0o755);
    chmodSync(dir, 0o777);
    try {
      expect(exec(script)).toMatch(new RegExp(`check\\.sh: ${dir} can be written by users other than root`));
      expect(
        checkConfig(
          file(
            GOOD.replace(
              'healthCheck: { type: http }',
              `healthCheck: { type: exec, command: [${script}], user: nobody, notifyDown: [${script}] }`,
            ),
          ),
        ),
      ).not.toMatch(/warning/);
    } finally {
      chmodSync(dir, 0o700);
    }
    // The service's quorum commands too.
    const quorum = checkConfig(
      file(
        GOOD.replace('healthCheck: { type: http }', `healthCheck: { type: http }\n    quorumDown: [${dir}/gone.sh]`),
      ),
    );
    expect(quorum).toMatch(/^warning: services\[0\] \(web\): quorumDown .*gone\.sh: no such file.*: it will not run$/m);
  });

  it('warns of a quorum nothing reads; a cluster with route health reads it', () => {
    const withQuorum = GOOD.replace('healthCheck: { type: http }', 'healthCheck: { type: http }\n    quorum: 2');
    expect(checkConfig(file(withQuorum))).toMatch(
      /^warning: services\[0\] \(web\): quorum and hysteresis are read by nothing here: .*ha\.routeHealth/m,
    );
    const cluster = withQuorum.replace(
      'services:',
      'ha:\n  mode: cluster\n  nodeId: 1\n  name: lb-a\n  redis: "redis://198.18.20.30:6379"\n  routeHealth: all\nservices:',
    );
    const out = checkConfig(file(cluster));
    expect(out).toMatch(
      /ha cluster "default", node 1 \(lb-a\), Redis redis:\/\/198\.18\.20\.30:6379, route health all/,
    );
    expect(out).not.toMatch(/warning/);
  });

  it("the lab's own configs pass: single, pair and cluster nodes, TUN and XDP, with the mode services", () => {
    const configs = [
      labConfig('/run/a.sock', { workers: 2, modes: true }),
      labConfig('/run/a.sock', {
        workers: 2,
        modes: true,
        ha: { mode: 'pair', cluster: 'p', node: 'lb-b', role: 'backup', fifo: '/run/f' },
      }),
      labConfig('/run/a.sock', {
        workers: 2,
        modes: true,
        io: 'xdp',
        ha: { mode: 'cluster', cluster: 'c', node: 'lb-c' },
      }),
    ];
    for (const c of configs) expect(checkConfig(file(c))).toMatch(/: OK\n/);
    const cluster = checkConfig(file(configs[2]!));
    expect(cluster).toMatch(/io xdp on eth0, eth1/);
    expect(cluster).toMatch(/tunnel-v4: TCP 198\.18\.0\.100:8080, tunnel, mh/);
    expect(cluster).not.toMatch(/nat-v4/);
  });

  it('a ConfigError is what it throws', () => {
    expect(() => checkConfig(file('workers: 0\nservices: []\n'))).toThrow(ConfigError);
  });
});
