/**
 * SYN cookies: the ISN of the SYN proxy's SYN-ACK (synproxy.ts), from which the client's ACK
 * alone proves that the client saw that SYN-ACK, recently, and says which MSS it offered.
 * Nothing is stored per SYN.
 *
 *    31  30 29   27 26                                   0
 *   +------+-------+--------------------------------------+
 *   | time | MSS   | MAC: SipHash-2-4(key; client → VIP    |
 *   | mod 4| class |   tuple, client ISN, time, MSS class) |
 *   +------+-------+--------------------------------------+
 *
 * `time` counts SYNCOOKIE_PERIOD_MS periods; a cookie is good in the period it was made and
 * the next SYNCOOKIE_PERIODS_VALID − 1 (the MAC covers the full count, the two bits only say
 * which recent period to try). The MAC binds the client's ISN too, so an ACK must carry the
 * sequence number of the SYN it answers: forging one takes 2^27 tries on average per tuple.
 * Linux and DPVS add the client ISN and a hash to a counter instead (Bernstein's layout); the
 * layout here is simpler to check and needs one hash per SYN, not two.
 *
 * When the client sent a timestamp, the options the cookie has no room for travel in the
 * low 6 bits of the SYN-ACK's TSval, as Linux does (the client echoes it in TSecr):
 * window scale (4 bits, 15 = none), SACK permitted, ECN.
 *
 * The key is derived from the ISN secret (control/isn_secret.ts), so every node of a pair or
 * cluster validates every other node's cookies.
 */

import { SYNCOOKIE_PERIOD_MS, SYNCOOKIE_PERIODS_VALID } from '../constants.js';
import { AF_INET } from '../packet/headers.js';
import { WS_NONE } from '../conn/layout.js';
import type { IsnKey } from './seq.js';
import { sipHash24 } from './siphash.js';

/** MSS classes (3 bits): the largest not above the client's MSS is what the server is told. */
const MSS_V4 = [536, 1220, 1300, 1360, 1400, 1440, 1452, 1460] as const;
const MSS_V6 = [1220, 1280, 1340, 1380, 1400, 1420, 1432, 1440] as const;

export function mssClass(af: number, mss: number): number {
  const t = af === AF_INET ? MSS_V4 : MSS_V6;
  let i = t.length - 1;
  while (i > 0 && t[i]! > mss) i--;
  return i;
}

export function mssOfClass(af: number, cls: number): number {
  return (af === AF_INET ? MSS_V4 : MSS_V6)[cls & 7]!;
}

/** Bits 0–5 of a cookie TSval. */
export const TS_OPT_BITS = 6;
const TS_OPT_MASK = (1 << TS_OPT_BITS) - 1;

export function tsOptionBits(ws: number, sack: boolean, ecn: boolean): number {
  return (ws & 15) | (sack ? 16 : 0) | (ecn ? 32 : 0);
}
export function tsOptWs(tsecr: number): number {
  const ws = tsecr & 15;
  return ws > 14 ? WS_NONE : ws;
}
export function tsOptSack(tsecr: number): boolean {
  return (tsecr & 16) !== 0;
}
export function tsOptEcn(tsecr: number): boolean {
  return (tsecr & 32) !== 0;
}

export class SynCookies {
  /** Hash input (mac()). */
  private readonly msg = new Int32Array(11);
  private readonly out = new Uint32Array(2);

  constructor(private readonly key: IsnKey) {}

  /** The cookie for a SYN whose IN lookup key (layout.ts) is `k` with `blockWords` words after
   * the meta word, from client ISN `isn`, offering MSS class `cls`, at `nowMs`. */
  make(k: Int32Array, blockWords: number, isn: number, cls: number, nowMs: number): number {
    const t = Math.floor(nowMs / SYNCOOKIE_PERIOD_MS);
    return ((t & 3) << 30) | (cls << 27) | this.mac(k, blockWords, isn, t, cls);
  }

  /** The MSS class of a valid `cookie`, or −1 (forged, or older than the periods allowed). */
  check(k: Int32Array, blockWords: number, isn: number, cookie: number, nowMs: number): number {
    const now = Math.floor(nowMs / SYNCOOKIE_PERIOD_MS);
    const age = (now - (cookie >>> 30)) & 3;
    if (age >= SYNCOOKIE_PERIODS_VALID) return -1;
    const cls = (cookie >>> 27) & 7;
    return (cookie & 0x7ffffff) === this.mac(k, blockWords, isn, now - age, cls) ? cls : -1;
  }

  /** The LB's TSval for a cookie SYN-ACK: its millisecond clock with the option bits low. */
  tsval(nowMs: number, bits: number): number {
    const v = ((Math.floor(nowMs) + this.key[0]) & ~TS_OPT_MASK) | bits;
    return v === 0 ? 1 << TS_OPT_BITS : v;
  }

  /** The MAC over the key's ports and address words (the family is in the length: 3 words for
   * IPv4, 9 for IPv6), the client ISN, and the period with the MSS class in one word: for
   * IPv4 five words, three SipHash blocks. */
  private mac(k: Int32Array, blockWords: number, isn: number, t: number, cls: number): number {
    const m = this.msg;
    for (let i = 0; i < blockWords; i++) m[i] = k[1 + i]!;
    m[blockWords] = isn;
    m[blockWords + 1] = (t << 3) | cls;
    return sipHash24(this.key, m, 0, blockWords + 2, this.out)[0]! & 0x7ffffff;
  }
}
