// Installs what a quick-start command needs before it runs (npm's pre-scripts call this),
// so `npm test` and `npm run lab` work on a fresh clone with nothing but Node.js and npm.
//
// npm dependencies: `npm ci` when node_modules is missing or was installed from another
// package-lock.json (a hash of the lock file is kept in node_modules).
// Later issues add Debian packages (iproute2, nftables, …) and the native build here.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lock = join(root, 'package-lock.json');
const stamp = join(root, 'node_modules', '.tunvs-lock-hash');

const want = createHash('sha256').update(readFileSync(lock)).digest('hex');
const have = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : '';
if (want !== have) {
  console.log('tunvs: installing npm dependencies (npm ci)...');
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  writeFileSync(stamp, `${want}\n`);
}
