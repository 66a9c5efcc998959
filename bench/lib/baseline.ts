/**
 * Another build of tunvs in this process, to compare engines on a noisy machine: two runs of
 * the benchmark an hour apart differ by more than most changes (other tenants, the host's
 * clock, even which host the VM is on), but two engines measured in alternating short slices
 * within one process see the same machine.
 *
 *   buildBaseline   check git revision `rev` out into a temporary worktree and compile it
 *                   (its own tsconfig; this checkout's node_modules), once per revision
 *   loadBaseline    its Engine and its benchmark service (bench/lib/sessions.js `services`,
 *                   present since b97fe5b), imported beside this build's own modules; the
 *                   packets and the timing are this build's (sessions.ts), so only the
 *                   engines differ
 *   abba            the ratio of two measurements as the median of alternating pairs (ABBA)
 *
 * The worktree stays in the temporary directory (`git worktree prune` tidies it after a
 * reboot); a second run with the same revision reuses it.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../../src/paths.js';
import type { Engine } from '../../src/dataplane/engine.js';
import type { services } from './sessions.js';

export interface Baseline {
  rev: string;
  /** The baseline's commit, abbreviated. */
  commit: string;
  Engine: typeof Engine;
  /** The baseline's own service spec, resolved by its own code. */
  services: typeof services;
}

/** Compile revision `rev` of this repository; returns its worktree. */
export function buildBaseline(rev: string): { dir: string; commit: string } {
  const root = packageRoot();
  const git = (...args: string[]): string => execFileSync('git', ['-C', root, ...args], { encoding: 'utf8' }).trim();
  const commit = git('rev-parse', '--short=12', `${rev}^{commit}`);
  const dir = join(tmpdir(), `tunvs-baseline-${commit}`);
  if (!existsSync(join(dir, 'dist', 'src', 'dataplane', 'engine.js'))) {
    if (!existsSync(dir)) git('worktree', 'add', '--detach', dir, commit);
    if (!existsSync(join(dir, 'node_modules'))) symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', join(dir, 'tsconfig.build.json')], {
      stdio: 'inherit',
    });
  }
  if (!existsSync(join(dir, 'dist', 'bench', 'lib', 'sessions.js')))
    throw new Error(`baseline ${rev} (${commit}) has no bench/lib/sessions.ts: pick b97fe5b or later`);
  return { dir, commit };
}

export async function loadBaseline(rev: string): Promise<Baseline> {
  const { dir, commit } = buildBaseline(rev);
  const url = (p: string): string => pathToFileURL(join(dir, 'dist', p)).href;
  const engine = (await import(url('src/dataplane/engine.js'))) as { Engine: typeof Engine };
  const lib = (await import(url('bench/lib/sessions.js'))) as { services: typeof services };
  return { rev, commit, Engine: engine.Engine, services: lib.services };
}

/** `pairs` alternating measurements of `a` and `b` (a b, b a, a b …): each value b / a. */
export function abba(pairs: number, a: () => number, b: () => number): number[] {
  const ratios: number[] = [];
  for (let j = 0; j < pairs; j++) {
    if (j % 2 === 0) {
      const x = a();
      ratios.push(b() / x);
    } else {
      const y = b();
      ratios.push(y / a());
    }
  }
  return ratios;
}
