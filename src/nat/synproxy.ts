/**
 * The SYN proxy (synProxy per service: off | on | auto). The LB completes the client's
 * handshake itself with a SYN cookie (syncookie.ts) and stores nothing until the client's
 * ACK proves the client is real; only then does a session exist and the connection to the
 * real server open. A flood of spoofed SYNs costs one SipHash and one reply each, and takes
 * neither session records nor local ports.
 *
 * In packet order:
 *
 *   1. proxySyn           client SYN, no session: answered in place with a SYN-ACK whose ISN
 *                         is the cookie; window scale, SACK and ECN ride in its TSval.
 *   2. proxyAck           client ACK, no session: a valid cookie makes a session (SYN_SENT,
 *                         FLAG_PROXIED); the ACK's data is held, and the packet becomes the SYN
 *                         to the real server with the client's options (MSS, window scale,
 *                         SACK, the LB's timestamp clock). No session to be had (table
 *                         full, no server or port): dropped by reason; the client retries.
 *   3. proxyWaitInbound   client segments before the server answers: held (hold.ts); the
 *                         first one again (a retransmission) sends the SYN again.
 *   4. proxyServerSynAck  the server's SYN-ACK: the server's sequence and timestamp spaces
 *                         are tied to what the client was given (SRV_DELTA, SRV_TS_DELTA),
 *                         the session is ESTABLISHED, and the packet becomes the ACK that
 *                         completes the server's handshake (with TOA); the held segments
 *                         follow it (fullnat_in.ts flushHeld). A retransmitted SYN-ACK gets
 *                         that ACK again.
 *   5. proxyTimer         the server has not answered: the SYN again after 1 s, 2 s; then
 *                         RSTs (the client believes it is connected).
 *   rescaledWindow        every server window, into the scale the client was promised.
 *
 * From then on fullnat_in.ts / fullnat_out.ts translate the session's packets both ways with
 * the extra deltas: seq, ack, SACK blocks, timestamps, windows; icmp_errors.ts the quoted
 * sequence numbers; the expiry RSTs use the acks each side sent, which are in its own space.
 *
 * Window scale: the client was promised SYNPROXY_WSCALE, the server chose its own. Every
 * window the server sends is rescaled into the promised scale (rounded down, never to 0 from
 * non-zero), so the client never sends beyond what the server offered. The client's windows
 * need nothing: the server was given the client's own scale in the SYN.
 * Without a client timestamp there is nowhere to carry the options: like Linux's cookies,
 * such a connection runs without window scaling and SACK.
 */

