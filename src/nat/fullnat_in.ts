/**
 * The inbound rewrite of FULLNAT (and of NAT, whose local address and port are the
 * client's own): client → VIP:vport becomes LIP:lport → RIP:rport. nat/inbound.ts finds or
 * makes the session; modes/fullnat.ts and modes/nat.ts call in here.
 *
 *   1. tcpInbound      a session the LB ended with RSTs (R_RESET) answers with another
 *                      (rst.ts answerReset); state transition and timeout; remember the
 *                      client's ack; rewrite
 *                      addresses and ports; seq += delta; timestamps (timestamps.ts); for a
 *                      proxied session ack −= srv delta; TCP checksum by RFC 1624.
 *   2. inboundOptions  (toa.ts) SACK edges −= srv delta (proxied); TOA when the ack is the
 *                      real server's ISN + 1, client TOA scrubbed, timestamps stripped from
 *                      SYNs if configured.
 *   udpInbound         step 1 for UDP: addresses and ports only, no TOA.
 *   flushHeld          the SYN proxy's held client segments, through tcpInbound.
 */

import {
  FLAG_PROXIED,
  FLAG_TOA_OPEN,
  META_FLAGS_SHIFT,
  META_STATE_SHIFT,
  R_CLI_ACK,
  R_CLI_FIN_ACK,
  R_LIP0,
  R_LIP1,
  R_OUT_PORTS,
  R_RIP0,
  R_RIP1,
  R_RESET,
  R_RS_ACK,
  R_RS_ISN1,
  R_SEQ_DELTA,
  R_SRV_DELTA,
  R_SRV_TS_DELTA,
  R_TS_DELTA,
  recService,
  R_META,
  RECORD_WORDS,
} from '../conn/layout.js';
import { nextStateInbound, S_CLOSE, S_TIME_WAIT, S_UDP } from '../conn/state.js';
import { C_PACKETS_IN, RS_PACKETS_IN } from '../dataplane/counters.js';
import {
  TCP_ACK,
  TCP_ACKF,
  TCP_CSUM,
  TCP_FIN,
  TCP_RST,
  TCP_SEQ,
  TCP_SYN,
  VIRTIO_NEEDS_CSUM,
} from '../packet/headers.js';
import { TOA_IN_SYN, TOA_ON } from '../service/service.js';
import type { NatContext } from './context.js';
import { answerReset } from './rst.js';
import { countPacket, rewriteAddresses, rewritePartial, rewritePorts, rewriteUdp, swapPorts } from './rewrite.js';
import { csumFinish, csumReplace32, csumStart } from '../packet/checksum.js';
import { finCoverAck, finsAcked, idleTicks, laterAck, restartTimeout, setState } from './session.js';
import { inboundOptions, scanPacketOptions, shiftSackClampMss } from './toa.js';
import { shiftTimestamp } from './timestamps.js';

