// Builds the native parts with node-gyp. Runs as the package's install script, so
// `npm ci` / `npm install` build them; `npm test` and `npm run lab` run it again through
// scripts/ensure-deps.mjs when a build is missing.
//
//   native/            the TUN addon (tunvs_native.node): needs a C compiler and Node headers;
//   native/rs/         the real-server TOA reader: the eBPF object (clang -target bpf) and its
//                      loader addon (tunvs_rs.node, linked with libbpf). Needs clang,
//                      libbpf-dev and linux-libc-dev; without them the LB still builds and
//                      `tunvs rs` says what to install. Beside it, the XDP IPIP decapsulator
//                      for TUNNEL-mode real servers (ipip_decap.bpf.o: IP-in-IP, GRE and GUE, `tunvs rs decap`).
//
// Node's headers: node-gyp uses npm's `nodedir` when set (Debian's nodejs-dev puts them in
// /usr/include/node), otherwise it would download them, which an offline machine cannot:
// we point it at the headers next to the running node when they exist.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function fail(message) {
  console.error(`tunvs: cannot build the native addon: ${message}`);
  process.exit(1);
}

if (process.platform !== 'linux') fail('tunvs runs on Linux only (TUN, netns, eBPF).');
function has(tool) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
for (const tool of ['cc', 'make', 'python3']) {
  if (!has(tool)) fail(`'${tool}' is missing. On Debian/Ubuntu: apt-get install build-essential python3`);
}

let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  fail('node-gyp is not installed: run npm ci first');
}

const env = { ...process.env };
const candidates = [env.npm_config_nodedir, join(dirname(process.execPath), '..'), '/usr'].filter(Boolean);
const nodedir = candidates.find((d) => existsSync(join(d, 'include', 'node', 'node_api.h')));
if (nodedir) env.npm_config_nodedir = nodedir;
else if (!env.CI) console.warn('tunvs: Node headers not found locally; node-gyp will try to download them');

const gypBuild = (dir) =>
  execFileSync(process.execPath, [gyp, 'rebuild', '--directory', dir, '--loglevel=warn'], { stdio: 'inherit', env });

try {
  gypBuild(join(root, 'native'));
} catch {
  fail(
    'node-gyp failed (see above). Needs a C compiler, make, python3 and Node headers (Debian: build-essential, nodejs-dev)',
  );
}

// The eBPF TOA reader (optional for the LB itself).
const rsDir = join(root, 'native', 'rs');
const missingForReader = [
  ['clang', has('clang')],
  ['libbpf-dev', existsSync('/usr/include/bpf/libbpf.h')],
  ['linux-libc-dev', existsSync('/usr/include/linux/bpf.h')],
]
  .filter(([, ok]) => !ok)
  .map(([pkg]) => pkg);
if (missingForReader.length > 0) {
  console.warn(
    `tunvs: the eBPF TOA reader (tunvs rs) is not built: missing ${missingForReader.join(', ')} (Debian: apt-get install ${missingForReader.join(' ')})`,
  );
} else {
  try {
    gypBuild(rsDir);
    const multiarch = execFileSync('sh', ['-c', 'gcc -print-multiarch 2>/dev/null || true'], {
      encoding: 'utf8',
    }).trim();
    // The TOA reader, and the IP-in-IP / GRE / GUE decapsulator for TUNNEL-mode real servers (tunvs rs decap).
    for (const prog of ['toa_reader', 'ipip_decap']) {
      execFileSync(
        'clang',
        [
          '-O2',
          '-g',
          '-Wall',
          '-target',
          'bpf',
          ...(multiarch ? ['-I', `/usr/include/${multiarch}`] : []),
          '-c',
          join(root, 'native', 'bpf', `${prog}.bpf.c`),
          '-o',
          join(rsDir, 'build', `${prog}.bpf.o`),
        ],
        { stdio: 'inherit' },
      );
    }
  } catch {
    fail('building the eBPF TOA reader failed (see above). Needs clang, libbpf-dev and linux-libc-dev');
  }
}
