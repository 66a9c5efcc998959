/**
 * RST generation for sessions that time out while ESTABLISHED (option rstOnExpire).
 * Without it both ends keep a dead connection until their own keepalive notices; with it
 * each end learns at once. Each RST carries the sequence number its receiver expects next:
 * the last ack that receiver sent (kept per session in CLI_ACK and RS_ACK).
 *
 *   to the client:       VIP:vport → client:cport,  seq = CLI_ACK (client's ack, RS space)
 *   to the real server:  LIP:lport → RIP:rport,     seq = RS_ACK  (RS's ack, LB space)
 */

import { addrWord } from '../conn/layout.js';
import { csumFromSum, sumWords } from '../packet/checksum.js';
import { AF_INET, IPPROTO_TCP, ORIGINATED_TTL, TCP_RST } from '../packet/headers.js';

/**
 * Write an RST into buf at `off`. Addresses are read from `rec`: word 0 at `src0`/`dst0`,
 * words 1–3 from the high blocks at `srcHi`/`dstHi` (layout.ts: addrWord).
 * Returns the packet length.
 */
export function writeRst(
  buf: Uint8Array,
  dv: DataView,
  off: number,
  af: number,
  rec: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  sport: number,
  dport: number,
  seq: number,
): number {
  const v4 = af === AF_INET;
  const l3len = v4 ? 20 : 40;
  const len = l3len + 20;
  buf.fill(0, off, off + len);
  if (v4) {
    dv.setUint8(off, 0x45);
    dv.setUint16(off + 2, len);
    dv.setUint16(off + 6, 0x4000); // DF
    dv.setUint8(off + 8, ORIGINATED_TTL);
    dv.setUint8(off + 9, IPPROTO_TCP);
    dv.setInt32(off + 12, rec[src0]!);
    dv.setInt32(off + 16, rec[dst0]!);
    dv.setUint16(off + 10, csumFromSum(sumWords(buf, off, 20)));
  } else {
    dv.setUint32(off, 0x60000000);
    dv.setUint16(off + 4, 20);
    dv.setUint8(off + 6, IPPROTO_TCP);
    dv.setUint8(off + 7, ORIGINATED_TTL);
    for (let k = 0; k < 4; k++) {
      dv.setInt32(off + 8 + 4 * k, rec[addrWord(src0, srcHi, k)]!);
      dv.setInt32(off + 24 + 4 * k, rec[addrWord(dst0, dstHi, k)]!);
    }
  }
  const t = off + l3len;
  dv.setUint16(t, sport);
  dv.setUint16(t + 2, dport);
  dv.setInt32(t + 4, seq);
  dv.setUint8(t + 12, 5 << 4);
  dv.setUint8(t + 13, TCP_RST);
  // Pseudo-header: both addresses, protocol, TCP length.
  const pseudo = sumWords(buf, off + (v4 ? 12 : 8), v4 ? 8 : 32) + IPPROTO_TCP + 20;
  dv.setUint16(t + 16, csumFromSum(pseudo + sumWords(buf, t, 20)));
  return len;
}
