/**
 * The real-server TOA reader, through the real tunvs LB in the netns lab: unmodified nginx,
 * Go, Node and C servers on rs1 see the client's address and port (IPv4 and IPv6 clients),
 * under load, with TCP_DEFER_ACCEPT, against a forged TOA, and not outside the cgroup; the
 * saved-SYN helper for servers without eBPF. Needs root; builds and removes its own lab.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { distSrc } from '../../src/paths.js';
import { LAB, labDown, labSpawn, labUp, nsName, readState, type LabState } from '../../src/lab/lab.js';
import { inNs, spawnInNs, stopPid } from '../../src/lab/netns.js';
import { cgroup2Root, readerStatus, resolveCgroup, type ReaderStatus } from '../../src/rs/reader.js';

const root = process.getuid?.() === 0;
const prefix = `tr${process.pid % 100000}-`;
const here = import.meta.dirname;
const cli = [process.execPath, join(distSrc(), 'cli', 'main.js')];
let state: LabState;

// rs1's servers, each behind VIP:port (both VIPs unless v4only).
const PORTS = {
  nginx: 8081,
  nginxDeferred: 8082,
  go: 8083,
  c: 8084,
  cInet: 8085, // an AF_INET socket: the getpeername4 path
  cOutside: 8086, // the same C server, started outside the reader's cgroup
  savedSyn: 8087, // the Node saved-SYN helper, outside the cgroup (no eBPF needed)
};

interface PeerCheck {
  connections: number;
  ok: number;
  sample?: { expected?: string; saw?: string };
  wrong: { expected?: string; saw?: string; error?: string }[];
}

function peerCheck(family: 4 | 6, port: number, connections: number): PeerCheck {
  const out = inNs(
    nsName(prefix, 'client'),
    [
      process.execPath,
      join(distSrc(), 'lab', 'peer_check.js'),
      family === 4 ? LAB.vip4 : LAB.vip6,
      String(port),
      String(connections),
      '60',
    ],
    90_000,
  );
  return JSON.parse(out) as PeerCheck;
}

/** forged_toa.py from a lab node: a hand-made connection whose TOA claims `fake`. */
function forgedToa(node: string, src: string, dst: string, port: number, fake: string, synOnly = false): string {
  const args = ['python3', join(here, 'forged_toa.py'), src, dst, String(port), fake, '4242'];
  return inNs(nsName(prefix, node), synOnly ? [...args, 'syn-only'] : args);
}

function labReader(): ReaderStatus {
  const dir = resolveCgroup(state.cgroup!);
  return readerStatus().find((r) => r.cgroup === dir)!;
}

