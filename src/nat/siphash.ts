/**
 * SipHash-2-4 (Aumasson & Bernstein, "SipHash: a fast short-input PRF"), the keyed hash
 * RFC 6528 asks of ISNs and Linux uses for its own (secure_tcp_seq) and for its SYN cookies.
 * A 128-bit key; the message is whole 32-bit words, each taken as 4 little-endian bytes, so a
 * key block of the session table hashes as it lies in memory on a little-endian host.
 *
 * The rounds run in WebAssembly (siphash.wat), which has the 64-bit integers JavaScript lacks:
 * one hash per new session (its ISN) and per SYN the proxy answers (its cookie), where the
 * same rounds on pairs of uint32 in JavaScript took ~30% of a cookie SYN-ACK.
 */

import { SIPHASH_WASM } from './siphash_wasm.js';

/** Words a message may have (the module's memory layout: siphash.wat). */
export const SIPHASH_WORDS_MAX = 16;

const instance = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(SIPHASH_WASM, 'base64')));
const exports = instance.exports as { mem: WebAssembly.Memory; sip: (n: number) => void };
const mem = new Int32Array(exports.mem.buffer, 0, 4 + SIPHASH_WORDS_MAX);
const result = new Uint32Array(exports.mem.buffer, 80, 2);

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
  if (n > SIPHASH_WORDS_MAX) throw new RangeError(`sipHash24: ${n} words, at most ${SIPHASH_WORDS_MAX}`);
  mem[0] = key[0]!;
  mem[1] = key[1]!;
  mem[2] = key[2]!;
  mem[3] = key[3]!;
  for (let i = 0; i < n; i++) mem[4 + i] = words[off + i]!;
  exports.sip(n);
  out[0] = result[0]!;
  out[1] = result[1]!;
  return out;
}