import {
  HOLD_PER_SESSION_MAX,
  SYNPROXY_AUTO_OFF_MS,
  SYNPROXY_AUTO_OFF_UNANSWERED_PER_SEC,
  SYNPROXY_AUTO_ON_HALF_OPEN,
  SYNPROXY_SYN_RTO_MS,
  SYNPROXY_SYN_TRIES,
  SYNPROXY_WSCALE,
} from '../constants.js';
import {
  FLAG_PROXIED,
  FLAG_TOA_OPEN,
  META_FLAGS_SHIFT,
  META_STATE_SHIFT,
  proxyClientWs,
  proxyEcn,
  proxyLbWs,
  proxyMss,
  proxyOptsWord,
  proxySack,
  proxyServerWs,
  proxyTs,
  R_CLI_ACK,
  R_CLI_WIN,
  R_EXPIRE,
  R_HOLD,
  R_LIP0,
  R_LIP1,
  R_META,
  R_OUT_PORTS,
  R_PROXY_OPTS,
  R_PROXY_TRIES,
  R_RIP0,
  R_RIP1,
  R_RS_ACK,
  R_RS_ISN1,
  R_SEQ_DELTA,
  R_SRV_DELTA,
  R_SRV_TS_DELTA,
  R_SYN_TSVAL,
  R_TS_DELTA,
  recService,
  RECORD_WORDS,
  withProxyServerWs,
  WS_NONE,
} from '../conn/layout.js';
import { S_ESTABLISHED, S_SYN_SENT } from '../conn/state.js';
import {
  C_SYNPROXY_ACCEPTED,
  C_SYNPROXY_AUTO_ON,
  C_SYNPROXY_AUTO_SWITCHES,
  C_SYNPROXY_HELD,
  C_SYNPROXY_SERVER_TIMEOUTS,
  C_SYNPROXY_SYN_RETRIES,
  C_SYNPROXY_SYNACKS,
} from '../dataplane/counters.js';
import {
  AF_INET,
  TCP_ACK,
  TCP_ACKF,
  TCP_FIN,
  TCP_SEQ,
  TCP_SYN,
  TCP_WINDOW,
  TCPOPT_MSS,
  TCPOPT_NOP,
  TCPOPT_SACK_PERM,
  TCPOPT_TIMESTAMP,
  TCPOPT_WSCALE,
} from '../packet/headers.js';
import { SYNPROXY_AUTO, SYNPROXY_ON, TOA_IN_SYN, TOA_ON } from '../service/service.js';
import type { NatContext } from './context.js';
import { resetBoth } from './rst.js';
import { writeSegment, type SegmentFields } from './segment.js';
import { createSession, idleTicks, setState } from './session.js';
import { mssClass, mssOfClass, tsOptEcn, tsOptionBits, tsOptSack, tsOptWs } from './syncookie.js';
import { TS_OPTION_LEN } from './timestamps.js';
import { TOA_LEN_V4, TOA_LEN_V6, writeToa } from './toa.js';
import {
  DROP_NO_SESSION,
  DROP_SYNPROXY_BAD_COOKIE,
  DROP_SYNPROXY_HOLD_FULL,
  DROP_SYNPROXY_NOT_READY,
  HELD,
} from './verdict.js';

/** TCP header flags of ECN negotiation (RFC 3168): the byte at offset 13 holds them too. */
const TCP_ECE = 0x40;
const TCP_CWR = 0x80;

const seg: SegmentFields = { sport: 0, dport: 0, seq: 0, ack: 0, flags: 0, window: 0 };

/** Does service `svc` answer SYNs with cookies on this worker right now? */
export function proxyActive(c: NatContext, svc: number): boolean {
  const mode = c.services.synProxy[svc]!;
  return mode === SYNPROXY_ON || (mode === SYNPROXY_AUTO && c.proxyAuto);
}

/** A proxied session whose real server has not answered the SYN yet. */
export function isWaiting(rec: Int32Array, base: number): boolean {
  const meta = rec[base + R_META]!;
  return ((meta >>> META_FLAGS_SHIFT) & FLAG_PROXIED) !== 0 && ((meta >>> META_STATE_SHIFT) & 0xff) === S_SYN_SENT;
}

/** A session ends: free what it holds (only proxied sessions hold anything; the check reads
 * the first cache line, so the ends of plain sessions never touch the third). */
export function releaseHeld(c: NatContext, r: number): void {
  const rec = c.table.rec;
  if (((rec[r * RECORD_WORDS + R_META]! >>> META_FLAGS_SHIFT) & FLAG_PROXIED) !== 0) c.hold.release(rec, r);
}

/** The MSS the SYN-ACK announces: what fits the MTU once TOA is added. */
function proxyMssFor(c: NatContext, svc: number): number {
  const v4 = c.pAf === AF_INET;
  const toa = (c.services.toaMode[svc]! & TOA_ON) !== 0 ? (v4 ? TOA_LEN_V4 : TOA_LEN_V6) : 0;
  return c.opts.mtu - (v4 ? 40 : 60) - toa;
}

