/**
 * The process each container of the docker-compose lab runs (docker-compose.yml):
 *
 *   lb-a, lb-b   writes the tunvs config (the netns lab's services, IPv4; TUNVS_IO=xdp: on the
 *                AF_XDP path) and keepalived's
 *                (the same VRRP pair as the netns lab), starts tunvs and keepalived and
 *                watches them: tunvs is restarted if it dies (keepalived meanwhile moves the
 *                next hops to the other LB), the container ends if keepalived does;
 *   rs1..rs3     routes the local addresses via the LBs' floating next hop, attaches the eBPF
 *                TOA reader to a cgroup of its own and runs the demo server in it;
 *   client       routes the VIPs via the LBs' floating next hop and waits (curl, autocannon).
 *
 * SIGTERM stops what it started (by PID) and undoes what it set up, within the stop grace.
 * Usage: node compose_node.js lb-a|lb-b|rs1|rs2|rs3|client
 */

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRequest } from '../control/admin.js';
import { distSrc, haCheckBinary } from '../paths.js';
import { detachReader, resolveCgroup } from '../rs/reader.js';
import { keepalivedConfig, LAB, labConfig } from './topology.js';

/** What a stop may take, its children's together: under docker-compose.yml's stop_grace_period
 * (5 s), past which Docker kills the container. keepalived usually ends in milliseconds and
 * leaves the rest to tunvs, whose orderly stop can take seconds (a master publishes its
 * young sessions for up to HA_STAND_DOWN_MS, then its forwarders get 2 s to end). */
const STOP_BUDGET_MS = 4500;

const role = process.argv[2] ?? '';
const RUN = '/run/tunvs';
const CLI = join(distSrc(), 'cli', 'main.js');
const children: ChildProcess[] = [];
let stopping = false;
const cleanups: (() => void)[] = [];

function say(msg: string): void {
  console.log(`[${role}] ${msg}`);
}

function ip(args: string[]): void {
  execFileSync('ip', args, { stdio: 'inherit' });
}

/** The interface holding an address in `prefix` (e.g. "198.18.10."). */
function interfaceWith(prefix: string): string {
  const out = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  const line = out.split('\n').find((l) => l.includes(` ${prefix}`));
  if (!line) throw new Error(`no interface with an address in ${prefix}0/24: is the container on that network?`);
  return line.split(/\s+/)[1]!;
}

function start(name: string, cmd: string, args: string[], onExit?: (code: number | null) => void): ChildProcess {
  const child = spawn(cmd, args, { stdio: 'inherit' });
  children.push(child);
  child.on('exit', (code) => {
    children.splice(children.indexOf(child), 1);
    if (!stopping) {
      say(`${name} exited (${code})`);
      onExit?.(code);
    }
  });
  return child;
}

