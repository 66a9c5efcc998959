/**
 * IPv6 extension headers (RFC 8200 §4) in front of the upper-layer header. The engine looks
 * past the two kinds that only carry options, Hop-by-Hop and Destination Options, and
 * forwards them as they came (IPVS does the same: ipv6_find_hdr); it finds the upper-layer
 * header behind them with `lastOptionsHeader` (or the fragment header, which the reassembly
 * takes from there: dataplane/reassembly.ts). Every other extension header stops the walk: a
 * Routing header names where the packet goes next, AH authenticates the addresses the LB
 * rewrites.
 *
 *  an options header (8 bytes and more, in units of 8)
 *   0        8        16                        31
 *  +--------+--------+--------------------------+
 *  |  next  | length |  options (TLVs, padding)  |    length: units of 8 bytes beyond the first 8
 *  +--------+--------+                           |
 *  |                    ...                      |
 *  +---------------------------------------------+
 */

import { IPV6_OPTION_HEADERS_MAX } from '../constants.js';
import { IPV6_HEADER_LEN } from './headers.js';

export const IPPROTO_HOPOPTS = 0;
export const IPPROTO_ROUTING = 43;
export const IPPROTO_DSTOPTS = 60;

/** The walk found an extension header it does not look past (or too many options headers). */
export const EXT_STOP = -1;
/** An options header runs past the packet's end. */
export const EXT_TRUNCATED = -2;
/** A Hop-by-Hop header anywhere but right after the fixed header (RFC 8200 §4.3). */
export const EXT_MISPLACED = -3;

/** Whether `proto` names an IPv6 extension header (IANA's list, RFC 7045 §4): the headers a
 * packet may carry in front of its upper layer, as against an upper layer tunvs lacks. */
export function isExtensionHeader(proto: number): boolean {
  return (
    proto === IPPROTO_HOPOPTS ||
    proto === IPPROTO_ROUTING ||
    proto === 44 || // Fragment
    proto === 50 || // Encapsulating Security Payload
    proto === 51 || // Authentication Header
    proto === IPPROTO_DSTOPTS ||
    proto === 135 || // Mobility
    proto === 139 || // HIP
    proto === 140 || // Shim6
    proto === 253 || // experiments (RFC 3692)
    proto === 254
  );
}

/**
 * The offset of the last Hop-by-Hop or Destination Options header of the IPv6 packet at
 * `l3` that ends by `end` (its first byte names the upper layer; the upper layer starts at
 * optionsEnd() of it), or an EXT_* reason. The packet's own next header must be one of the
 * two (the caller checks). Reads nothing at or past `end`.
 */
export function lastOptionsHeader(b: Uint8Array, l3: number, end: number): number {
  let at = l3 + IPV6_HEADER_LEN;
  for (let n = 1; ; n++) {
    if (at + 8 > end) return EXT_TRUNCATED;
    const next = optionsEnd(b, at);
    if (next > end) return EXT_TRUNCATED;
    const following = b[at]!;
    if (following === IPPROTO_HOPOPTS) return EXT_MISPLACED;
    if (following !== IPPROTO_DSTOPTS) return at;
    if (n === IPV6_OPTION_HEADERS_MAX) return EXT_STOP;
    at = next;
  }
}

/** The end of the options header at `at` (where the header it names begins). */
export function optionsEnd(b: Uint8Array, at: number): number {
  return at + ((b[at + 1]! + 1) << 3);
}
