/**
 * Hash of a session key: MurmurHash3's 32-bit mixing over the key words, keyed by a
 * per-shard random seed so that remote clients cannot aim their tuples at one chain.
 * The same function hashes a key built from a packet and a key block stored in a record
 * (for the backward-shift delete, which needs each entry's home slot).
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/**
 * Hash `meta` followed by `words` int32 words of `arr` starting at `off`.
 * IPv4 keys pass 3 block words, IPv6 keys 9.
 */
export function hashKeyWords(seed: number, meta: number, arr: Int32Array, off: number, words: number): number {
  let h = seed | 0;
  let k = Math.imul(meta, C1);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, C2);
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  for (let i = 0; i < words; i++) {
    k = Math.imul(arr[off + i]!, C1);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, C2);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= words + 1;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}

/** A 32-bit random seed from the platform CSPRNG. */
export function randomSeed(): number {
  const a = new Int32Array(1);
  crypto.getRandomValues(a);
  return a[0]!;
}
