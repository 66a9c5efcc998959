// Installs what a quick-start command needs before it runs (npm's pre-scripts call this),
// so `npm test` and `npm run lab` work on a fresh clone with nothing but Node.js and npm.
//
//   Debian packages: the commands the lab and the namespace tests use (iproute2, python3,
//     tshark, iperf3, ethtool), the eBPF TOA reader's toolchain (clang, libbpf-dev,
//     linux-libc-dev; bpftool to inspect it), keepalived and redis-server for the HA pair,
//     frr for the cluster (BGP, BFD, ECMP on the lab's router and nodes), with --test the
//     servers the reader is tested with (nginx, golang-go), nftables, systemd-analyze and
//     openssl, with --bench the benchmark's peers (nftables, haproxy); installed with apt-get when missing (needs root, as the lab does anyway).
//     Package scripts are not allowed to start services (policy-rc.d) while we install:
//     nginx must not start a daemon on this machine;
//   npm dependencies: `npm ci` when node_modules is missing or was installed from another
//     package-lock.json (a hash of the lock file is kept in node_modules);
//   the native addon and the compiled tree: built when missing.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });
const has = (cmd) => {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
};

// Debian packages, by the command (or, for a path, the file) that shows they are there.
const APT = [
  ['ip', 'iproute2'],
  ['python3', 'python3'],
  ['cc', 'build-essential'],
  ['make', 'build-essential'],
  ['tshark', 'tshark'], // an independent judge of what tunvs puts on the wire
  ['iperf3', 'iperf3'],
  ['ethtool', 'ethtool'],
  ['clang', 'clang'], // the eBPF TOA reader
  ['/usr/include/bpf/libbpf.h', 'libbpf-dev'],
  ['/usr/include/linux/bpf.h', 'linux-libc-dev'],
  ['bpftool', 'bpftool'],
  ['keepalived', 'keepalived'], // the HA pair (lab --ha, lab failover, the HA tests)
  ['redis-server', 'redis-server'], // (also runs the cluster lab's Sentinels: redis-server --sentinel)
  ['/usr/lib/frr/bgpd', 'frr'], // the cluster (lab --cluster): BGP, BFD and ECMP routing
];
// The tests: unmodified servers for the real-server reader, nft for the forged-TOA client.
if (process.argv.includes('--test')) {
  APT.push(['nginx', 'nginx'], ['go', 'golang-go'], ['nft', 'nftables']);
  // src/nat/siphash_wasm.ts is checked against the .wat it was made from.
  APT.push(['wat2wasm', 'wabt']);
  // The docker-compose lab test: Debian's engine and compose v1, debootstrap for the base image.
  APT.push(['dockerd', 'docker.io'], ['docker-compose', 'docker-compose'], ['debootstrap', 'debootstrap']);
  // The shipped systemd units are checked with systemd-analyze verify (no running systemd needed).
  APT.push(['systemd-analyze', 'systemd']);
  // The https health check is tested against a server with a certificate made by openssl.
  APT.push(['openssl', 'openssl']);
}
// The lab benchmark's peers and load tools.
if (process.argv.includes('--bench')) APT.push(['nft', 'nftables'], ['haproxy', 'haproxy']);
const present = (what) => (what.startsWith('/') ? existsSync(what) : has(what));
const missing = [...new Set(APT.filter(([what]) => !present(what)).map(([, pkg]) => pkg))];
if (missing.length > 0) {
  if (process.getuid?.() !== 0 || !has('apt-get')) {
    console.error(
      `tunvs: missing system packages: ${missing.join(' ')} — install them (Debian: apt-get install ${missing.join(' ')})`,
    );
    process.exit(1);
  }
  console.log(`tunvs: installing ${missing.join(' ')} (apt-get)...`);
  run('apt-get', ['update', '-qq']);
  const policy = '/usr/sbin/policy-rc.d';
  const ownPolicy = !existsSync(policy);
  if (ownPolicy)
    writeFileSync(policy, '#!/bin/sh\n# tunvs ensure-deps: no services started during install\nexit 101\n', {
      mode: 0o755,
    });
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  } finally {
    if (ownPolicy) rmSync(policy, { force: true });
  }
}

const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.tunvs-lock-hash');
const want = createHash('sha256').update(readFileSync(lock)).digest('hex');
const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
if (want !== have) {
  console.log('tunvs: installing npm dependencies (npm ci)...');
  run('npm', ['ci', '--no-audit', '--no-fund']); // its install script builds the native addon
  writeFileSync(stamp, `${want}\n`);
}
const built = [
  join(root, 'native', 'build', 'Release', 'tunvs_native.node'),
  join(root, 'native', 'rs', 'build', 'Release', 'tunvs_rs.node'),
  join(root, 'native', 'rs', 'build', 'toa_reader.bpf.o'),
];
if (!built.every((f) => existsSync(f))) {
  run(process.execPath, [join(root, 'scripts', 'build-native.mjs')]);
}
if (process.argv.includes('--build')) run('npm', ['run', 'build', '--silent']);
