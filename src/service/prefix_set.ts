/**
 * A set of prefixes of one family, for client ACLs: each prefix is an address range, the
 * ranges are sorted and merged once when the config is applied, and a lookup is a binary
 * search — O(log n) per new session instead of one prefix compare per entry, so a deny
 * list of thousands of addresses costs a SYN flood little more than a list of three.
 *
 * Addresses are 4 words, most significant first (IPv4 uses word 0, words 1–3 are 0),
 * compared unsigned.
 */

import { AF_INET } from '../packet/headers.js';
import type { ParsedCidr } from './addr.js';

export class PrefixSet {
  /** Range k spans lo[4k..4k+3] to hi[4k..4k+3], inclusive; ranges sorted and disjoint. */
  private readonly lo: Uint32Array;
  private readonly hi: Uint32Array;
  readonly size: number;

  constructor(prefixes: readonly ParsedCidr[]) {
    // By start, the wider of two with one start first (it holds the other).
    const ranges = prefixes
      .map((p) => rangeOf(p))
      .sort((a, b) => compare(a.lo, 0, b.lo, 0) || compare(b.hi, 0, a.hi, 0));
    const merged: { lo: Uint32Array; hi: Uint32Array }[] = [];
    for (const r of ranges) {
      const last = merged[merged.length - 1];
      // Prefixes nest or are apart: one that starts inside the last range lies within it.
      if (last !== undefined && compare(r.lo, 0, last.hi, 0) <= 0) continue;
      merged.push(r);
    }
    this.size = merged.length;
    this.lo = new Uint32Array(4 * merged.length);
    this.hi = new Uint32Array(4 * merged.length);
    merged.forEach((r, k) => {
      this.lo.set(r.lo, 4 * k);
      this.hi.set(r.hi, 4 * k);
    });
  }

  /** Is the address (a0..a3, int32 words) in one of the prefixes? */
  has(a0: number, a1: number, a2: number, a3: number): boolean {
    // The last range starting at or below the address is the only one that can hold it.
    let lo = 0;
    let hi = this.size - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (compareAddr(this.lo, 4 * mid, a0, a1, a2, a3) <= 0) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found >= 0 && compareAddr(this.hi, 4 * found, a0, a1, a2, a3) >= 0;
  }
}

function rangeOf(p: ParsedCidr): { lo: Uint32Array; hi: Uint32Array } {
  const lo = new Uint32Array(4);
  const hi = new Uint32Array(4);
  const bits = p.af === AF_INET ? 32 : 128; // IPv4: only word 0 is the address
  for (let w = 0; w < 4; w++) {
    const inPrefix = Math.min(Math.max(p.prefix - 32 * w, 0), 32); // prefix bits in this word
    const mask = inPrefix === 0 ? 0 : (-1 << (32 - inPrefix)) >>> 0;
    lo[w] = (p.words[w]! & mask) >>> 0;
    hi[w] = 32 * w < bits ? (lo[w]! | ~mask) >>> 0 : 0;
  }
  return { lo, hi };
}

/** Unsigned compare of the 4 words at a[i] and b[j]. */
function compare(a: Uint32Array, i: number, b: Uint32Array, j: number): number {
  for (let w = 0; w < 4; w++) {
    if (a[i + w] !== b[j + w]) return a[i + w]! < b[j + w]! ? -1 : 1;
  }
  return 0;
}

/** Unsigned compare of the 4 words at r[i] with the address (a0..a3, int32 words). */
function compareAddr(r: Uint32Array, i: number, a0: number, a1: number, a2: number, a3: number): number {
  if (r[i] !== a0 >>> 0) return r[i]! < a0 >>> 0 ? -1 : 1;
  if (r[i + 1] !== a1 >>> 0) return r[i + 1]! < a1 >>> 0 ? -1 : 1;
  if (r[i + 2] !== a2 >>> 0) return r[i + 2]! < a2 >>> 0 ? -1 : 1;
  if (r[i + 3] !== a3 >>> 0) return r[i + 3]! < a3 >>> 0 ? -1 : 1;
  return 0;
}