async function waitAdmin(sock: string): Promise<void> {
  for (let i = 0; i < 150; i++) {
    try {
      await adminRequest(sock, { cmd: 'stats' }, 1000);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('tunvs did not come up');
}

async function lb(node: 'lb-a' | 'lb-b'): Promise<void> {
  mkdirSync(RUN, { recursive: true });
  const admin = join(RUN, 'admin.sock');
  const fifo = join(RUN, 'keepalived.fifo');
  const config = join(RUN, 'tunvs.yaml');
  // TUNVS_IO=xdp docker-compose up: the AF_XDP path on the container's two interfaces.
  const io = process.env.TUNVS_IO === 'xdp' ? 'xdp' : 'tun';
  writeFileSync(
    config,
    labConfig(admin, {
      workers: 2,
      ha: { mode: 'pair', cluster: 'compose', node, role: 'backup', fifo },
      v6: false,
      io,
      interfaces: [interfaceWith('198.18.10.'), interfaceWith('198.18.20.')],
    }),
  );
  const runTunvs = (): void => {
    start('tunvs', process.execPath, [CLI, 'run', '--config', config], () => setTimeout(runTunvs, 1000));
  };
  runTunvs();
  await waitAdmin(admin);
  const kconf = join(RUN, 'keepalived.conf');
  writeFileSync(
    kconf,
    keepalivedConfig({
      node,
      priority: node === 'lb-a' ? 250 : 249,
      check: haCheckBinary(),
      adminSocket: admin,
      routerId: `compose-${node}`,
      fifo,
      up: interfaceWith('198.18.10.'),
      servers: interfaceWith('198.18.20.'),
      v6: false,
    }),
  );
  start(
    'keepalived',
    'keepalived',
    ['-n', '-l', '--vrrp', '-f', kconf, '-p', join(RUN, 'keepalived.pid'), '-r', join(RUN, 'keepalived-vrrp.pid')],
    () => void stop(1),
  );
  say('tunvs and keepalived running');
}

function rs(name: string): void {
  ip(['route', 'replace', '198.18.2.0/24', 'via', LAB.float.rs4]);
  // The reader attaches to a cgroup v2; a privileged container can mount the hierarchy itself.
  const mounted = readFileSync('/proc/self/mountinfo', 'utf8').includes(' - cgroup2 ');
  if (!mounted) {
    mkdirSync('/run/cgroup2', { recursive: true });
    execFileSync('mount', ['-t', 'cgroup2', 'none', '/run/cgroup2']);
  }
  const cgroup = `tunvs-compose/${name}-${process.pid}`;
  execFileSync(
    process.execPath,
    [CLI, 'rs', 'attach', '--cgroup', cgroup, '--create', ...LAB.laddrs4.flatMap((a) => ['--trust', a])],
    { stdio: 'inherit' },
  );
  cleanups.push(() => {
    detachReader(cgroup);
    const dir = resolveCgroup(cgroup);
    for (const d of [dir, resolveCgroup('tunvs-compose')]) {
      try {
        rmdirSync(d);
      } catch {
        // not empty yet (another real server), or gone
      }
    }
  });
  start(
    'demo server',
    process.execPath,
    [
      CLI,
      'rs',
      'exec',
      '--cgroup',
      cgroup,
      '--',
      process.execPath,
      join(distSrc(), 'lab', 'demo_server.js'),
      '--name',
      name,
      '--port',
      String(LAB.rsPort),
      '--echo-port',
      String(LAB.echoPort),
    ],
    () => void stop(1),
  );
}

async function stop(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  const deadline = Date.now() + STOP_BUDGET_MS;
  for (const c of [...children].reverse()) {
    if (c.pid !== undefined && c.exitCode === null) {
      c.kill('SIGTERM');
      await new Promise<void>((r) => {
        const t = setTimeout(
          () => {
            c.kill('SIGKILL');
            r();
          },
          Math.max(0, deadline - Date.now()),
        );
        c.once('exit', () => {
          clearTimeout(t);
          r();
        });
      });
    }
  }
  for (const f of cleanups) {
    try {
      f();
    } catch (e) {
      say(`cleanup: ${(e as Error).message}`);
    }
  }
  process.exit(code);
}

process.on('SIGTERM', () => void stop(0));
process.on('SIGINT', () => void stop(0));

try {
  if (role === 'lb-a' || role === 'lb-b') await lb(role);
  else if (/^rs[1-3]$/.test(role)) rs(role);
  else if (role === 'client') {
    ip(['route', 'replace', '198.18.0.0/24', 'via', LAB.float.up4]);
    say(`routes the VIPs via ${LAB.float.up4}; try: curl http://${LAB.vip4}/`);
    setInterval(() => undefined, 1 << 30);
  } else {
    console.error('usage: compose_node lb-a|lb-b|rs1|rs2|rs3|client');
    process.exit(2);
  }
} catch (e) {
  console.error(`[${role}] ${(e as Error).message}`);
  await stop(1);
}
