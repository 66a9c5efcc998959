/**
 * The outbound rewrite of FULLNAT (and NAT): RIP:rport → LIP:lport (NAT: → client:cport)
 * becomes VIP:vport → client. nat/outbound.ts finds the session by its OUT key.
 *
 *   1. tcpOutbound      a session the SYN proxy answered and whose server has not yet: its
 *                       SYN-ACK (or RST) goes to synproxy.ts. A session the LB ended with
 *                       RSTs (R_RESET) answers with another (rst.ts answerReset). State
 *                       transition and timeout;
 *                       on SYN-ACK remember rs_isn + 1 (the ack that marks TOA packets),
 *                       on the server's first ack of client data stop TOA (FLAG_TOA_OPEN);
 *                       rewrite addresses and ports; ack −= delta; timestamps
 *                       (timestamps.ts); for a proxied session seq += srv delta and the
 *                       window rescaled; TCP checksum by RFC 1624.
 *   2. shiftSackClampMss  (toa.ts) SACK edges −= delta; MSS of the SYN-ACK clamped by the
 *                       TOA length.
 *   udpOutbound         step 1 for UDP.
 */

import {
  FLAG_PROXIED,
  FLAG_TOA_OPEN,
  META_FLAGS_SHIFT,
  META_STATE_SHIFT,
  R_CIP0,
  R_CIP1,
  R_IN_PORTS,
  R_CLI_ACK,
  R_META,
  R_PROXY_OPTS,
  R_RESET,
  R_RS_ACK,
  R_RS_ISN1,
  R_SEQ_DELTA,
  R_SRV_DELTA,
  R_SRV_FIN_ACK,
  R_SRV_TS_DELTA,
  R_TS_DELTA,
  recService,
  R_VIP0,
  R_VIP1,
  RECORD_WORDS,
} from '../conn/layout.js';
import { nextStateOutbound, S_CLOSE, S_TIME_WAIT } from '../conn/state.js';
import { C_PACKETS_OUT, RS_PACKETS_OUT } from '../dataplane/counters.js';
import {
  AF_INET,
  TCP_ACK,
  TCP_ACKF,
  TCP_CSUM,
  TCP_FIN,
  TCP_RST,
  TCP_SEQ,
  TCP_SYN,
  TCP_WINDOW,
} from '../packet/headers.js';
import { TOA_ON } from '../service/service.js';
import type { NatContext } from './context.js';
import { answerReset } from './rst.js';
import { countPacket, rewriteAddresses, rewritePartial, rewritePorts, rewriteUdp, swapPorts } from './rewrite.js';
import { csumFinish, csumReplace16, csumReplace32, csumStart } from '../packet/checksum.js';
import { finCoverAck, finsAcked, idleTicks, laterAck, restartTimeout, setState } from './session.js';
import { scanPacketOptions, shiftSackClampMss, TOA_LEN_V4, TOA_LEN_V6 } from './toa.js';
import { shiftTimestamp } from './timestamps.js';
import { isWaiting, proxyServerSynAck, rescaledWindow } from './synproxy.js';
import { DROP_BAD_TCP_OPTIONS, DROP_SYNPROXY_NOT_READY } from './verdict.js';