async function waitListening(ns: string, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (inNs(ns, ['ss', '-Hltn', `sport = :${port}`]).trim().length > 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${ns}:${port}`);
}

function nginxConf(dir: string): string {
  const server = (port: number, extra: string): string => `
    server {
      listen ${port}${extra};
      listen [::]:${port}${extra};
      location / { return 200 "nginx saw client $remote_addr:$remote_port\\n"; }
    }`;
  return `daemon off;
user nobody nogroup;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 1024; }
http {
  client_body_temp_path ${dir}/nginx-tmp;
  proxy_temp_path ${dir}/nginx-tmp;
  fastcgi_temp_path ${dir}/nginx-tmp;
  uwsgi_temp_path ${dir}/nginx-tmp;
  scgi_temp_path ${dir}/nginx-tmp;
  log_format toa '$remote_addr:$remote_port $server_port';
  access_log ${dir}/nginx-access.log toa;
  ${server(PORTS.nginx, '')}
  ${server(PORTS.nginxDeferred, ' deferred')}
}
`;
}

/** Add a service per port (v4 and v6 VIP -> rs1:port) to LB A's config and reload it. */
async function addServices(): Promise<void> {
  const file = join(state.dir, 'lb-a.yaml');
  const rs1 = LAB.realServers[0];
  const svc = (family: 4 | 6, port: number, extra = ''): string => `  - name: rs-${family}-${port}
    vip: "${family === 4 ? LAB.vip4 : LAB.vip6}"
    port: ${port}
    localAddresses: [${(family === 4 ? LAB.laddrs4 : LAB.laddrs6).map((a) => `"${a}"`).join(', ')}]
    realServers: [{ address: "${family === 4 ? rs1.v4 : rs1.v6}", port: ${port} }]${extra}
`;
  let add = '';
  for (const port of Object.values(PORTS)) {
    const extra = port === PORTS.savedSyn ? '\n    toa: { inSyn: true }' : '';
    add += svc(4, port, extra);
    if (port !== PORTS.cInet) add += svc(6, port, extra);
  }
  writeFileSync(file, readFileSync(file, 'utf8') + add);
  const tunvs = state.procs.find((p) => p.name === 'tunvs-lb-a')!.pid;
  process.kill(tunvs, 'SIGHUP');
  const log = join(state.dir, 'tunvs-lb-a.log');
  for (let i = 0; i < 50; i++) {
    if (readFileSync(log, 'utf8').includes(`rs-6-${PORTS.savedSyn}`)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  // The reload log names the services it applied; without it, check the reload took.
  const list = execFileSync(cli[0]!, [...cli.slice(1), 'list', '--admin', state.adminSocket], { encoding: 'utf8' });
  if (!list.includes(`:${PORTS.savedSyn}`)) throw new Error(`reload did not add the services:\n${list}`);
}

describe.skipIf(!root)('eBPF TOA reader on real servers (root)', () => {
  beforeAll(async () => {
    await labDown(prefix, () => undefined);
    state = await labUp({ prefix, workers: 2, modes: false, log: () => undefined });
    state = readState(prefix)!;
    const dir = state.dir;
    const rs1 = nsName(prefix, 'rs1');
    execFileSync('cc', ['-O2', '-Wall', '-o', join(dir, 'toa_server_c'), join(here, 'servers', 'toa_server.c')]);
    execFileSync('go', ['build', '-o', join(dir, 'toa_server_go'), join(here, 'servers', 'toa_server.go')], {
      env: { ...process.env, GOCACHE: '/tmp/tunvs-go-cache', GOPATH: '/tmp/tunvs-gopath', GO111MODULE: 'off' },
      stdio: 'pipe',
    });
    execFileSync('mkdir', ['-p', join(dir, 'nginx-tmp')]);
    writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir));
    labSpawn(prefix, 'nginx', 'rs1', ['nginx', '-c', join(dir, 'nginx.conf'), '-p', dir], true);
    labSpawn(prefix, 'go', 'rs1', [join(dir, 'toa_server_go'), String(PORTS.go)], true);
    labSpawn(prefix, 'c', 'rs1', [join(dir, 'toa_server_c'), String(PORTS.c)], true);
    labSpawn(prefix, 'c-inet', 'rs1', [join(dir, 'toa_server_c'), '-4', String(PORTS.cInet)], true);
    labSpawn(prefix, 'c-outside', 'rs1', [join(dir, 'toa_server_c'), String(PORTS.cOutside)], false);
    labSpawn(
      prefix,
      'saved-syn',
      'rs1',
      [
        process.execPath,
        join(distSrc(), 'lab', 'demo_server.js'),
        '--name',
        'saved-syn',
        '--port',
        String(PORTS.savedSyn),
        '--saved-syn',
      ],
      false,
    );
    for (const port of Object.values(PORTS)) await waitListening(rs1, port);
    await addServices();
  }, 120_000);

  afterAll(async () => {
    const cgroup = state?.cgroup ? resolveCgroup(state.cgroup) : undefined;
    await labDown(prefix, () => undefined);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
    if (cgroup) {
      expect(existsSync(cgroup), 'the lab cgroup is removed').toBe(false);
      expect(readerStatus().some((r) => r.cgroup === cgroup)).toBe(false);
    }
  }, 60_000);

  it('bpftool (not ours) sees the three programs attached to the lab cgroup', () => {
    const out = execFileSync('bpftool', ['cgroup', 'show', resolveCgroup(state.cgroup!)], { encoding: 'utf8' });
    expect(out).toMatch(/cgroup_sock_ops\s+multi\s+toa_sockops/);
    expect(out).toMatch(/cgroup_inet4_getpeername\s+multi\s+toa_getpeername4/);
    expect(out).toMatch(/cgroup_inet6_getpeername\s+multi\s+toa_getpeername6/);
  });

  const servers: [string, number, 4 | 6][] = [];
  for (const family of [4, 6] as const) {
    servers.push(
      ['Node http (lab demo server, rs1..rs3)', LAB.vport, family],
      ['nginx ($remote_addr:$remote_port)', PORTS.nginx, family],
      ['nginx with listen ... deferred (TCP_DEFER_ACCEPT)', PORTS.nginxDeferred, family],
      ['Go net.Listen("tcp", ":8083") (tcp6 dual stack)', PORTS.go, family],
      ['C accept() + getpeername(), dual-stack AF_INET6 socket', PORTS.c, family],
    );
  }
  servers.push(['C accept() + getpeername(), AF_INET socket', PORTS.cInet, 4]);

  it.each(servers)('%s sees the client address and port (IPv%i client)', (_name, port, family) => {
    const r = peerCheck(family, port, 20);
    expect(r.wrong).toEqual([]);
    expect(r.ok).toBe(20);
    expect(r.sample?.saw).toMatch(family === 4 ? /^198\.18\.100\.10:\d+$/ : /^fd18:18:100::10:\d+$/);
  });

  it("nginx's access log has the client's address and port", () => {
    const lines = readFileSync(join(state.dir, 'nginx-access.log'), 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(80);
    for (const l of lines) expect(l).toMatch(/^(198\.18\.100\.10|fd18:18:100::10):\d+ 808[12]$/);
  });

  it('500 parallel connections through the VIP: every one sees its own address and port', () => {
    const r = peerCheck(4, LAB.vport, 500);
    console.log(`500 parallel: ${r.ok} correct`);
    expect(r.wrong).toEqual([]);
    expect(r.ok).toBe(500);
  }, 120_000);

  it('outside the cgroup the same server sees the LB local address', () => {
    const r = peerCheck(4, PORTS.cOutside, 5);
    expect(r.ok).toBe(0);
    for (const w of r.wrong) expect(w.saw).toMatch(/^198\.18\.2\.[12]:\d+$/);
  });

  it('a client that forges a TOA: the real server still sees the true client', () => {
    const out = forgedToa('client', LAB.client4, LAB.vip4, LAB.vport, '6.6.6.6');
    const port = /client port (\d+)/.exec(out)?.[1];
    expect(out).toContain(`saw client ${LAB.client4}:${port}`);
    expect(out).not.toContain('6.6.6.6');
  });

  it('a forged TOA sent straight to the real server, not from a trusted LB address, is ignored', () => {
    const before = labReader().counters.untrusted;
    const rs2 = LAB.realServers[1];
    const out = forgedToa('rs2', rs2.v4, LAB.realServers[0].v4, LAB.rsPort, '6.6.6.6');
    expect(out).toMatch(new RegExp(`saw client ${rs2.v4.replace(/\./g, '\\.')}:\\d+`));
    expect(labReader().counters.untrusted).toBe(before + 1);
  });

  it('the reader falls back to the saved SYN when the completing packet has no TOA', async () => {
    // A second reader, without the trust check, on a cgroup of its own with a C server in it;
    // a hand-made client puts a TOA in its SYN only.
    const cg = `${state.cgroup!}-fallback`;
    const rs1 = nsName(prefix, 'rs1');
    const port = 8090;
    const pid = spawnInNs(
      rs1,
      [join(state.dir, 'toa_server_c'), String(port)],
      join(state.dir, 'c-fallback.log'),
      process.env,
      [...cli, 'rs', 'exec', '--cgroup', cg, '--attach', '--'],
    );
    try {
      await waitListening(rs1, port);
      const rs2 = LAB.realServers[1];
      const out = forgedToa('rs2', rs2.v4, LAB.realServers[0].v4, port, '198.18.99.7', true);
      expect(out).toContain('c saw client 198.18.99.7:4242');
      const dir = resolveCgroup(cg);
      const r = readerStatus().find((x) => x.cgroup === dir)!;
      expect(r.counters.toa_saved_syn).toBe(1);
      expect(r.options.trusted).toEqual([]);
    } finally {
      await stopPid(pid);
      execFileSync(cli[0]!, [...cli.slice(1), 'rs', 'detach', '--cgroup', cg]);
      rmdirSync(resolveCgroup(cg));
    }
  });

  it.each([4, 6] as const)(
    'the Node saved-SYN helper (no eBPF) returns the client when the service puts the TOA in the SYN (IPv%i)',
    (family) => {
      const r = peerCheck(family, PORTS.savedSyn, 20);
      expect(r.wrong).toEqual([]);
      expect(r.ok).toBe(20);
    },
  );

  it('tunvs rs status counts what the reader did', () => {
    const r = labReader();
    expect(Object.keys(r.programs).sort()).toEqual(['toa_getpeername4', 'toa_getpeername6', 'toa_sockops']);
    expect(r.options.trusted).toEqual(['198.18.2.1/32', '198.18.2.2/32', 'fd18:18:2::1/128', 'fd18:18:2::2/128']);
    expect(r.counters.toa_v4).toBeGreaterThanOrEqual(600);
    expect(r.counters.toa_v6).toBeGreaterThanOrEqual(100);
    expect(r.counters.rewritten).toBeGreaterThanOrEqual(r.socketsServed);
    expect(r.counters.bad_option + r.counters.store_failed).toBe(0);
    const text = execFileSync(cli[0]!, [...cli.slice(1), 'rs', 'status'], { encoding: 'utf8' });
    expect(text).toContain(`cgroup ${resolveCgroup(state.cgroup!)}`);
    expect(text).toMatch(/sockets served: \d+/);
  });

  it('clear errors: a missing cgroup, no command for rs exec', () => {
    const run = (args: string[]): string => {
      try {
        execFileSync(cli[0]!, [...cli.slice(1), ...args], { encoding: 'utf8', stdio: 'pipe' });
        return '';
      } catch (e) {
        return String((e as { stderr: string }).stderr);
      }
    };
    expect(run(['rs', 'attach', '--cgroup', 'tunvs-no-such-cgroup'])).toContain(
      'does not exist (give an existing one, or --create to make it)',
    );
    expect(run(['rs', 'exec', '--cgroup', 'x'])).toContain('rs exec needs the command after --');
    expect(run(['rs', 'attach', '--cgroup', 'x', '--kind', '300'])).toContain('--kind must be a TCP option kind');
    expect(run(['rs', 'attach', '--cgroup', 'x', '--trust', '10.0.0.1/33'])).toContain('is not an address or prefix');
  });

  it('clear errors: no BPF permission, no cgroup2 mount', () => {
    const cg = `${state.cgroup!}-noperm`;
    const dir = resolveCgroup(cg);
    mkdirSync(dir);
    try {
      const drop = [
        '--bounding-set=-bpf,-sys_admin,-perfmon,-net_admin',
        '--inh-caps=-bpf,-sys_admin,-perfmon,-net_admin',
      ];
      const r = spawnSync('setpriv', [...drop, ...cli, 'rs', 'attach', '--cgroup', cg], { encoding: 'utf8' });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('[TUNVS_ERR_BPF_PERMISSION]');
      expect(r.stderr).toContain('CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON');
    } finally {
      rmdirSync(dir);
    }
    // A private mount namespace without the cgroup2 mount (the host's stays as it is).
    const script = `umount ${JSON.stringify(cgroup2Root())} && exec "$@"`;
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', ...cli, 'rs', 'attach', '--cgroup', 'x'], {
      encoding: 'utf8',
    });
    expect(r.stderr).toContain('[TUNVS_ERR_NO_CGROUP2] no cgroup2 filesystem is mounted');
  });

  it('after detach, new connections see the local address again (the reader made the difference)', () => {
    execFileSync(cli[0]!, [...cli.slice(1), 'rs', 'detach', '--cgroup', state.cgroup!]);
    const out = execFileSync('bpftool', ['cgroup', 'show', resolveCgroup(state.cgroup!)], { encoding: 'utf8' });
    expect(out).not.toContain('toa_');
    const r = peerCheck(4, PORTS.c, 3);
    expect(r.ok).toBe(0);
    for (const w of r.wrong) expect(w.saw).toMatch(/^198\.18\.2\.[12]:\d+$/);
  });
});
