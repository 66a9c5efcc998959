/**
 * Where every benchmark writes its figures: bench/results/<name>-<time>.json (not committed),
 * with the benchmark's name and the date first.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/paths.js';

/** Write `data` under `name` and say where; returns the file. */
export function writeResults(name: string, data: object): string {
  const dir = join(packageRoot(), 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const date = new Date().toISOString();
  const file = join(dir, `${name}-${date.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ bench: name, date, ...data }, null, 2)}\n`);
  console.log(`\nwrote ${file}`);
  return file;
}
