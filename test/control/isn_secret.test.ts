import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { isnKey } from '../../src/control/isn_secret.js';

const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'tunvs-isn-'));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('ISN key', () => {
  it('is created once in the secret file (0600) and the same on every later start', () => {
    const file = join(tmp(), 'sub', 'isn-secret');
    const warnings: string[] = [];
    const a = isnKey({ secretFile: file }, (m) => warnings.push(m));
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    expect(isnKey({ secretFile: file }, (m) => warnings.push(m))).toEqual(a);
    expect(warnings).toEqual([]);
  });

  it('an inline secret gives the same key on both LBs of a pair; a different one another key', () => {
    const k = isnKey({ secret: 'the-pair-secret-0123' }, () => undefined);
    expect(isnKey({ secret: 'the-pair-secret-0123' }, () => undefined)).toEqual(k);
    expect(isnKey({ secret: 'the-pair-secret-0124' }, () => undefined)).not.toEqual(k);
    expect(k).toHaveLength(4); // 128 bits
    for (const w of k) expect(w >>> 0).toBe(w);
  });

  it('a file that cannot be created is reported and the run goes on with a key of its own', () => {
    const blocker = join(tmp(), 'file');
    writeFileSync(blocker, 'x');
    const warnings: string[] = [];
    expect(isnKey({ secretFile: join(blocker, 'isn-secret') }, (m) => warnings.push(m))).toHaveLength(4);
    expect(warnings[0]).toMatch(/cannot create it/);
  });

  it('config: secret or secretFile, not both; a short secret is refused with its path', () => {
    expect(parseConfig({}).isn).toEqual({ secretFile: '/var/lib/tunvs/isn-secret' });
    expect(() => parseConfig({ isn: { secret: 'short' } })).toThrow(/isn\.secret: too short/);
    expect(() => parseConfig({ isn: { secret: 'x'.repeat(16), secretFile: '/x' } })).toThrow(/not both/);
    expect(() => parseConfig({ isn: { secretFile: 'relative' } })).toThrow(/isn\.secretFile/);
  });
});
