/**
 * SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF"), the keyed hash
 * RFC 6528 asks of ISNs and Linux uses for its own (secure_tcp_seq). A 128-bit key; the
 * message is whole 32-bit words, each taken as 4 little-endian bytes, so a key block of
 * the session table hashes as it lies in memory on a little-endian host.
 *
 * JavaScript has no 64-bit integer arithmetic short of BigInt (an allocation per step), so
 * each 64-bit lane is a pair of uint32 locals (…l, …h). Used once per new session (its ISN),
 * never per packet.
 */

/**
 * SipHash-2-4 of the `n` words at `words[off]` under `key` (4 words: k0 lo, k0 hi, k1 lo,
 * k1 hi — the key's 16 bytes read as little-endian uint32). Returns the 64-bit result as
 * [lo, hi] uint32 in `out`.
 */
export function sipHash24(
  key: ArrayLike<number>,
  words: ArrayLike<number>,
  off: number,
  n: number,
  out: Uint32Array,
): Uint32Array {
  // v0..v3 = the key xor "somepseudorandomlygeneratedbytes" (four 64-bit constants).
  let v0l = (key[0]! ^ 0x70736575) >>> 0;
  let v0h = (key[1]! ^ 0x736f6d65) >>> 0;
  let v1l = (key[2]! ^ 0x6e646f6d) >>> 0;
  let v1h = (key[3]! ^ 0x646f7261) >>> 0;
  let v2l = (key[0]! ^ 0x6e657261) >>> 0;
  let v2h = (key[1]! ^ 0x6c796765) >>> 0;
  let v3l = (key[2]! ^ 0x79746573) >>> 0;
  let v3h = (key[3]! ^ 0x74656462) >>> 0;
  // Blocks of two words; the last one holds the word left over (or none) and the message
  // length in bytes in its top byte. Each block takes 2 rounds, then 4 close: one loop over
  // the rounds, so the round is written once.
  const blocks = (n >> 1) + 1;
  let ml = 0;
  let mh = 0;
  let t = 0;
  for (let r = 0; r < blocks * 2 + 4; r++) {
    if (r < blocks * 2 && (r & 1) === 0) {
      const i = off + r; // block r/2 starts at word r
      const last = r === blocks * 2 - 2;
      ml = last ? ((n & 1) === 1 ? words[off + n - 1]! >>> 0 : 0) : words[i]! >>> 0;
      mh = last ? (((n * 4) & 0xff) << 24) >>> 0 : words[i + 1]! >>> 0;
      v3l = (v3l ^ ml) >>> 0;
      v3h = (v3h ^ mh) >>> 0;
    }
    // SipRound: v0 += v1; v1 <<<= 13; v1 ^= v0; v0 <<<= 32
    t = (v0l + v1l) >>> 0;
    v0h = (v0h + v1h + (t < v0l ? 1 : 0)) >>> 0;
    v0l = t;
    t = v1l;
    v1l = ((v1l << 13) | (v1h >>> 19)) >>> 0;
    v1h = ((v1h << 13) | (t >>> 19)) >>> 0;
    v1l = (v1l ^ v0l) >>> 0;
    v1h = (v1h ^ v0h) >>> 0;
    t = v0l;
    v0l = v0h;
    v0h = t;
    // v2 += v3; v3 <<<= 16; v3 ^= v2
    t = (v2l + v3l) >>> 0;
    v2h = (v2h + v3h + (t < v2l ? 1 : 0)) >>> 0;
    v2l = t;
    t = v3l;
    v3l = ((v3l << 16) | (v3h >>> 16)) >>> 0;
    v3h = ((v3h << 16) | (t >>> 16)) >>> 0;
    v3l = (v3l ^ v2l) >>> 0;
    v3h = (v3h ^ v2h) >>> 0;
    // v0 += v3; v3 <<<= 21; v3 ^= v0
    t = (v0l + v3l) >>> 0;
    v0h = (v0h + v3h + (t < v0l ? 1 : 0)) >>> 0;
    v0l = t;
    t = v3l;
    v3l = ((v3l << 21) | (v3h >>> 11)) >>> 0;
    v3h = ((v3h << 21) | (t >>> 11)) >>> 0;
    v3l = (v3l ^ v0l) >>> 0;
    v3h = (v3h ^ v0h) >>> 0;
    // v2 += v1; v1 <<<= 17; v1 ^= v2; v2 <<<= 32
    t = (v2l + v1l) >>> 0;
    v2h = (v2h + v1h + (t < v2l ? 1 : 0)) >>> 0;
    v2l = t;
    t = v1l;
    v1l = ((v1l << 17) | (v1h >>> 15)) >>> 0;
    v1h = ((v1h << 17) | (t >>> 15)) >>> 0;
    v1l = (v1l ^ v2l) >>> 0;
    v1h = (v1h ^ v2h) >>> 0;
    t = v2l;
    v2l = v2h;
    v2h = t;
    if (r < blocks * 2 && (r & 1) === 1) {
      v0l = (v0l ^ ml) >>> 0;
      v0h = (v0h ^ mh) >>> 0;
      if (r === blocks * 2 - 1) v2l = (v2l ^ 0xff) >>> 0; // the message is in: close
    }
  }
  out[0] = v0l ^ v1l ^ v2l ^ v3l;
  out[1] = v0h ^ v1h ^ v2h ^ v3h;
  return out;
}