/** 1. Answer the client's SYN (IN key in c.key) with a cookie SYN-ACK, in place. */
export function proxySyn(c: NatContext, svc: number, blockWords: number, n: number): number {
  const denied = c.services.acl(svc, c.pS0, c.pS1, c.pS2, c.pS3);
  if (denied !== 0) return -denied;
  const b = c.buf;
  const dv = c.dv;
  const offs = c.optOffsets;
  const v4 = c.pAf === AF_INET;
  let mss = v4 ? 536 : 1220; // RFC 9293's defaults when the SYN names none
  let ws = WS_NONE;
  let sack = false;
  let ts = false;
  let cliTsval = 0;
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const kind = b[o]!;
    if (kind === TCPOPT_NOP) continue;
    const len = b[o + 1]!;
    if (kind === TCPOPT_MSS && len === 4) mss = dv.getUint16(o + 2);
    else if (kind === TCPOPT_WSCALE && len === 3) ws = b[o + 2]! > 14 ? 14 : b[o + 2]!;
    else if (kind === TCPOPT_SACK_PERM && len === 2) sack = true;
    else if (kind === TCPOPT_TIMESTAMP && len === TS_OPTION_LEN) {
      ts = true;
      cliTsval = dv.getInt32(o + 2);
    }
  }
  const ecn = ts && (c.pFlags & (TCP_ECE | TCP_CWR)) === (TCP_ECE | TCP_CWR);
  const cIsn = dv.getInt32(c.pL4 + TCP_SEQ);
  const cookie = c.cookies.make(c.key, blockWords, cIsn, mssClass(c.pAf, mss), c.nowMs);

  const o = c.optScratch;
  const ourMss = proxyMssFor(c, svc);
  // Without a client timestamp the cookie cannot carry scale and SACK: MSS only.
  const w = ts
    ? putHandshakeOptions(
        o,
        0,
        ourMss,
        sack,
        true,
        c.cookies.tsval(c.nowMs, tsOptionBits(ws, sack, ecn)),
        cliTsval,
        ws !== WS_NONE ? SYNPROXY_WSCALE : WS_NONE,
      )
    : putHandshakeOptions(o, 0, ourMss, false, false, 0, 0, WS_NONE);
  const ports = c.key[1]!;
  seg.sport = ports & 0xffff; // the VIP's port
  seg.dport = ports >>> 16;
  seg.seq = cookie;
  seg.ack = (cIsn + 1) | 0;
  seg.flags = TCP_SYN | TCP_ACKF | (ecn ? TCP_ECE : 0);
  // The client may send this much before the server's side is heard: what can be held.
  seg.window = Math.min(0xffff, HOLD_PER_SESSION_MAX * ourMss);
  c.plainVnet();
  // From the VIP (the key's destination words) to the client (its source words).
  const len = writeSegment(b, dv, c.pL3, c.pAf, c.key, 3, 5, 2, 4, seg, o, w);
  c.counters[C_SYNPROXY_SYNACKS] = c.counters[C_SYNPROXY_SYNACKS]! + 1;
  c.proxySecondSynAcks++;
  return len;
}

