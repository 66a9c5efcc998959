/**
 * A reassembled datagram (dataplane/reassembly.ts), once its mode has rewritten it, leaves
 * through the emit ring: whole when it fits the MTU, else cut into fragments as a router
 * would, each with the same new identification (the source may have changed: FULLNAT's
 * local address carries many clients' datagrams, whose own IDs could meet at the server;
 * NatContext.nextIpId keeps the workers' apart).
 *
 *   emitDatagram   [frame, end) of `buf`: the IP packet at `ip` (DR: an Ethernet header in
 *                  front, which every fragment gets; its slots are LINK)
 *     IPv4         the header on each fragment, MF and the offset set; after the first, an
 *                  option not flagged "copied" is overwritten with NOPs (RFC 791; Linux's
 *                  ip_options_fragment does the same, keeping the header's length)
 *     IPv6         a fragment header after the unfragmentable part (the fixed header and a
 *                  Hop-by-Hop header); Destination Options headers are cut with the payload
 */

import { C_FRAGMENTS_SENT, C_TX_BYTES, C_TX_PACKETS } from '../dataplane/counters.js';
import { csumFromSum, sumWords } from '../packet/checksum.js';
import {
  IPPROTO_FRAGMENT,
  IPV4_CSUM,
  IPV4_FRAG,
  IPV4_FRAG_MF,
  IPV4_HEADER_MIN,
  IPV4_ID,
  IPV4_TOTAL_LEN,
  IPV6_FRAG_HEADER_LEN,
  IPV6_FRAG_MORE,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
  IPV6_PAYLOAD_LEN,
  IPOPT_COPIED,
  IPOPT_END,
  IPOPT_NOP,
} from '../packet/headers.js';
import { IPPROTO_HOPOPTS, optionsEnd } from '../packet/ipv6_ext.js';
import type { NatContext } from './context.js';
import { DROP_FRAGMENT_NO_ROOM, VERDICT_LINK } from './verdict.js';

/** Write the packet [frame, end) of `buf`, its IP header at `ip`, into the emit ring: 0, or
 * −DROP_FRAGMENT_NO_ROOM when its fragments do not fit there (nothing written then). */
export function emitDatagram(
  c: NatContext,
  buf: Uint8Array,
  frame: number,
  ip: number,
  end: number,
  link: boolean,
): number {
  const e = c.emit;
  const linkLen = ip - frame;
  // What one written packet may hold past its link header: the MTU, and the emit slot.
  const room = Math.min(c.opts.mtu, e.slotSize - e.headroom - linkLen);
  const v6 = buf[ip]! >>> 4 === 6;
  // IPv6: the unfragmentable part is the fixed header and a Hop-by-Hop header (RFC 8200 §4.5;
  // the Routing header that would join them the engine does not look past); `namer` is where
  // the byte that names what follows it is.
  const hopByHop = v6 && buf[ip + IPV6_NEXT] === IPPROTO_HOPOPTS;
  const header = v6 ? (hopByHop ? optionsEnd(buf, ip + IPV6_HEADER_LEN) - ip : IPV6_HEADER_LEN) : (buf[ip]! & 15) << 2;
  const namer = hopByHop ? IPV6_HEADER_LEN : IPV6_NEXT;
  const payload = end - ip - header;
  const whole = end - ip <= room;
  // Each fragment's payload but the last's is a multiple of 8 bytes.
  const piece = whole ? payload : (room - header - (v6 ? IPV6_FRAG_HEADER_LEN : 0)) & ~7;
  const n = whole ? 1 : Math.ceil(payload / piece);
  if (e.slots - c.emitCount < n) return -DROP_FRAGMENT_NO_ROOM;
  const b = e.bytes;
  const dv = e.view;
  const id = whole ? 0 : c.nextIpId(v6);
  let bytes = 0;
  for (let k = 0; k < n; k++) {
    const at = c.emitSlot() + e.headroom;
    b.set(buf.subarray(frame, ip + header), at);
    const p = at + linkLen;
    const offset = k * piece;
    const len = Math.min(piece, payload - offset);
    const more = k < n - 1;
    let out: number;
    if (whole) {
      out = header;
    } else if (v6) {
      out = header + IPV6_FRAG_HEADER_LEN;
      dv.setUint16(p + IPV6_PAYLOAD_LEN, out - IPV6_HEADER_LEN + len);
      b[p + namer] = IPPROTO_FRAGMENT;
      dv.setUint32(p + header, buf[ip + namer]! << 24); // next header, reserved
      dv.setUint16(p + header + 2, offset | (more ? IPV6_FRAG_MORE : 0));
      dv.setUint32(p + header + 4, id);
    } else {
      out = header;
      dv.setUint16(p + IPV4_TOTAL_LEN, header + len);
      dv.setUint16(p + IPV4_ID, id);
      dv.setUint16(p + IPV4_FRAG, (offset >>> 3) | (more ? IPV4_FRAG_MF : 0));
      if (k > 0 && header > IPV4_HEADER_MIN) uncopiedOptions(b, p + IPV4_HEADER_MIN, p + header);
      dv.setUint16(p + IPV4_CSUM, 0);
      dv.setUint16(p + IPV4_CSUM, csumFromSum(sumWords(b, p, header)));
    }
    b.set(buf.subarray(ip + header + offset, ip + header + offset + len), p + out);
    c.emitted(linkLen + out + len);
    if (link) e.verdicts[c.emitCount - 1] = VERDICT_LINK;
    bytes += linkLen + out + len;
  }
  const ctr = c.counters;
  if (!whole) ctr[C_FRAGMENTS_SENT] = ctr[C_FRAGMENTS_SENT]! + n;
  ctr[C_TX_PACKETS] = ctr[C_TX_PACKETS]! + n;
  ctr[C_TX_BYTES] = ctr[C_TX_BYTES]! + bytes;
  return 0;
}

/** The IPv4 options in b[from, to): those without the "copied" flag (type bit 0x80) become
 * NOPs, as a fragment after the first carries only the copied ones. */
function uncopiedOptions(b: Uint8Array, from: number, to: number): void {
  for (let o = from; o < to;) {
    const type = b[o]!;
    if (type === IPOPT_END) return;
    if (type === IPOPT_NOP) {
      o++;
      continue;
    }
    const len = o + 1 < to ? b[o + 1]! : 0;
    if (len < 2 || o + len > to) return; // malformed: the rest stays as it came
    if ((type & IPOPT_COPIED) === 0) b.fill(IPOPT_NOP, o, o + len);
    o += len;
  }
}
