/**
 * Hash of a session key: MurmurHash3's 32-bit mixing over the key words, keyed by a
 * per-shard random seed so that remote clients cannot aim their tuples at one chain.
 * The same function hashes a key built from a packet and a key block stored in a record
 * (for the backward-shift delete, which needs each entry's home slot).
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

function mix(h: number, word: number): number {
  let k = Math.imul(word, C1);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, C2);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number, words: number): number {
  h ^= words + 1;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/**
 * Hash of a session key split in two runs of `arr`: 3 words at `lo`, then `hiWords` (0 or
 * 6) at `hi`. The same as over those 3 + hiWords words laid end to end, so a key built from
 * a packet (contiguous) and a record's key blocks (split over two cache lines) hash alike.
 */
export function hashSplitKey(
  seed: number,
  meta: number,
  arr: Int32Array,
  lo: number,
  hi: number,
  hiWords: number,
): number {
  let h = seed | 0;
  h = mix(h, meta);
  h = mix(h, arr[lo]!);
  h = mix(h, arr[lo + 1]!);
  h = mix(h, arr[lo + 2]!);
  for (let i = 0; i < hiWords; i++) h = mix(h, arr[hi + i]!);
  return finish(h, 3 + hiWords);
}

/** A 32-bit random seed from the platform CSPRNG. */
export function randomSeed(): number {
  const a = new Int32Array(1);
  crypto.getRandomValues(a);
  return a[0]!;
}
