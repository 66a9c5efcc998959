// Builds the native TUN addon (native/) with node-gyp. Runs as the package's install
// script, so `npm ci` / `npm install` build it; `npm test` and `npm run lab` run it again
// through scripts/ensure-deps.mjs when the build is missing.
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
for (const tool of ['cc', 'make', 'python3']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    fail(`'${tool}' is missing. On Debian/Ubuntu: apt-get install build-essential python3`);
  }
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

try {
  execFileSync(process.execPath, [gyp, 'rebuild', '--directory', join(root, 'native'), '--loglevel=warn'], {
    stdio: 'inherit',
    env,
  });
} catch {
  fail(
    'node-gyp failed (see above). Needs a C compiler, make, python3 and Node headers (Debian: build-essential, nodejs-dev)',
  );
}
