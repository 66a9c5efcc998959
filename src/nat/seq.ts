/**
 * The LB's own initial sequence numbers.
 *
 * FULLNAT reuses a local address and port toward the same real server for successive
 * clients, so the real server sees the same 4-tuple again and again. If it saw each
 * client's own ISN, a new connection could start "behind" the previous one and be taken
 * for an old duplicate (TIME_WAIT, PAWS). tunvs therefore picks the ISN the real server
 * sees, as RFC 6528 does: a keyed hash of the (LIP, lport, RIP, rport) tuple plus a clock
 * that advances 250 000 per second, and keeps `delta = isn − client_isn` per session.
 */

import { hashKeyWords, randomSeed } from '../conn/hash.js';

export class IsnGenerator {
  private readonly secret: number;

  constructor(secret = randomSeed()) {
    this.secret = secret;
  }

  /** ISN for the OUT key block in `key` (meta, rport<<16|lport, RIP/LIP words) at `nowMs`. */
  generate(key: Int32Array, blockWords: number, nowMs: number): number {
    const h = hashKeyWords(this.secret, key[0]!, key, 1, blockWords);
    return (h + Math.floor(nowMs * 250)) | 0;
  }
}
