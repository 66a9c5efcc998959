/**
 * RST generation for sessions that time out while ESTABLISHED (option rstOnExpire) and for
 * those of a real server its health check took down (resetOnDown).
 * Without it both ends keep a dead connection until their own keepalive notices; with it
 * each end learns at once. Each RST carries the sequence number its receiver expects next:
 * the last ack that receiver sent (kept per session in CLI_ACK and RS_ACK).
 *
 *   to the client:       VIP:vport → client:cport,  seq = CLI_ACK (the client's own ack)
 *   to the real server:  LIP:lport → RIP:rport,     seq = RS_ACK  (RS's ack, LB space)
 *
 * NAT sessions the same (their LIP:lport is the client's own); TUNNEL sessions get none.
 *
 *   answerReset           (from fullnat_in.ts / fullnat_out.ts) a packet of a session ended
 *                         with RSTs (R_RESET): an RST back to its sender at the sequence
 *                         number its ack names, the packet dropped
 */

import {
  R_CIP0,
  R_CIP1,
  R_CLI_ACK,
  R_IN_PORTS,
  R_LIP0,
  R_LIP1,
  R_META,
  R_OUT_PORTS,
  R_RIP0,
  R_RIP1,
  R_RS_ACK,
  R_VIP0,
  R_VIP1,
  recMode,
} from '../conn/layout.js';
import { C_RST_SENT } from '../dataplane/counters.js';
import { TCP_ACK, TCP_ACKF, TCP_RST } from '../packet/headers.js';
import type { NatContext } from './context.js';
import { writeSegment, type SegmentFields } from './segment.js';
import { DROP_SESSION_RESET } from './verdict.js';

const rst: SegmentFields = { sport: 0, dport: 0, seq: 0, ack: 0, flags: TCP_RST, window: 0 };
const noOptions = new Uint8Array(0);

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
  rst.sport = sport;
  rst.dport = dport;
  rst.seq = seq;
  return writeSegment(buf, dv, off, af, rec, src0, srcHi, dst0, dstHi, rst, noOptions, 0);
}

/** Queue an RST in the emit ring from the address at src0/srcHi to dst0/dstHi; `ports` is a
 * key-block ports word (peer port << 16 | our port), `seq` what the receiver expects next. */
export function emitRst(
  c: NatContext,
  af: number,
  rec: Int32Array,
  src0: number,
  srcHi: number,
  dst0: number,
  dstHi: number,
  ports: number,
  seq: number,
): void {
  const off = c.emitSlot();
  if (off < 0) return;
  const e = c.emit;
  c.emitted(
    writeRst(e.bytes, e.view, off + e.headroom, af, rec, src0, srcHi, dst0, dstHi, ports & 0xffff, ports >>> 16, seq),
  );
  c.counters[C_RST_SENT] = c.counters[C_RST_SENT]! + 1;
}

/** Queue an RST to session `base`'s client (from the VIP) or real server (from the local
 * address; NAT: the client's own) with `seq`, what that end expects next. */
function rstTo(c: NatContext, rec: Int32Array, base: number, toClient: boolean, seq: number): void {
  const af = (rec[base + R_META]! >>> 8) & 0xff;
  if (toClient)
    emitRst(c, af, rec, base + R_VIP0, base + R_VIP1, base + R_CIP0, base + R_CIP1, rec[base + R_IN_PORTS]!, seq);
  else emitRst(c, af, rec, base + R_LIP0, base + R_LIP1, base + R_RIP0, base + R_RIP1, rec[base + R_OUT_PORTS]!, seq);
}

/** RST to the client and to the real server of session `base`, each with the sequence
 * number it expects next. */
export function resetBoth(c: NatContext, rec: Int32Array, base: number): void {
  // A TUNNEL session never saw the server's sequence numbers (nor could an RST reach the
  // server outside the tunnel): the ends find out themselves, as with LVS's TUN and DR.
  if (!c.modes[recMode(rec, base)]!.twoWay) return;
  rstTo(c, rec, base, true, rec[base + R_CLI_ACK]!);
  rstTo(c, rec, base, false, rec[base + R_RS_ACK]!);
}

/**
 * A packet of session `base`, which the LB ended with RSTs (R_RESET), from the client
 * (`inbound`) or the real server: its ack is exactly the sequence number its sender expects,
 * so an RST back with that number ends the sender's socket — also when the first RST met data
 * in flight and the sender answered it with a challenge ACK (RFC 5961). An RST, or a packet
 * without an ACK, gets nothing back. The packet is dropped.
 */
export function answerReset(c: NatContext, rec: Int32Array, base: number, inbound: boolean): number {
  if ((c.pFlags & (TCP_ACKF | TCP_RST)) === TCP_ACKF) rstTo(c, rec, base, inbound, c.dv.getInt32(c.pL4 + TCP_ACK));
  return -DROP_SESSION_RESET;
}
