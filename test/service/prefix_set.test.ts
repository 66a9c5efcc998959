import { describe, expect, it } from 'vitest';
import { AF_INET, AF_INET6 } from '../../src/packet/headers.js';
import type { ParsedCidr } from '../../src/service/addr.js';
import { parseCidr } from '../../src/service/addr.js';
import { PrefixSet } from '../../src/service/prefix_set.js';

/** Deterministic xorshift, so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** The plain definition: the address's first `prefix` bits equal the prefix's. */
function inPrefix(c: ParsedCidr, a: Int32Array): boolean {
  for (let bit = 0; bit < c.prefix; bit++) {
    const w = bit >> 5;
    const shift = 31 - (bit & 31);
    if (((a[w]! >>> shift) & 1) !== ((c.words[w]! >>> shift) & 1)) return false;
  }
  return true;
}

/** The prefix's last address: its host bits all ones (within the family's `words`). */
function last(c: ParsedCidr, words: number): Int32Array {
  const a = c.words.slice();
  for (let bit = c.prefix; bit < 32 * words; bit++) a[bit >> 5] = a[bit >> 5]! | (1 << (31 - (bit & 31)));
  return a;
}

/** The next address (wrapping past the family's last one). */
function plusOne(a: Int32Array, words: number): Int32Array {
  const b = a.slice();
  for (let w = words - 1; w >= 0; w--) {
    b[w] = (b[w]! + 1) | 0;
    if (b[w] !== 0) break;
  }
  return b;
}

describe('PrefixSet (client ACLs)', () => {
  it.each([
    ['IPv4', AF_INET, 32, 1],
    ['IPv6', AF_INET6, 128, 4],
  ] as const)('%s: agrees with a prefix-by-prefix match on random nested and apart prefixes', (_n, af, max, words) => {
    const next = rng(af === AF_INET ? 7 : 11);
    // Few distinct top bits so prefixes nest and touch often; some /0 and host prefixes.
    const addr = (): Int32Array => {
      const a = new Int32Array(4);
      for (let w = 0; w < words; w++) a[w] = w === 0 ? (next() & 0xc0f0_00ff) | 0 : next() & 0x0000_0f03;
      return a;
    };
    for (let round = 0; round < 40; round++) {
      const prefixes: ParsedCidr[] = [];
      const n = 1 + (next() % 60);
      for (let i = 0; i < n; i++) {
        const a = addr();
        const r = next() % 10;
        const prefix = r === 0 ? 0 : r === 1 ? max : next() % (max + 1);
        // Zero the host bits, as parseCidr insists.
        for (let bit = prefix; bit < 32 * words; bit++) a[bit >> 5] = (a[bit >> 5]! & ~(1 << (31 - (bit & 31)))) | 0;
        prefixes.push({ af, words: a, prefix });
      }
      const set = new PrefixSet(prefixes);
      for (let k = 0; k < 300; k++) {
        // Probe random addresses and both ends of every prefix (and one past them).
        const c = prefixes[k % n]!;
        const probe =
          k < n ? c.words.slice() : k < 2 * n ? last(c, words) : k < 3 * n ? plusOne(last(c, words), words) : addr();
        const want = prefixes.some((p) => inPrefix(p, probe));
        expect(set.has(probe[0]!, probe[1]!, probe[2]!, probe[3]!), `round ${round} probe ${probe.join(',')}`).toBe(
          want,
        );
      }
    }
  });

  it('edges: /0 holds every address of its family; a host prefix only itself; empty holds none', () => {
    const p = (t: string): ParsedCidr => parseCidr(t)!;
    const all4 = new PrefixSet([p('0.0.0.0/0')]);
    expect(all4.has(-1, 0, 0, 0)).toBe(true);
    expect(all4.has(0, 0, 0, 0)).toBe(true);
    const host = new PrefixSet([p('198.18.100.7'), p('198.18.0.0/15'), p('10.0.0.0/8')]);
    expect(host.size).toBe(2); // the host lies in 198.18.0.0/15
    expect(host.has(0xc6126407 | 0, 0, 0, 0)).toBe(true);
    expect(host.has(0xc6140000 | 0, 0, 0, 0)).toBe(false); // 198.20.0.0: one past the /15
    expect(host.has(0x0affffff, 0, 0, 0)).toBe(true); // 10.255.255.255: the /8's last
    expect(host.has(0x0b000000, 0, 0, 0)).toBe(false);
    const all6 = new PrefixSet([p('::/0')]);
    expect(all6.has(-1, -1, -1, -1)).toBe(true);
    const v6 = new PrefixSet([p('fd00:18:64::7/128')]);
    expect(v6.has(0xfd000018 | 0, 0x00640000, 0, 7)).toBe(true);
    expect(v6.has(0xfd000018 | 0, 0x00640000, 0, 8)).toBe(false);
    expect(new PrefixSet([]).has(0, 0, 0, 0)).toBe(false);
  });
});
