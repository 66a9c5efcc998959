/**
 * TCP timestamp translation (RFC 7323). The real server sees the LB's timestamp clock for the
 * session's tuple (seq.ts tsClock), not the client's: a local address and port reused for
 * another client then never shows the server timestamps that go back in time, which its PAWS
 * check (and a TIME_WAIT socket's) would refuse. Per session, TS_DELTA = LB clock − client
 * TSval at the SYN:
 *
 *   client → RS   TSval += TS_DELTA            TSecr −= SRV_TS_DELTA  (SYN proxy only)
 *   RS → client   TSecr −= TS_DELTA            TSval += SRV_TS_DELTA  (SYN proxy only)
 *
 * TSecr means something only with ACK set (a SYN carries 0 there) and is left alone
 * otherwise. The two 32-bit fields sit at an even offset from the TCP header when the option
 * is aligned as every stack sends it (NOP NOP TS), and the checksum takes the two changes
 * as words; an option at an odd offset has the option area summed before and after.
 */

import { csumReplace32, csumReplaceSum, sumWords } from '../packet/checksum.js';
import { TCP_ACKF, TCP_HEADER_MIN } from '../packet/headers.js';
import type { NatContext } from './context.js';

/** TCP timestamp option length: kind, length, TSval, TSecr. */
export const TS_OPTION_LEN = 10;

/**
 * Add `valDelta` to the TSval and subtract `ecrDelta` from the TSecr (when the packet has
 * ACK) of the option at `o`. `acc` is the incremental TCP checksum being built (unused with
 * a partial checksum, which needs no update); returns it.
 */
export function shiftTimestamp(c: NatContext, o: number, valDelta: number, ecrDelta: number, acc: number): number {
  const ecr = (c.pFlags & TCP_ACKF) !== 0 ? ecrDelta : 0;
  if (((o - c.pL4) & 1) !== 0 && !c.pPartial) return shiftOddTimestamp(c, o, valDelta, ecr, acc);
  const dv = c.dv;
  if (valDelta !== 0) {
    const v = dv.getInt32(o + 2);
    const nv = (v + valDelta) | 0;
    dv.setInt32(o + 2, nv);
    acc = csumReplace32(acc, v, nv);
  }
  if (ecr !== 0) {
    const e = dv.getInt32(o + 6);
    const ne = (e - ecr) | 0;
    dv.setInt32(o + 6, ne);
    acc = csumReplace32(acc, e, ne);
  }
  return acc;
}

/** shiftTimestamp of an option at an odd offset (its fields straddle the checksum's words):
 * the option area summed before and after. */
function shiftOddTimestamp(c: NatContext, o: number, valDelta: number, ecr: number, acc: number): number {
  const dv = c.dv;
  const optStart = c.pL4 + TCP_HEADER_MIN;
  const optLen = c.pThl - TCP_HEADER_MIN;
  const oldSum = sumWords(c.buf, optStart, optLen);
  dv.setInt32(o + 2, (dv.getInt32(o + 2) + valDelta) | 0);
  dv.setInt32(o + 6, (dv.getInt32(o + 6) - ecr) | 0);
  return csumReplaceSum(acc, oldSum, sumWords(c.buf, optStart, optLen));
}
