/**
 * Client → VIP packets, every forwarding mode: find the session, or make one, and hand the
 * packet to the session's mode (modes/).
 *
 *   1. natInbound      look the flow up by its IN key (client, VIP, ports); a lone SYN
 *                      (or any UDP packet) without a session creates one in the service's
 *                      mode — or, with the service's SYN proxy on, is answered with a cookie
 *                      (synproxy.ts), and the client's ACK with a valid cookie creates it; a
 *                      SYN on a session in TIME_WAIT/CLOSE ends it and starts a new one.
 *      sloppySession   a sloppy service's mid-connection client packet without a session
 *                      makes one, to the server the scheduler picks from the client address
 *      startTimestamps a new session's real server sees the LB's timestamp clock
 *      onePacket       a one-packet service's datagram: a session of its own, ended at once
 *                      where no reply comes back through the LB
 *   2. mode.inbound    the rewrite (FULLNAT and NAT: fullnat_in.ts; TUNNEL: tunnel.ts)
 */

import { R_TS_DELTA, recMode, RECORD_WORDS, DIR_IN } from '../conn/layout.js';
import { isEnding, S_ESTABLISHED, S_NONE, S_UDP } from '../conn/state.js';
import { C_SESSIONS_REUSED, C_SESSIONS_SLOPPY } from '../dataplane/counters.js';
import { IPPROTO_TCP, TCP_ACKF, TCP_FIN, TCP_RST, TCP_SEQ, TCP_SYN } from '../packet/headers.js';
import { SYNPROXY_OFF } from '../service/service.js';
import type { NatContext } from './context.js';
import { createSession, endSession, setState, stateOf } from './session.js';
import { scanPacketOptions } from './toa.js';
import { isWaiting, proxyAck, proxyActive, proxySyn, proxyWaitInbound } from './synproxy.js';
import { DROP_BAD_TCP_OPTIONS, DROP_NO_SERVICE, DROP_NO_SESSION } from './verdict.js';

/**
 * Client → VIP packet of service `svc`; `hash` is the hash of its IN key (the engine
 * computes it ahead, in its prefetch pass). Returns the new packet length, or −reason.
 */
export function natInbound(c: NatContext, svc: number, hash: number): number {
  const table = c.table;
  const key = c.key;
  const blockWords = c.fillKey(key);
  let r = table.find(key, blockWords, DIR_IN, hash);
  const tcp = c.pProto === IPPROTO_TCP;
  // Validate the options before any session work: a malformed SYN must not create one.
  const n = tcp ? scanPacketOptions(c) : 0;
  if (n < 0) return -DROP_BAD_TCP_OPTIONS;
  const lone = tcp && (c.pFlags & (TCP_SYN | TCP_ACKF | TCP_RST | TCP_FIN)) === TCP_SYN;
  if (r >= 0 && lone) {
    // A new connection on the tuple of one that is closing: end the old session and let
    // this SYN pick a real server, a local port and an ISN afresh. Not only TIME_WAIT: a
    // closing session may outlive what this node saw of its end (the other direction's FIN
    // reached another cluster node; a half-closed one keeps its timer, nat/session.ts).
    const st = stateOf(table.rec, r * RECORD_WORDS);
    if (isEnding(st)) {
      endSession(c, r);
      c.counters[C_SESSIONS_REUSED] = c.counters[C_SESSIONS_REUSED]! + 1;
      r = -1;
    }
  }
  if (r < 0) {
    // A removed service (service.ts apply): its sessions run to their end, no new ones.
    if (c.services.alive[svc] === 0) return -DROP_NO_SERVICE;
    if (tcp && !lone) {
      // The handshake's last ACK of a connection the SYN proxy answered (also after the
      // proxy switched off again, or on another node of the pair or cluster).
      if (c.services.synProxy[svc] !== SYNPROXY_OFF && (c.pFlags & (TCP_SYN | TCP_RST)) === 0)
        return proxyAck(c, svc, hash, blockWords);
      if (c.services.sloppy[svc] === 0 || (c.pFlags & (TCP_SYN | TCP_RST | TCP_ACKF)) !== TCP_ACKF)
        return -DROP_NO_SESSION;
      r = sloppySession(c, svc, hash, blockWords);
      if (r < 0) return r;
      return c.modes[recMode(table.rec, r * RECORD_WORDS)]!.inbound(c, r, n);
    }
    if (tcp && proxyActive(c, svc)) return proxySyn(c, svc, blockWords, n);
    const refused = c.services.admit(svc, c.pS0, c.pS1, c.pS2, c.pS3, c.nowMs);
    if (refused !== 0) return -refused;
    r = createSession(c, svc, hash, blockWords, tcp ? S_NONE : S_UDP, tcp ? c.dv.getInt32(c.pL4 + TCP_SEQ) : 0);
    if (r < 0) return r;
    if (tcp && c.services.translateTs[svc] === 1) startTimestamps(c, r);
    else if (c.services.onePacket[svc] === 1) return onePacket(c, r);
  } else if (tcp && isWaiting(table.rec, r * RECORD_WORDS) && (c.pFlags & TCP_RST) === 0) {
    return proxyWaitInbound(c, r, n);
  }
  return c.modes[recMode(table.rec, r * RECORD_WORDS)]!.inbound(c, r, n);
}

/**
 * Sloppy TCP (ServiceSpec.sloppy): the client's ACK of a connection this LB has no session
 * for (it began on another node, or before a restart, and was not synced). The service's
 * scheduler (sh or mh: config) picks from the client address alone, so this is the server
 * its SYN went to while the pool is the same. The session starts ESTABLISHED; the packet's
 * own flags move it on (a FIN: FIN_WAIT). HA publishes it as it would a new connection.
 */
function sloppySession(c: NatContext, svc: number, hash: number, blockWords: number): number {
  const refused = c.services.admit(svc, c.pS0, c.pS1, c.pS2, c.pS3, c.nowMs);
  if (refused !== 0) return -refused;
  const r = createSession(c, svc, hash, blockWords, S_NONE, 0);
  if (r < 0) return r;
  const base = r * RECORD_WORDS;
  setState(c, base, S_ESTABLISHED);
  c.sync?.onPacket(base, true, S_ESTABLISHED, c.tick);
  c.counters[C_SESSIONS_SLOPPY] = c.counters[C_SESSIONS_SLOPPY]! + 1;
  return r;
}

/**
 * A datagram of a one-packet service (ServiceSpec.onePacket) through its own new session,
 * which no later datagram finds (NAT: its client socket's with the server, nat/session.ts
 * sharedNatSession). A mode whose replies skip the LB (TUNNEL, DR) has no use for it after
 * this packet: it ends here. FULLNAT's waits for the reply (nat/outbound.ts ends it), NAT's
 * for its replies.
 */
function onePacket(c: NatContext, r: number): number {
  const mode = c.modes[recMode(c.table.rec, r * RECORD_WORDS)]!;
  const len = mode.inbound(c, r, 0);
  if (!mode.twoWay) endSession(c, r);
  return len;
}

/** A new session's SYN carries a timestamp: the real server will see the LB's clock. */
function startTimestamps(c: NatContext, r: number): void {
  const o = c.optTs;
  if (o < 0) return;
  const rec = c.table.rec;
  rec[r * RECORD_WORDS + R_TS_DELTA] = (c.isn.tsClock(c.nowMs) - c.dv.getInt32(o + 2)) | 0;
}