/** 2. A client ACK without a session: a valid cookie opens the connection to a real server. */
export function proxyAck(c: NatContext, svc: number, hash: number, blockWords: number): number {
  const dv = c.dv;
  const l4 = c.pL4;
  const seq = dv.getInt32(l4 + TCP_SEQ);
  const ack = dv.getInt32(l4 + TCP_ACK);
  const cIsn = (seq - 1) | 0;
  const cls = c.cookies.check(c.key, blockWords, cIsn, (ack - 1) | 0, c.nowMs);
  // While the proxy is off, an ACK without a session is most likely one of an expired
  // session: named as such. While it is on, a bad cookie (an ACK flood, forged cookies).
  if (cls < 0) return -(proxyActive(c, svc) ? DROP_SYNPROXY_BAD_COOKIE : DROP_NO_SESSION);
  const o = c.optTs;
  const ts = o >= 0;
  const cliTsval = ts ? dv.getInt32(o + 2) : 0;
  const echoed = ts ? dv.getInt32(o + 6) : 0;
  const ws = ts ? tsOptWs(echoed) : WS_NONE;
  const refused = c.services.admit(svc, c.pS0, c.pS1, c.pS2, c.pS3, c.nowMs);
  // No session to be had (the cap, the table full, no server up, no local port free): the
  // ACK is dropped with its reason and nothing else. The client retransmits it, and its
  // data after it, with the same cookie, so a passing shortage (a flood's half-open
  // sessions holding ports before auto mode switched on) costs a retry, not the connection
  // (Linux's cookie path keeps silent too: tcp_abort_on_overflow = 0).
  if (refused !== 0) return -refused;
  const r = createSession(c, svc, hash, blockWords, S_SYN_SENT, cIsn);
  if (r < 0) return r;
  c.counters[C_SYNPROXY_ACCEPTED] = c.counters[C_SYNPROXY_ACCEPTED]! + 1;
  c.proxySecondAccepted++;
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  rec[base + R_META] = rec[base + R_META]! | (FLAG_PROXIED << META_FLAGS_SHIFT);
  const lbIsn = (cIsn + rec[base + R_SEQ_DELTA]!) | 0;
  rec[base + R_CLI_ACK] = ack;
  rec[base + R_CLI_WIN] = dv.getUint16(l4 + TCP_WINDOW);
  rec[base + R_RS_ACK] = (lbIsn + 1) | 0; // what the server will ack: its RST on expiry
  rec[base + R_PROXY_OPTS] = proxyOptsWord(
    mssOfClass(c.pAf, cls),
    ws,
    ws !== WS_NONE ? SYNPROXY_WSCALE : WS_NONE,
    ts && tsOptSack(echoed),
    ts,
    ts && tsOptEcn(echoed),
  );
  if (ts) {
    const synTs = c.services.translateTs[svc] === 1 ? c.isn.tsClock(c.nowMs) : cliTsval;
    rec[base + R_SYN_TSVAL] = synTs;
    rec[base + R_TS_DELTA] = (synTs - cliTsval) | 0;
    // Until the server's own TSval is known: the TSval the client was given.
    rec[base + R_SRV_TS_DELTA] = echoed;
  }
  c.table.setExpire(r, c.tick + rtoTicks(c, 0));
  if (c.pEnd > l4 + c.pThl || (c.pFlags & TCP_FIN) !== 0) holdSegment(c, r, seq);
  rec[base + R_PROXY_TRIES] = 1;
  c.plainVnet();
  return writeSyn(c, c.buf, c.dv, c.pL3, rec, base);
}

/** 3. A client segment (not RST) while the server has not answered. */
export function proxyWaitInbound(c: NatContext, r: number, n: number): number {
  if ((c.pFlags & TCP_SYN) !== 0 || n < 0) return -DROP_SYNPROXY_NOT_READY;
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const seq = c.dv.getInt32(c.pL4 + TCP_SEQ);
  // The client's first sequence number (ISN + 1): its handshake ACK, or its first data.
  let again = seq === ((rec[base + R_RS_ACK]! - rec[base + R_SEQ_DELTA]!) | 0);
  if (c.pEnd > c.pL4 + c.pThl || (c.pFlags & TCP_FIN) !== 0) {
    const held = holdSegment(c, r, seq);
    if (held < 0) return -DROP_SYNPROXY_HOLD_FULL;
    // First data comes right after the handshake ACK (a client does not wait for the server
    // it cannot see): new, not a retransmission. Only the same segment again says that the
    // client's RTO passed unanswered.
    again &&= held === 0;
  }
  if (!again) return HELD;
  // A retransmission (or the handshake ACK again): the SYN or the server's answer may be lost.
  c.counters[C_SYNPROXY_SYN_RETRIES] = c.counters[C_SYNPROXY_SYN_RETRIES]! + 1;
  c.plainVnet();
  return writeSyn(c, c.buf, c.dv, c.pL3, rec, base);
}

/** Hold the packet in hand for session `r`: 1 held, 0 held already, −1 no room (counted). */
function holdSegment(c: NatContext, r: number, seq: number): number {
  const start = c.pL3 - c.headroom;
  const res = c.hold.hold(c.table.rec, r, c.buf, start, c.pEnd - start, seq);
  if (res > 0) c.counters[C_SYNPROXY_HELD] = c.counters[C_SYNPROXY_HELD]! + 1;
  return res;
}

