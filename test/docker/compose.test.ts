/**
 * The docker-compose lab, built and run with a real Docker engine (Debian's docker.io and
 * docker-compose v1): images built from the Dockerfile (on a local stand-in for the
 * node:20-bookworm-slim base when Docker Hub is out of reach: docker/base-image.sh), the lab
 * up, the VIP curled from the client container (the real server names the client), a 10 s
 * autocannon through the VIP with 0 errors, lb-a stopped under 50 byte-checked streams (they
 * and new connections go on through lb-b), and `down` leaving nothing behind. Then the
 * shipped systemd units (packaging/systemd/) under Debian's systemd as PID 1 of a container
 * of the lab's image (test/docker/systemd.Dockerfile): start, reload, kill -9, stop.
 *
 * Starts dockerd if none runs (and stops it by PID afterwards). Needs root. Without a Docker
 * engine the tests are skipped with the reason printed.
 */

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';

const root = process.getuid?.() === 0;
const project = `tunvstest${process.pid % 100000}`;
const cwd = packageRoot();
let dockerd: ChildProcess | undefined;
let unavailable: string | undefined;

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function dockerUp(): boolean {
  return spawnSync('docker', ['info'], { stdio: 'ignore', timeout: 10_000 }).status === 0;
}

function compose(args: string[], timeoutMs = 120_000): string {
  return execFileSync('docker-compose', ['-p', project, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: timeoutMs,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Run in the client container. */
function client(args: string[], timeoutMs = 60_000): string {
  return compose(['exec', '-T', 'client', ...args], timeoutMs);
}

function leftovers(): { containers: string; networks: string; volumes: string } {
  const label = `label=com.docker.compose.project=${project}`;
  const q = (what: string[]): string =>
    execFileSync('docker', [...what, '-q', '--filter', label], { encoding: 'utf8' }).trim();
  return { containers: q(['ps', '-a']), networks: q(['network', 'ls']), volumes: q(['volume', 'ls']) };
}

describe.skipIf(!root)('docker-compose lab (root, Docker engine)', () => {
  beforeAll(async () => {
    if (!has('docker') || !has('dockerd') || !has('docker-compose')) {
      unavailable = 'docker, dockerd or docker-compose is not installed (apt-get install docker.io docker-compose)';
      return;
    }
    if (!dockerUp()) {
      const log = openSync('/tmp/tunvs-test-dockerd.log', 'a');
      dockerd = spawn('dockerd', [], { stdio: ['ignore', log, log], detached: true });
      closeSync(log);
      for (let i = 0; i < 60 && !dockerUp(); i++) await new Promise((r) => setTimeout(r, 500));
      if (!dockerUp()) {
        unavailable = 'dockerd did not start (see /tmp/tunvs-test-dockerd.log)';
        return;
      }
    }
    execFileSync('sh', [`${cwd}/docker/base-image.sh`], { stdio: 'inherit', timeout: 600_000 });
    compose(['build'], 1_200_000);
    compose(['up', '-d'], 300_000);
  }, 1_800_000);

  afterAll(async () => {
    if (!unavailable) {
      try {
        compose(['down', '-v', '--remove-orphans'], 120_000);
      } catch (e) {
        console.error(`compose down: ${(e as Error).message}`);
      }
    }
    if (dockerd?.pid !== undefined) {
      process.kill(dockerd.pid, 'SIGTERM'); // the dockerd this test started, by its PID
      for (let i = 0; i < 60 && dockerd.exitCode === null; i++) await new Promise((r) => setTimeout(r, 500));
    }
  }, 240_000);

  it('the lab is up: curl from the client; the real server saw the client address', (ctx) => {
    if (unavailable) {
      console.log(`skipped: ${unavailable}`);
      ctx.skip();
    }
    const seen = new Set<string>();
    // rr runs per worker (each has its own cursor), so give both workers a few rounds.
    for (let i = 0; i < 30; i++) {
      const body = client(['curl', '-fsS', '--max-time', '5', 'http://198.18.0.100/']);
      expect(body).toMatch(/^rs[123] saw client 198\.18\.10\.100:\d+$/m);
      seen.add(body.split(' ')[0]!);
    }
    expect(seen.size).toBe(3); // rr over rs1..rs3
  });

  it('autocannon through the VIP for 10 s: 0 errors', (ctx) => {
    if (unavailable) ctx.skip();
    const out = client(['autocannon', '-j', '-c', '20', '-d', '10', 'http://198.18.0.100/'], 60_000);
    const r = JSON.parse(out) as { requests: { total: number }; errors: number; timeouts: number; non2xx: number };
    console.log(`docker lab autocannon: ${r.requests.total} requests, ${r.errors} errors, ${r.non2xx} non-2xx`);
    expect(r.requests.total).toBeGreaterThan(1000);
    expect(r.errors + r.timeouts + r.non2xx).toBe(0);
  }, 90_000);

  it('stop lb-a: synced established connections and new ones go on through lb-b', async (ctx) => {
    if (unavailable) ctx.skip();
    const streams = new Promise<string>((resolve) => {
      const p = spawn(
        'docker-compose',
        [
          '-p',
          project,
          'exec',
          '-T',
          'client',
          'node',
          '/opt/tunvs/dist/src/lab/stream_check.js',
          '198.18.0.100',
          '9000',
          '50',
          '14',
        ],
        { cwd, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.on('close', () => resolve(out));
    });
    await new Promise((r) => setTimeout(r, 5000)); // established and synced (syncAfter 2 s)
    const synced = compose(['exec', '-T', 'lb-b', 'tunvs', 'ha', 'status', '--admin', '/run/tunvs/admin.sock']);
    expect(synced).toMatch(/role\s+backup/);
    compose(['stop', 'lb-a'], 60_000);
    const fresh = client(['curl', '-fsS', '--max-time', '10', 'http://198.18.0.100/']);
    expect(fresh).toMatch(/saw client 198\.18\.10\.100/);
    const r = JSON.parse((await streams).trim().split('\n').pop()!) as {
      ok: number;
      reset: number;
      bytesLost: number;
      corruptedBytes: number;
      stallMsMedian: number;
      stallMsMax: number;
    };
    console.log(
      `docker lab, lb-a stopped: ${r.ok}/50 streams intact; stall median ${r.stallMsMedian} ms, max ${r.stallMsMax} ms`,
    );
    if (r.stallMsMax > 1000) {
      // Usually ~150 ms; a stall of seconds is VRRP's master-down timer or a failing check:
      // keep what both LBs said about it in the test output.
      for (const lb of ['lb-a', 'lb-b']) {
        const said = compose(['logs', '--no-color', '-t', lb])
          .split('\n')
          .filter((l) => /STATE|state|role|Stopping|tunvs (run|exit)|check|priority|error/i.test(l));
        console.log(`${lb}:\n${said.slice(-25).join('\n')}`);
      }
    }
    expect(r.ok).toBe(50);
    expect(r.reset + r.bytesLost + r.corruptedBytes).toBe(0);
    const after = compose(['exec', '-T', 'lb-b', 'tunvs', 'ha', 'status', '--admin', '/run/tunvs/admin.sock']);
    expect(after).toMatch(/role\s+master/);
  }, 120_000);

  it('down leaves no containers, networks or volumes', (ctx) => {
    if (unavailable) ctx.skip();
    compose(['down', '-v', '--remove-orphans'], 120_000);
    expect(leftovers()).toEqual({ containers: '', networks: '', volumes: '' });
  }, 150_000);

  it('the shipped systemd units under a real systemd: start, reload (a bad file refused), back after kill -9, stop', async (ctx) => {
    if (unavailable) ctx.skip();
    const image = `tunvs-systemd:${project}`;
    execFileSync('docker', ['build', '-q', '-f', 'test/docker/systemd.Dockerfile', '-t', image, '.'], {
      cwd,
      timeout: 600_000,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const id = execFileSync(
      'docker',
      // systemd as PID 1: SYS_ADMIN for its mounts and cgroups (--privileged asks for caps this
      // host does not grant), the host's cgroup tree to make the units' cgroups in, /run and
      // /run/lock as tmpfs; tunvs's own needs as in docker-compose.yml.
      [
        ...['run', '-d', '--security-opt', 'seccomp=unconfined', '--cgroupns=host'],
        ...['-v', '/sys/fs/cgroup:/sys/fs/cgroup:rw', '--tmpfs', '/run', '--tmpfs', '/run/lock'],
        ...['--device', '/dev/net/tun:/dev/net/tun'],
        ...['SYS_ADMIN', 'NET_ADMIN', 'NET_RAW', 'SYS_NICE', 'IPC_LOCK'].flatMap((c) => ['--cap-add', c]),
        ...['--label', `com.docker.compose.project=${project}`, image],
      ],
      { encoding: 'utf8', timeout: 60_000 },
    ).trim();
    const exec = (args: string[], input?: string) =>
      spawnSync('docker', ['exec', ...(input !== undefined ? ['-i'] : []), id, ...args], {
        encoding: 'utf8',
        timeout: 60_000,
        ...(input !== undefined ? { input } : {}),
      });
    const out = (args: string[]) => exec(args).stdout.trim();
    const show = (prop: string) => out(['systemctl', 'show', '-p', prop, '--value', 'tunvs']);
    const waitFor = async (what: string, ok: () => boolean, ms = 20_000): Promise<number> => {
      const t0 = Date.now();
      while (!ok()) {
        if (Date.now() - t0 > ms) {
          console.log(out(['journalctl', '-u', 'tunvs', '-u', 'tunvs-watchdog', '--no-pager', '-n', '40']));
          throw new Error(`timed out waiting for ${what}`);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      return Date.now() - t0;
    };
    const config = (port: number) => `isn: { secret: "0123456789abcdef0123" }
sessions: 65536
services:
  - { name: web, vip: 198.18.0.100, port: ${port}, localAddresses: [198.18.2.1], realServers: [{ address: 198.18.20.21, port: 8080 }] }
`;
    const list = () => out(['tunvs', 'list', '-n']);
    try {
      await waitFor('systemd to be up', () => /running|degraded/.test(out(['systemctl', 'is-system-running'])), 60_000);
      expect(exec(['sh', '-c', 'mkdir -p /etc/tunvs && cat > /etc/tunvs/tunvs.yaml'], config(80)).status).toBe(0);
      expect(exec(['systemctl', 'start', 'tunvs']).status).toBe(0);
      await waitFor('tunvs to answer', () => list().includes('198.18.0.100:80'));
      expect(out(['systemctl', 'is-active', 'tunvs-watchdog'])).toBe('active'); // WantedBy tunvs
      expect(out(['ip', '-o', 'link', 'show', 'tunvs0'])).toMatch(/tunvs0/);
      const pid = show('MainPID');

      // systemctl reload: the file is checked (ExecReload's tunvs check), then SIGHUP.
      exec(['sh', '-c', 'cat > /etc/tunvs/tunvs.yaml'], config(81));
      expect(exec(['systemctl', 'reload', 'tunvs']).status).toBe(0);
      await waitFor('the reload', () => list().includes('198.18.0.100:81'));
      exec(['sh', '-c', 'cat > /etc/tunvs/tunvs.yaml'], 'services: [');
      expect(exec(['systemctl', 'reload', 'tunvs']).status).not.toBe(0);
      expect(show('MainPID')).toBe(pid);
      expect(list()).toContain('198.18.0.100:81');
      exec(['sh', '-c', 'cat > /etc/tunvs/tunvs.yaml'], config(81));

      // kill -9: Restart=on-failure brings it back (RestartSec=1).
      expect(exec(['sh', '-c', `kill -9 ${pid}`]).status).toBe(0);
      const back = await waitFor('tunvs back after kill -9', () => {
        const now = show('MainPID');
        return now !== '0' && now !== pid && list().includes('198.18.0.100:81');
      });
      console.log(`systemd: tunvs back ${back} ms after kill -9 (RestartSec=1)`);
      expect(show('NRestarts')).toBe('1');

      // stop: SIGTERM to tunvs alone (KillMode=mixed); it undoes its device and routes.
      expect(exec(['systemctl', 'stop', 'tunvs']).status).toBe(0);
      expect(out(['systemctl', 'is-active', 'tunvs'])).toBe('inactive');
      expect(show('Result')).toBe('success');
      expect(out(['systemctl', 'is-active', 'tunvs-watchdog'])).toBe('inactive'); // PartOf tunvs
      expect(exec(['ip', 'link', 'show', 'tunvs0']).status).not.toBe(0);
      expect(out(['ip', '-o', 'route', 'show', '198.18.0.100'])).toBe('');
    } finally {
      spawnSync('docker', ['rm', '-f', id], { stdio: 'ignore', timeout: 60_000 });
      spawnSync('docker', ['rmi', image], { stdio: 'ignore', timeout: 60_000 });
    }
  }, 900_000);
});
