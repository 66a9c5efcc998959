/**
 * The systemd units tunvs ships (packaging/systemd/, docs/operations.md): systemd's own
 * checker accepts them without a warning, and every tunvs command they run is one the CLI
 * takes, with its flags.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { distSrc, packageRoot } from '../../src/paths.js';

const DIR = join(packageRoot(), 'packaging', 'systemd');
const UNITS = readdirSync(DIR).filter((f) => f.endsWith('.service'));
/** Where the units expect tunvs (npm install -g .). */
const INSTALLED = '/usr/local/bin/tunvs';

/** The commands of the unit's Exec…= lines that run tunvs. */
function tunvsCommands(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => /^Exec\w+=/.test(l))
    .map((l) => l.slice(l.indexOf('=') + 1))
    .filter((c) => c.startsWith(`${INSTALLED} `));
}

describe('the shipped systemd units', () => {
  it('are tunvs.service and tunvs-watchdog.service', () => {
    expect(UNITS.sort()).toEqual(['tunvs-watchdog.service', 'tunvs.service']);
  });

  it.each(UNITS)('%s: systemd-analyze verify passes without a word', (unit) => {
    // verify checks that ExecStart's program exists: this checkout's launcher stands in.
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-units-'));
    try {
      for (const u of UNITS) {
        const text = readFileSync(join(DIR, u), 'utf8').replaceAll(INSTALLED, join(packageRoot(), 'bin', 'tunvs'));
        writeFileSync(join(dir, u), text);
      }
      const r = spawnSync('systemd-analyze', ['verify', join(dir, unit)], { encoding: 'utf8', cwd: dir });
      expect(r.error).toBeUndefined();
      expect(`${r.stdout}${r.stderr}`.trim()).toBe('');
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each(UNITS)('%s: runs tunvs commands the CLI takes (a wrong flag would be a usage error)', (unit) => {
    const commands = tunvsCommands(readFileSync(join(DIR, unit), 'utf8'));
    expect(commands.length).toBeGreaterThan(0);
    for (const command of commands) {
      const args = command.slice(INSTALLED.length + 1).split(' ');
      // With one flag more that no command takes: the CLI reads the unit's flags and values
      // first (a wrong one fails there, with another message), then names the extra one.
      const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--no-such-flag'], {
        encoding: 'utf8',
        timeout: 10_000,
      });
      expect(r.stderr.split('\n')[0], command).toBe('tunvs: unexpected argument: --no-such-flag');
      expect(r.status).toBe(2);
    }
  });
});