/** 4. The real server's SYN-ACK for proxied session `r` (`n` options scanned). */
export function proxyServerSynAck(c: NatContext, r: number, n: number): number {
  const table = c.table;
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  const dv = c.dv;
  const b = c.buf;
  const l4 = c.pL4;
  const sIsn = dv.getInt32(l4 + TCP_SEQ);
  const ack = dv.getInt32(l4 + TCP_ACK);
  const waiting = isWaiting(rec, base);
  // It must answer the proxy's SYN (ack = LB ISN + 1) and, once answered, be the same again.
  if (waiting ? ack !== rec[base + R_RS_ACK] : rec[base + R_RS_ISN1] !== ((sIsn + 1) | 0)) {
    return -DROP_SYNPROXY_NOT_READY;
  }
  let srvWs = WS_NONE;
  let srvTsval = 0;
  let srvTs = false;
  const offs = c.optOffsets;
  for (let i = 0; i < n; i++) {
    const o = offs[i]!;
    const kind = b[o]!;
    if (kind === TCPOPT_WSCALE && b[o + 1] === 3) srvWs = b[o + 2]! > 14 ? 14 : b[o + 2]!;
    else if (kind === TCPOPT_TIMESTAMP && b[o + 1] === TS_OPTION_LEN) {
      srvTs = true;
      srvTsval = dv.getInt32(o + 2);
    }
  }
  if (waiting) {
    const opts = rec[base + R_PROXY_OPTS]!;
    rec[base + R_SRV_DELTA] = (rec[base + R_CLI_ACK]! - 1 - sIsn) | 0; // cookie − server ISN
    rec[base + R_RS_ISN1] = (sIsn + 1) | 0;
    rec[base + R_META] = rec[base + R_META]! | (FLAG_TOA_OPEN << META_FLAGS_SHIFT);
    // Scaling is on only if both ends of the server's handshake sent a scale.
    rec[base + R_PROXY_OPTS] = withProxyServerWs(opts, proxyClientWs(opts) !== WS_NONE ? srvWs : WS_NONE);
    rec[base + R_SRV_TS_DELTA] = srvTs ? (rec[base + R_SRV_TS_DELTA]! - srvTsval) | 0 : 0;
    setState(c, base, S_ESTABLISHED);
    table.setExpire(r, c.tick + idleTicks(c, base));
    if (c.sync !== null) c.sync.onPacket(base, true, S_ESTABLISHED, c.tick);
    if (rec[base + R_HOLD] !== 0) c.flushRecord = r; // segments are waiting
  }
  // The packet becomes the ACK that completes the server's handshake.
  c.plainVnet();
  return writeAck(c, rec, base, ack, (sIsn + 1) | 0, srvTs ? srvTsval : 0);
}

/** 5. A waiting session's timer: true when it lives on (the SYN went out again). */
export function proxyTimer(c: NatContext, r: number): boolean {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const tries = rec[base + R_PROXY_TRIES]!;
  if (tries < SYNPROXY_SYN_TRIES) {
    const off = c.emitSlot();
    if (off >= 0) {
      const e = c.emit;
      c.emitted(writeSyn(c, e.bytes, e.view, off + e.headroom, rec, base));
      c.counters[C_SYNPROXY_SYN_RETRIES] = c.counters[C_SYNPROXY_SYN_RETRIES]! + 1;
    }
    rec[base + R_PROXY_TRIES] = tries + 1;
    rec[base + R_EXPIRE] = c.tick + rtoTicks(c, tries); // the wheel relinks it (table.ts)
    return true;
  }
  // The server never answered: the client, which believes it is connected, hears it now.
  resetBoth(c, rec, base);
  c.counters[C_SYNPROXY_SERVER_TIMEOUTS] = c.counters[C_SYNPROXY_SERVER_TIMEOUTS]! + 1;
  c.hold.release(rec, r);
  return false;
}

/** Timer ticks before try `tries` + 1 of the SYN (1 s, 2 s, 4 s, …). */
function rtoTicks(c: NatContext, tries: number): number {
  return Math.ceil((SYNPROXY_SYN_RTO_MS << tries) / c.opts.tickMs);
}