/** `n` options were scanned into c.optOffsets. Also runs the SYN proxy's held segments. */
export function tcpInbound(c: NatContext, r: number, n: number): number {
  const table = c.table;
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  const dv = c.dv;
  const l4 = c.pL4;
  const flags = c.pFlags;
  const meta = rec[base + R_META]!;
  const seq = dv.getInt32(l4 + TCP_SEQ);
  const ack = dv.getInt32(l4 + TCP_ACK);
  const st = (meta >>> META_STATE_SHIFT) & 0xff;
  if (st === S_CLOSE && rec[base + R_RESET] !== 0) return answerReset(c, rec, base, true);
  let ns = nextStateInbound(st, flags);
  if (ns === S_TIME_WAIT && !finsAcked(rec, base, laterAck(ack, rec[base + R_CLI_ACK]!), rec[base + R_RS_ACK]!))
    ns = st;
  if (ns !== st) setState(c, base, ns);
  restartTimeout(c, r, ns);

  const hasAck = (flags & TCP_ACKF) !== 0;
  if (hasAck) rec[base + R_CLI_ACK] = laterAck(ack, rec[base + R_CLI_ACK]!);
  const newSeq = (seq + rec[base + R_SEQ_DELTA]!) | 0;
  // What the server's ack must reach to cover this FIN.
  if ((flags & TCP_FIN) !== 0) rec[base + R_CLI_FIN_ACK] = finCoverAck(c, newSeq);
  // Published (at a state change, a refresh) with what this packet just recorded.
  if (c.sync !== null) c.sync.onPacket(base, ns !== st, ns, c.tick);
  const proxied = ((meta >>> META_FLAGS_SHIFT) & FLAG_PROXIED) !== 0;
  // The real server's sequence space (the client's own, unless the SYN proxy answered it).
  const srvDelta = proxied ? rec[base + R_SRV_DELTA]! : 0;
  const newAck = (ack - srvDelta) | 0;
  const tsDelta = rec[base + R_TS_DELTA]!;
  const ts = tsDelta !== 0 || proxied ? c.optTs : -1;
  const outPorts = rec[base + R_OUT_PORTS]!;
  if (c.pPartial) {
    rewritePartial(
      c,
      rec,
      base + R_LIP0,
      base + R_LIP1,
      base + R_RIP0,
      base + R_RIP1,
      swapPorts(outPorts),
      l4 + TCP_CSUM,
    );
    dv.setInt32(l4 + TCP_SEQ, newSeq);
    if (srvDelta !== 0 && hasAck) dv.setInt32(l4 + TCP_ACK, newAck);
    if (ts >= 0) shiftTimestamp(c, ts, tsDelta, proxied ? rec[base + R_SRV_TS_DELTA]! : 0, 0);
  } else {
    let acc = csumStart(dv.getUint16(l4 + TCP_CSUM));
    acc = rewriteAddresses(c, rec, base + R_LIP0, base + R_LIP1, base + R_RIP0, base + R_RIP1, acc);
    acc = rewritePorts(c, swapPorts(outPorts), acc);
    dv.setInt32(l4 + TCP_SEQ, newSeq);
    acc = csumReplace32(acc, seq, newSeq);
    if (srvDelta !== 0 && hasAck) {
      dv.setInt32(l4 + TCP_ACK, newAck);
      acc = csumReplace32(acc, ack, newAck);
    }
    if (ts >= 0) acc = shiftTimestamp(c, ts, tsDelta, proxied ? rec[base + R_SRV_TS_DELTA]! : 0, acc);
    dv.setUint16(l4 + TCP_CSUM, csumFinish(acc));
  }
  // SACK blocks name the server's bytes: into its space (before TOA moves the options).
  if (srvDelta !== 0 && n > 0) shiftSackClampMss(c, n, srvDelta, 0);

  const svc = recService(rec, base);
  const mode = c.services.toaMode[svc]!;
  let wantToa = false;
  if ((mode & TOA_ON) !== 0) {
    if ((flags & TCP_SYN) !== 0) wantToa = (mode & TOA_IN_SYN) !== 0;
    else
      wantToa =
        (flags & (TCP_RST | TCP_ACKF)) === TCP_ACKF &&
        ((meta >>> META_FLAGS_SHIFT) & FLAG_TOA_OPEN) !== 0 &&
        newAck === rec[base + R_RS_ISN1];
  }
  const end = n > 0 || wantToa ? inboundOptions(c, svc, rec, base, n, wantToa) : c.pEnd;
  countPacket(c, rec, base, end, RS_PACKETS_IN, C_PACKETS_IN);
  return end - c.pL3;
}

export function udpInbound(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  c.table.setExpire(r, c.tick + idleTicks(c, base));
  // A one-packet service's datagram session lives for its reply alone: not published.
  if (c.sync !== null && c.services.onePacket[recService(rec, base)] === 0) c.sync.onPacket(base, false, S_UDP, c.tick);
  rewriteUdp(c, rec, base + R_LIP0, base + R_LIP1, base + R_RIP0, base + R_RIP1, swapPorts(rec[base + R_OUT_PORTS]!));
  countPacket(c, rec, base, c.pEnd, RS_PACKETS_IN, C_PACKETS_IN);
  return c.pEnd - c.pL3;
}

/**
 * The SYN proxy's held segments of session `r`, once its server answered: each through
 * tcpInbound (translated like any client segment, TOA by the usual rule) into the emit ring,
 * in arrival order, behind the ACK that completed the handshake. The engine calls this after
 * the packet in hand is done; the ring in hand is restored.
 */
export function flushHeld(c: NatContext, r: number): void {
  const rec = c.table.rec;
  const hold = c.hold;
  const list = c.heldList;
  const count = hold.take(rec, r, list);
  const buf = c.buf;
  const dv = c.dv;
  const slotEnd = c.slotEnd;
  const e = c.emit;
  const h = e.headroom;
  c.setRing(e.bytes, e.view);
  for (let k = 0; k < count; k++) {
    const s = list[k]!;
    const off = c.emitSlot();
    if (off < 0) break;
    const len = hold.lens[s]!;
    const from = hold.offsetOf(s);
    e.bytes.set(hold.bytes.subarray(from, from + len), off);
    c.slotEnd = off + e.slotSize;
    c.pPartial = h !== 0 && (e.bytes[off]! & VIRTIO_NEEDS_CSUM) !== 0;
    c.pGso = h !== 0 && (e.bytes[off + 1]! & 0x7f) !== 0;
    c.pVnet = off;
    if (c.parse(off + h, len - h) !== 0) continue;
    const n = scanPacketOptions(c);
    if (n < 0) continue;
    c.emitted(tcpInbound(c, r, n));
  }
  hold.release(rec, r);
  c.setRing(buf, dv);
  c.slotEnd = slotEnd;
  c.pPartial = false;
  c.pGso = false;
}
