/**
 * Walking TCP options. Every loop is bounded by the 40-byte option area, and a malformed
 * list (length < 2, or running past the header) is reported, never followed.
 */

import { TCPOPT_EOL, TCPOPT_NOP } from './headers.js';

/**
 * Record the offset of each option in buf[start, end) into `out` (EOL and what follows it
 * are left out). Returns the number of options, or −1 when the list is malformed.
 */
export function scanOptions(buf: Uint8Array, start: number, end: number, out: Int32Array): number {
  let n = 0;
  let o = start;
  while (o < end && n < out.length) {
    const kind = buf[o]!;
    if (kind === TCPOPT_EOL) break;
    out[n++] = o;
    if (kind === TCPOPT_NOP) {
      o++;
      continue;
    }
    if (o + 1 >= end) return -1;
    const len = buf[o + 1]!;
    if (len < 2 || o + len > end) return -1;
    o += len;
  }
  return n;
}