/** A timestamp option, NOP-free, at o[w]. Returns the new w. */
function putTimestamp(o: Uint8Array, w: number, tsval: number, tsecr: number): number {
  o[w++] = TCPOPT_TIMESTAMP;
  o[w++] = TS_OPTION_LEN;
  o[w++] = tsval >>> 24;
  o[w++] = (tsval >>> 16) & 0xff;
  o[w++] = (tsval >>> 8) & 0xff;
  o[w++] = tsval & 0xff;
  o[w++] = tsecr >>> 24;
  o[w++] = (tsecr >>> 16) & 0xff;
  o[w++] = (tsecr >>> 8) & 0xff;
  o[w++] = tsecr & 0xff;
  return w;
}

/**
 * The options of a handshake segment at o[w]: MSS; SACK permitted and the timestamp (when
 * `ts`) packed as every stack sends them; the window scale `ws` (WS_NONE: none).
 * Returns the new w.
 */
function putHandshakeOptions(
  o: Uint8Array,
  w: number,
  mss: number,
  sack: boolean,
  ts: boolean,
  tsval: number,
  tsecr: number,
  ws: number,
): number {
  o[w++] = TCPOPT_MSS;
  o[w++] = 4;
  o[w++] = mss >>> 8;
  o[w++] = mss & 0xff;
  if (ts) {
    o[w++] = sack ? TCPOPT_SACK_PERM : TCPOPT_NOP;
    o[w++] = sack ? 2 : TCPOPT_NOP;
    w = putTimestamp(o, w, tsval, tsecr);
  } else if (sack) {
    o[w++] = TCPOPT_NOP;
    o[w++] = TCPOPT_NOP;
    o[w++] = TCPOPT_SACK_PERM;
    o[w++] = 2;
  }
  if (ws !== WS_NONE) {
    o[w++] = TCPOPT_NOP;
    o[w++] = TCPOPT_WSCALE;
    o[w++] = 3;
    o[w++] = ws;
  }
  return w;
}

/**
 * The SYN to the real server of proxied session `base`, at buf[off]: LIP:lport → RIP:rport,
 * the LB's ISN, the client's MSS class, window scale and SACK as its cookie said, the LB's
 * timestamp clock, ECN if asked, TOA if the service puts it in SYNs. Returns the length.
 */
function writeSyn(c: NatContext, buf: Uint8Array, dv: DataView, off: number, rec: Int32Array, base: number): number {
  const opts = rec[base + R_PROXY_OPTS]!;
  const af = (rec[base + R_META]! >>> 8) & 0xff;
  const svc = recService(rec, base);
  const o = c.optScratch;
  let w = 0;
  const mode = c.services.toaMode[svc]!;
  if ((mode & (TOA_ON | TOA_IN_SYN)) === (TOA_ON | TOA_IN_SYN)) w = writeToa(c, o, w, svc, rec, base, af);
  w = putHandshakeOptions(
    o,
    w,
    proxyMss(opts),
    proxySack(opts),
    proxyTs(opts),
    rec[base + R_SYN_TSVAL]!,
    0,
    proxyClientWs(opts),
  );
  seg.seq = (rec[base + R_RS_ACK]! - 1) | 0;
  seg.ack = 0;
  seg.flags = TCP_SYN | (proxyEcn(opts) ? TCP_ECE | TCP_CWR : 0);
  seg.window = 0xffff;
  return toServer(c, buf, dv, off, rec, base, af, o, w);
}

/** The ACK that completes the server's handshake, in place of the packet in hand: TOA first
 * (this is the packet the readers take the client's address from), the LB's timestamp. */
