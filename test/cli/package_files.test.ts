/**
 * What `npm pack` puts in the package (package.json "files"): every tracked source the
 * install script builds from (native/, its headers and eBPF programs), the launcher, the
 * scripts, the systemd units and the docs; no build output of node-gyp.
 */

import { execFileSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { packageRoot } from '../../src/paths.js';

it('npm pack has every tracked file of native/, bin/, scripts/, packaging/ and docs/, and no native build', () => {
  const root = packageRoot();
  const packed = new Set(
    (
      JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json'], { cwd: root, encoding: 'utf8' })) as {
        files: { path: string }[];
      }[]
    )[0]!.files.map((f) => f.path),
  );
  const tracked = execFileSync('git', ['ls-files', 'native', 'bin', 'scripts', 'packaging', 'docs'], {
    cwd: root,
    encoding: 'utf8',
  })
    .split('\n')
    .filter(Boolean);
  expect(tracked.length).toBeGreaterThan(20);
  expect(tracked.filter((f) => !packed.has(f))).toEqual([]);
  expect([...packed].filter((f) => /^native\/(rs\/)?build\//.test(f))).toEqual([]);
});
