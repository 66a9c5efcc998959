/**
 * The LB's own initial sequence numbers.
 *
 * FULLNAT reuses a local address and port toward the same real server for successive
 * clients, so the real server sees the same 4-tuple again and again. If it saw each
 * client's own ISN, a new connection could start "behind" the previous one and be taken
 * for an old duplicate (TIME_WAIT, PAWS). tunvs therefore picks the ISN the real server
 * sees, as RFC 6528 does: a keyed hash of the (LIP, lport, RIP, rport) tuple plus a clock
 * that advances 250 000 per second, and keeps `delta = isn − client_isn` per session.
 *
 * The hash is SipHash-2-4 under a 128-bit key (siphash.ts), as Linux's own ISNs: someone
 * who sees ISNs on the real servers' network cannot work the key out from them and predict
 * the ISNs of other tuples (with a 32-bit key and a fast non-cryptographic hash, 2^32
 * guesses against a few observed ISNs would have found it).
 */

import { sipHash24 } from './siphash.js';

/** The ISN hash key: 128 bits as 4 uint32 words (control/isn_secret.ts derives it). */
export type IsnKey = readonly [number, number, number, number];

export function randomIsnKey(): IsnKey {
  const k = crypto.getRandomValues(new Uint32Array(4));
  return [k[0]!, k[1]!, k[2]!, k[3]!];
}

/** A key for another use, derived from `key` and a label (the SYN cookies' from the ISN
 * key): every node given the same secret derives the same. */
export function deriveKey(key: IsnKey, label: number): IsnKey {
  const out = new Uint32Array(2);
  const a = sipHash24(key, [label, 1], 0, 2, out);
  const lo = [a[0]!, a[1]!];
  const b = sipHash24(key, [label, 2], 0, 2, out);
  return [lo[0]!, lo[1]!, b[0]!, b[1]!];
}

/** Label of isnKeyId's hash ("kyid"). */
const KEY_ID_LABEL = 0x6b796964;

/** A name of `key` that nodes can compare without showing it (16 hex digits of a keyed hash
 * of a label): an HA node registers it, and names a peer whose key differs (ha/node.ts). */
export function isnKeyId(key: IsnKey): string {
  const h = sipHash24(key, [KEY_ID_LABEL, 0], 0, 2, new Uint32Array(2));
  return [h[1]!, h[0]!].map((w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
}

/**
 * The ISNs and the timestamp clock the real server sees. The clock follows the same idea as
 * the ISN (and as Linux's per-connection timestamp offsets): 1 kHz plus a keyed offset per
 * tuple, taken from the other half of the ISN's hash. So a tuple reused by another client
 * still shows the real server timestamps that only move ahead (PAWS, RFC 7323), whatever
 * clock the new client runs.
 */
export class IsnGenerator {
  private readonly out = new Uint32Array(2);

  constructor(private readonly key: IsnKey = randomIsnKey()) {}

  /** ISN for the OUT key block in `key` (meta, rport<<16|lport, RIP/LIP words) at `nowMs`. */
  generate(key: Int32Array, blockWords: number, nowMs: number): number {
    const h = sipHash24(this.key, key, 0, blockWords + 1, this.out)[0]!;
    return (h + Math.floor(nowMs * 250)) | 0;
  }

  /** The timestamp clock of the tuple of the last generate() call, at `nowMs`. */
  tsClock(nowMs: number): number {
    return (this.out[1]! + Math.floor(nowMs)) | 0;
  }
}
