/**
 * Every YAML example in the docs and the README is a config tunvs takes: a whole config
 * as it stands, a top-level fragment (io, xdp, ...) beside one service, a service's fields
 * in one service. An operator copies these; a field the parser refuses is a bug in one of
 * the two. Blocks with a "..." placeholder are left out.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig, parseService } from '../../src/config/config.js';

const root = join(import.meta.dirname, '..', '..');
const files = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f)),
];

const blocks = files.flatMap((file) =>
  [...readFileSync(join(root, file), 'utf8').matchAll(/```yaml\n([\s\S]*?)```/g)].map((m, i) => ({
    name: `${file} #${i + 1}`,
    text: m[1]!,
  })),
);

const SERVICE = {
  name: 'example',
  vip: '198.18.0.100',
  port: 80,
  localAddresses: ['198.18.2.1'],
  realServers: [{ address: '198.18.20.21', port: 8080 }],
};

/** Undefined when `text` parses as one of the three; the errors otherwise. */
function check(text: string): string | undefined {
  const doc = parse(text) as unknown;
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return `not a mapping: ${text}`;
  if ('services' in doc) return tryParse(() => parseConfig(doc));
  const asConfig = tryParse(() => parseConfig({ ...doc, services: [SERVICE] }));
  if (asConfig === undefined) return undefined;
  const asService = tryParse(() => parseService({ ...SERVICE, ...doc }, 'services[0]'));
  return asService === undefined ? undefined : `as a config: ${asConfig}; as a service: ${asService}`;
}

function tryParse(f: () => unknown): string | undefined {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

describe('the docs’ YAML examples', () => {
  it('there are some (the pattern finds them)', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
    expect(blocks.some((b) => b.name.startsWith('docs/config.md'))).toBe(true);
  });

  it.each(blocks.filter((b) => !b.text.includes('...')))('$name parses', ({ text }) => {
    expect(check(text)).toBeUndefined();
  });
});