function writeAck(c: NatContext, rec: Int32Array, base: number, seq: number, ack: number, tsecr: number): number {
  const opts = rec[base + R_PROXY_OPTS]!;
  const af = (rec[base + R_META]! >>> 8) & 0xff;
  const svc = recService(rec, base);
  const o = c.optScratch;
  let w = 0;
  if ((c.services.toaMode[svc]! & TOA_ON) !== 0) w = writeToa(c, o, w, svc, rec, base, af);
  if (proxyTs(opts)) {
    o[w++] = TCPOPT_NOP;
    o[w++] = TCPOPT_NOP;
    w = putTimestamp(o, w, rec[base + R_SYN_TSVAL]!, tsecr);
  }
  seg.seq = seq;
  seg.ack = ack;
  seg.flags = TCP_ACKF;
  seg.window = rec[base + R_CLI_WIN]!; // the client's, in the scale the server was given
  return toServer(c, c.buf, c.dv, c.pL3, rec, base, af, o, w);
}

/** Write `seg` (all its header fields but the ports) with options o[0, w), padded, as a
 * segment of session `base` toward its real server (LIP:lport → RIP:rport) at buf[off].
 * Returns the length. */
function toServer(
  c: NatContext,
  buf: Uint8Array,
  dv: DataView,
  off: number,
  rec: Int32Array,
  base: number,
  af: number,
  o: Uint8Array,
  w: number,
): number {
  while ((w & 3) !== 0) o[w++] = TCPOPT_NOP;
  const ports = rec[base + R_OUT_PORTS]!;
  seg.sport = ports & 0xffff;
  seg.dport = ports >>> 16;
  return writeSegment(buf, dv, off, af, rec, base + R_LIP0, base + R_LIP1, base + R_RIP0, base + R_RIP1, seg, o, w);
}

/**
 * Window field of a server → client segment of a proxied session (options word `opts`,
 * field `win`), in the scale the client was promised; −1 when nothing changes. A SYN's
 * window is never scaled.
 */
export function rescaledWindow(opts: number, win: number, flags: number): number {
  if ((flags & TCP_SYN) !== 0) return -1;
  const lb = proxyLbWs(opts);
  const srv = proxyServerWs(opts);
  const from = srv === WS_NONE ? 0 : srv;
  const to = lb === WS_NONE ? 0 : lb;
  if (from === to) return -1;
  if (from > to) {
    const v = win * (1 << (from - to));
    return v > 0xffff ? 0xffff : v;
  }
  const v = win >>> (to - from);
  return v === 0 && win !== 0 ? 1 : v;
}

/**
 * synProxy auto, per worker (called as timers advance): on when half-open sessions reach
 * SYNPROXY_AUTO_ON_HALF_OPEN; off once, for SYNPROXY_AUTO_OFF_MS, fewer than
 * SYNPROXY_AUTO_OFF_UNANSWERED_PER_SEC cookies a second went unanswered and the half-open
 * sessions made before are mostly gone.
 */
export function proxyAutoTick(c: NatContext): void {
  const now = c.nowMs;
  if (!c.proxyAuto) {
    if (c.halfOpen < SYNPROXY_AUTO_ON_HALF_OPEN) return;
    c.proxyAuto = true;
    c.proxyQuietSinceMs = now;
    c.proxySecondMs = now;
    c.proxySecondSynAcks = 0;
    c.proxySecondAccepted = 0;
    c.counters[C_SYNPROXY_AUTO_ON] = 1;
    c.counters[C_SYNPROXY_AUTO_SWITCHES] = c.counters[C_SYNPROXY_AUTO_SWITCHES]! + 1;
    return;
  }
  const span = now - c.proxySecondMs;
  if (span < 1000) return;
  const unanswered = ((c.proxySecondSynAcks - c.proxySecondAccepted) * 1000) / span;
  c.proxySecondMs = now;
  c.proxySecondSynAcks = 0;
  c.proxySecondAccepted = 0;
  if (unanswered >= SYNPROXY_AUTO_OFF_UNANSWERED_PER_SEC) {
    c.proxyQuietSinceMs = now;
    return;
  }
  if (now - c.proxyQuietSinceMs >= SYNPROXY_AUTO_OFF_MS && c.halfOpen < SYNPROXY_AUTO_ON_HALF_OPEN / 2) {
    c.proxyAuto = false;
    c.counters[C_SYNPROXY_AUTO_ON] = 0;
  }
}
