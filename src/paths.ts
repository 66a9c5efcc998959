/** Where tunvs's own files are, whether running from src/ (tests) or dist/src/ (built). */

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: the nearest directory above this file with a package.json. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

/** keepalived's track script for a pair (native/ha_check.c, built with the TUN addon). */
export function haCheckBinary(): string {
  return join(packageRoot(), 'native', 'build', 'Release', 'tunvs-ha-check');
}

/** The compiled tree (dist/src), which the lab runs in its namespaces. */
export function distSrc(): string {
  return join(packageRoot(), 'dist', 'src');
}
