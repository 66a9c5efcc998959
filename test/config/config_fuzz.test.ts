/**
 * `tunvs check` under mutated configs: a field deleted, set to a value of another type or
 * past its range, an unknown field added, an entry repeated. Each config is either taken
 * (with its report) or refused with a ConfigError that names the field — never a TypeError,
 * a RangeError or a report that throws. The seeds are the lab's LB configs (the pair and the
 * cluster, every mode) and one service with every option. Seeded (test/helpers/rng.ts):
 * TUNVS_FUZZ_ROUNDS and TUNVS_FUZZ_SEED run it longer or elsewhere by hand.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { checkConfig } from '../../src/config/check.js';
import { ConfigError } from '../../src/config/errors.js';
import { labConfig } from '../../src/lab/topology.js';
import { Rng } from '../helpers/rng.js';

const ROUNDS = Number(process.env.TUNVS_FUZZ_ROUNDS ?? 1000);
const SEED = Number(process.env.TUNVS_FUZZ_SEED ?? 0x636f_6e66);

/** One service with every option the config has. */
const EVERYTHING = {
  services: [
    {
      name: 'shop',
      protocol: 'tcp',
      vip: '198.18.0.100',
      port: 443,
      mode: 'fullnat',
      scheduler: 'mh',
      maglevTableSize: 251,
      hashPort: true,
      hashFallback: true,
      localAddresses: ['198.18.2.1', '198.18.2.2'],
      toa: { enabled: true, kind: 254, kindV6: 253, inSyn: true },
      synProxy: 'auto',
      translateTimestamps: true,
      idleTimeout: 600,
      maxNewPerSec: 1000,
      acl: { allow: ['198.18.100.0/24'], deny: ['198.18.100.7/32'] },
      persistence: { timeoutSec: 600, netmask: 24, prefix6: 64, group: 'shop' },
      healthCheck: { type: 'http', path: '/health', interval: 2, timeout: 1, rise: 2, fall: 3, expectStatus: 200 },
      sorryServer: { address: '198.18.20.99', port: 8443 },
      quorum: 2,
      hysteresis: 1,
      realServers: [
        { address: '198.18.20.21', port: 8443, weight: 2, maxConns: 100, minConns: 50 },
        { address: '198.18.20.22', port: 8443, weight: 1 },
      ],
    },
    {
      name: 'dns',
      protocol: 'udp',
      vip: 'fd18:18::100',
      port: 53,
      mode: 'dr',
      scheduler: 'sh',
      onePacket: true,
      healthCheck: { type: 'exec', command: ['/bin/true', '{address}', '{port}'], interval: 5, timeout: 2 },
      realServers: [{ address: 'fd18:18:20::21', port: 53, weight: 1 }],
    },
  ],
  timeouts: { established: 900, finWait: 120, udp: 300 },
};

const SEEDS: [string, unknown][] = [
  [
    'the pair',
    parse(
      labConfig('/run/tunvs/lab.sock', {
        workers: 2,
        modes: true,
        ha: { mode: 'pair', node: 'lb-a', role: 'master', cluster: 'lab', fifo: '/run/tunvs/notify' },
      }),
    ),
  ],
  [
    'the cluster',
    parse(
      labConfig('/run/tunvs/lab.sock', {
        workers: 2,
        modes: true,
        ha: { mode: 'cluster', node: 'lb-b', cluster: 'lab' },
      }),
    ),
  ],
  ['every option', EVERYTHING],
];

/** What a mutation may put in place of a value. */
const VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  65535,
  65536,
  2 ** 31,
  2 ** 53,
  '',
  'x',
  'tcp',
  'udp',
  'fullnat',
  'nat',
  'dr',
  'tunnel',
  'rr',
  'mh',
  'on',
  'auto',
  '198.18.0.100',
  '198.18.0.100/24',
  'fd18:18::100',
  'fd18::/64',
  '/bin/true',
  'nobody',
  'no-such-user',
  [],
  ['x'],
  [1, 2],
  {},
  { x: 1 },
];

/** A path to a random node of `doc` (maybe the root), walking into objects and arrays. */
function randomPath(doc: unknown, r: Rng): (string | number)[] {
  const path: (string | number)[] = [];
  let at = doc;
  while (at !== null && typeof at === 'object' && r.below(4) !== 0) {
    const keys: (string | number)[] = Array.isArray(at) ? at.map((_, i) => i) : Object.keys(at);
    if (keys.length === 0) break;
    const k = r.pick(keys);
    path.push(k);
    at = (at as Record<string | number, unknown>)[k];
  }
  return path;
}

/** `doc` (a copy) with 1–3 edits: a field or entry deleted, replaced, repeated, or a field
 * added that the config does not have. */
function mutate(seed: unknown, r: Rng): unknown {
  const doc = structuredClone(seed) as Record<string, unknown>;
  const edits = 1 + r.below(3);
  for (let e = 0; e < edits; e++) {
    const path = randomPath(doc, r);
    if (path.length === 0) continue;
    const key = path.pop()!;
    const parent = path.reduce<unknown>((o, k) => (o as Record<string | number, unknown>)[k], doc) as Record<
      string | number,
      unknown
    >;
    const kind = r.below(4);
    if (kind === 0) {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key];
    } else if (kind === 1) parent[key] = structuredClone(r.pick(VALUES));
    else if (kind === 2 && Array.isArray(parent)) parent.splice(key as number, 0, structuredClone(parent[key]));
    else if (!Array.isArray(parent)) parent[`${String(key)}Typo`] = structuredClone(r.pick(VALUES));
  }
  return doc;
}

const dir = mkdtempSync(join(tmpdir(), 'tunvs-config-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** `tunvs check` on `doc` written as YAML: its report, or its ConfigError's field and message. */
function check(doc: unknown): 'taken' | 'refused' {
  const file = join(dir, 'tunvs.yaml');
  writeFileSync(file, stringify(doc));
  try {
    expect(checkConfig(file)).toMatch(/: OK\n/);
    return 'taken';
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    expect(e.message.startsWith(`${e.path}: `)).toBe(true);
    return 'refused';
  }
}

describe('tunvs check under mutated configs (seeded)', () => {
  it.each(SEEDS)(`%s: ${ROUNDS} mutations are taken or refused naming the field`, (_what, seed) => {
    expect(check(seed)).toBe('taken');
    const r = new Rng(SEED);
    const outcome = { taken: 0, refused: 0 };
    for (let i = 0; i < ROUNDS; i++) {
      const doc = mutate(seed, r);
      try {
        outcome[check(doc)]++;
      } catch (e) {
        throw new Error(
          `seed ${SEED} round ${i}: ${(e as Error).stack ?? String(e)}\n--- config ---\n${stringify(doc)}`,
        );
      }
    }
    expect(outcome.taken).toBeGreaterThan(ROUNDS / 20);
    expect(outcome.refused).toBeGreaterThan(ROUNDS / 20);
  });
});