export function tcpOutbound(c: NatContext, r: number): number {
  const n = scanPacketOptions(c);
  if (n < 0) return -DROP_BAD_TCP_OPTIONS;
  const table = c.table;
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  const dv = c.dv;
  const l4 = c.pL4;
  const flags = c.pFlags;
  const meta = rec[base + R_META]!;
  const proxied = ((meta >>> META_FLAGS_SHIFT) & FLAG_PROXIED) !== 0;
  const synAck = (flags & (TCP_SYN | TCP_ACKF)) === (TCP_SYN | TCP_ACKF);
  if (proxied) {
    // The server answers the proxy's SYN: the proxy completes that handshake itself.
    if (synAck) return proxyServerSynAck(c, r, n);
    if (isWaiting(rec, base)) {
      if ((flags & TCP_RST) === 0) return -DROP_SYNPROXY_NOT_READY;
      // Refused: the client hears it with the sequence number it expects (cookie + 1).
      rec[base + R_SRV_DELTA] = (rec[base + R_CLI_ACK]! - dv.getInt32(l4 + TCP_SEQ)) | 0;
    }
  }
  const seq = dv.getInt32(l4 + TCP_SEQ);
  const ack = dv.getInt32(l4 + TCP_ACK);
  const st = (meta >>> META_STATE_SHIFT) & 0xff;
  if (st === S_CLOSE && rec[base + R_RESET] !== 0) return answerReset(c, rec, base, false);
  let ns = nextStateOutbound(st, flags);
  if (ns === S_TIME_WAIT && !finsAcked(rec, base, rec[base + R_CLI_ACK]!, laterAck(ack, rec[base + R_RS_ACK]!)))
    ns = st;
  if (ns !== st) setState(c, base, ns);
  restartTimeout(c, r, ns);

  if (synAck) {
    rec[base + R_RS_ISN1] = (seq + 1) | 0;
    rec[base + R_META] = rec[base + R_META]! | (FLAG_TOA_OPEN << META_FLAGS_SHIFT);
  }
  const hasAck = (flags & TCP_ACKF) !== 0;
  const delta = rec[base + R_SEQ_DELTA]!;
  const inPorts = rec[base + R_IN_PORTS]!;
  if (hasAck) {
    // The server acknowledged a client byte past its SYN-ACK's ack: its socket exists, every
    // TOA reader has had its packet, so TOA stops here (a one-way upload would otherwise
    // carry it on every packet, since the client's ack never leaves rs_isn + 1).
    if (!synAck && ((meta >>> META_FLAGS_SHIFT) & FLAG_TOA_OPEN) !== 0 && ack !== rec[base + R_RS_ACK]) {
      rec[base + R_META] = rec[base + R_META]! & ~(FLAG_TOA_OPEN << META_FLAGS_SHIFT);
    }
    rec[base + R_RS_ACK] = laterAck(ack, rec[base + R_RS_ACK]!);
  }
  const newAck = (ack - delta) | 0;
  const srvDelta = proxied ? rec[base + R_SRV_DELTA]! : 0;
  const newSeq = (seq + srvDelta) | 0;
  // What the client's ack must reach to cover this FIN.
  if ((flags & TCP_FIN) !== 0) rec[base + R_SRV_FIN_ACK] = finCoverAck(c, newSeq);
  // Published (at a state change, a refresh) with what this packet just recorded.
  if (c.sync !== null) c.sync.onPacket(base, ns !== st, ns, c.tick);
  const tsDelta = rec[base + R_TS_DELTA]!;
  const ts = tsDelta !== 0 || proxied ? c.optTs : -1;
  const srvTsDelta = proxied ? rec[base + R_SRV_TS_DELTA]! : 0;
  const win = proxied ? rescaledWindow(rec[base + R_PROXY_OPTS]!, dv.getUint16(l4 + TCP_WINDOW), flags) : -1;
  if (c.pPartial) {
    rewritePartial(
      c,
      rec,
      base + R_VIP0,
      base + R_VIP1,
      base + R_CIP0,
      base + R_CIP1,
      swapPorts(inPorts),
      l4 + TCP_CSUM,
    );
    if (hasAck) dv.setInt32(l4 + TCP_ACK, newAck);
    if (srvDelta !== 0) dv.setInt32(l4 + TCP_SEQ, newSeq);
    if (win >= 0) dv.setUint16(l4 + TCP_WINDOW, win);
    if (ts >= 0) shiftTimestamp(c, ts, srvTsDelta, tsDelta, 0);
  } else {
    let acc = csumStart(dv.getUint16(l4 + TCP_CSUM));
    acc = rewriteAddresses(c, rec, base + R_VIP0, base + R_VIP1, base + R_CIP0, base + R_CIP1, acc);
    acc = rewritePorts(c, swapPorts(inPorts), acc);
    if (hasAck) {
      dv.setInt32(l4 + TCP_ACK, newAck);
      acc = csumReplace32(acc, ack, newAck);
    }
    if (srvDelta !== 0) {
      dv.setInt32(l4 + TCP_SEQ, newSeq);
      acc = csumReplace32(acc, seq, newSeq);
    }
    if (win >= 0) {
      acc = csumReplace16(acc, dv.getUint16(l4 + TCP_WINDOW), win);
      dv.setUint16(l4 + TCP_WINDOW, win);
    }
    if (ts >= 0) acc = shiftTimestamp(c, ts, srvTsDelta, tsDelta, acc);
    dv.setUint16(l4 + TCP_CSUM, csumFinish(acc));
  }
  if (n > 0) {
    const svc = recService(rec, base);
    const clampBy =
      synAck && (c.services.toaMode[svc]! & TOA_ON) !== 0 ? (c.pAf === AF_INET ? TOA_LEN_V4 : TOA_LEN_V6) : 0;
    shiftSackClampMss(c, n, hasAck ? delta : 0, clampBy);
  }
  countPacket(c, rec, base, c.pEnd, RS_PACKETS_OUT, C_PACKETS_OUT);
  return c.pEnd - c.pL3;
}

export function udpOutbound(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  c.table.setExpire(r, c.tick + idleTicks(c, base));
  rewriteUdp(c, rec, base + R_VIP0, base + R_VIP1, base + R_CIP0, base + R_CIP1, swapPorts(rec[base + R_IN_PORTS]!));
  countPacket(c, rec, base, c.pEnd, RS_PACKETS_OUT, C_PACKETS_OUT);
  return c.pEnd - c.pL3;
}
