/**
 * Session life cycle on the data plane: create (schedule a real server, or follow the
 * client's persistence template to one; the forwarding
 * mode takes a local address and port and picks the ISN, or whatever it needs), change state (keeping the real server's active and
 * inactive counts right for lc/wlc and `tunvs list`), time out (timeoutOf: the service's
 * idleTimeout for an idle connection), and end (endSession, or the timer wheel).
 */

import {
  DIR_IN,
  DIR_OUT,
  FLAG_COUNTED_ACTIVE,
  META_FLAGS_SHIFT,
  META_MODE_SHIFT,
  META_STATE_SHIFT,
  R_CLI_FIN_ACK,
  R_CREATED,
  R_META,
  R_SRV_FIN_ACK,
  R_SVC_RS,
  R_TEMPLATE,
  recServer,
  recService,
  svcRsWord,
  RECORD_WORDS,
} from '../conn/layout.js';
import { isActiveState, isClosing, isHalfOpen, S_ESTABLISHED, S_UDP } from '../conn/state.js';
import {
  C_PERSISTENCE_HITS,
  C_PERSISTENCE_TABLE_FULL,
  C_PERSISTENCE_TEMPLATES,
  C_SESSIONS_CREATED,
  C_SESSIONS_EXPIRED,
  RS_BASE,
  RS_FIELDS,
  RS_SESSIONS,
} from '../dataplane/counters.js';
import { ALL_PORTS } from '../constants.js';
import { TCP_FIN } from '../packet/headers.js';
import type { NatContext } from './context.js';
import { DROP_NAT_TUPLE_TAKEN, DROP_NO_REAL_SERVER, DROP_SERVER_OVERLOADED, DROP_TABLE_FULL } from './verdict.js';
import type { ServerPool } from '../service/sched/scheduler.js';
import { ANY_PORT } from '../service/service.js';

/** Hash of the client address for sh/mh: fixed seed, so both LBs of a pair agree. */
export function clientAddressHash(a0: number, a1: number, a2: number, a3: number): number {
  let h = Math.imul(a0 ^ 0x3c6ef372, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ a1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ a2, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ a3, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** What service `svc`'s scheduler hashes for the parsed client: its address, and with
 * hashPort its port too (sh-port: one address's connections spread over the servers). */
function clientHash(c: NatContext, svc: number): number {
  const h = clientAddressHash(c.pS0, c.pS1, c.pS2, c.pS3);
  if (c.services.hashPort[svc] === 0) return h;
  const p = Math.imul(h ^ c.pSport, 0x85ebca6b);
  return p ^ (p >>> 13);
}

export function stateOf(rec: Int32Array, base: number): number {
  return (rec[base + R_META]! >>> META_STATE_SHIFT) & 0xff;
}

/** Why the scheduler found no server: some are over their session cap, or none is up. */
function noServer(pool: ServerPool): number {
  return pool.overloaded.includes(1) ? DROP_SERVER_OVERLOADED : DROP_NO_REAL_SERVER;
}

/**
 * Create a session for the parsed first packet of a flow to service `svc`. `c.key` holds
 * its IN key with hash `hashIn`. Returns the record id, or −reason.
 * The new session is in state `state` (NONE for TCP: the SYN's own transition follows);
 * TCP: the client's ISN is `clientIsn`. The service's forwarding mode fills in the local
 * half of the OUT key and what else it needs (modes/mode.ts create).
 */
export function createSession(
  c: NatContext,
  svc: number,
  hashIn: number,
  blockWords: number,
  state: number,
  clientIsn: number,
): number {
  const s = c.services;
  let rsId: number;
  c.templateSlot = -1;
  if (s.persistSec[svc] !== 0 && c.templates !== null) {
    rsId = persistentServer(c, svc);
    if (rsId < 0) return -noServer(s.pools[svc]!);
  } else {
    const pos = s.schedulers[svc]!.pick(clientHash(c, svc));
    if (pos < 0) return -noServer(s.pools[svc]!);
    rsId = s.pools[svc]!.ids[pos]!;
  }
  const table = c.table;
  const r = table.alloc();
  if (r < 0) {
    unbindTemplate(c);
    return -DROP_TABLE_FULL;
  }
  const ok = c.okey;
  const key = c.key;
  const a = rsId * 4;
  ok[0] = key[0]!;
  // A server of an all-ports service (port 0) takes the port the client asked for.
  const rport = s.rsPort[rsId]!;
  ok[1] = (rport !== ALL_PORTS ? rport : c.pDport) << 16;
  ok[2] = s.rsAddr[a]!;
  ok[4] = s.rsAddr[a + 1]!;
  ok[6] = s.rsAddr[a + 2]!;
  ok[8] = s.rsAddr[a + 3]!;
  const mode = c.modes[s.mode[svc]!]!;
  const why = mode.create(c, svc, r, ok, blockWords, clientIsn);
  if (why !== 0) {
    table.release(r);
    unbindTemplate(c);
    return why === DROP_NAT_TUPLE_TAKEN && s.onePacket[svc] === 1 ? sharedNatSession(c, svc, ok, blockWords) : -why;
  }
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  rec[base + R_TEMPLATE] = c.templateSlot + 1;
  rec[base + R_META] = key[0]! | (state << META_STATE_SHIFT) | (mode.id << META_MODE_SHIFT);
  table.setKey(r, DIR_IN, key);
  table.setKey(r, DIR_OUT, ok);
  rec[base + R_SVC_RS] = svcRsWord(svc, rsId, 0);
  rec[base + R_CREATED] = c.tick;
  // A one-packet service's datagram: no later datagram finds this session (each is scheduled
  // on its own); only the server's reply does, by the OUT key.
  if (s.onePacket[svc] === 0) table.insert(r, DIR_IN, hashIn);
  if (mode.twoWay) table.insert(r, DIR_OUT, c.outHash);
  table.schedule(r, c.tick + timeoutOf(c, base, state));
  c.counts.inactive[rsId] = c.counts.inactive[rsId]! + 1;
  c.counters[C_SESSIONS_CREATED] = c.counters[C_SESSIONS_CREATED]! + 1;
  const rsc = RS_BASE + rsId * RS_FIELDS + RS_SESSIONS;
  c.counters[rsc] = c.counters[rsc]! + 1;
  return r;
}

/**
 * A one-packet NAT datagram to a server its client socket already has a session with (OUT key
 * `ok`, hashed by the NAT create into c.outHash: the server and the client's own address and
 * port): that session carries it, since the server's replies to both are alike and one reply
 * mapping serves them. Another service's session on the tuple (the same client port to two
 * VIPs of the server) refuses it as before.
 */
function sharedNatSession(c: NatContext, svc: number, ok: Int32Array, blockWords: number): number {
  const table = c.table;
  const r = table.find(ok, blockWords, DIR_OUT, c.outHash);
  return r >= 0 && recService(table.rec, r * RECORD_WORDS) === svc ? r : -DROP_NAT_TUPLE_TAKEN;
}

/**
 * Persistence: the real server for a new session of service `svc` from the parsed client —
 * its (prefix's) live template's (a template of the service's persistence group: the server
 * at the same address), unless that server is drained, down or gone; else the
 * scheduler's, remembered in a new template. The session holds the template (c.templateSlot)
 * until it ends. −1: no real server.
 */
function persistentServer(c: NatContext, svc: number): number {
  const s = c.services;
  const t = c.templates!;
  const key = c.tkey;
  const m = svc * 4;
  key[0] = (c.pAf << 16) | s.persistKey[svc]!;
  key[1] = c.pS0 & s.persistMask[m]!;
  key[2] = c.pS1 & s.persistMask[m + 1]!;
  key[3] = c.pS2 & s.persistMask[m + 2]!;
  key[4] = c.pS3 & s.persistMask[m + 3]!;
  const now = c.nowMs;
  t.lock();
  let slot = t.find(key);
  let rsId = slot >= 0 && t.live(slot, now) ? t.rsOf(slot) : -1;
  // Another service of the persistence group made it: this one's server at that address.
  if (rsId >= 0 && s.rsService[rsId] !== svc) {
    const a = rsId * 4;
    rsId = s.serverAt(svc, s.rsAddr[a]!, s.rsAddr[a + 1]!, s.rsAddr[a + 2]!, s.rsAddr[a + 3]!, ANY_PORT);
  }
  if (rsId >= 0 && s.rsWeight[rsId]! <= 0) rsId = -1;
  if (rsId >= 0) {
    c.counters[C_PERSISTENCE_HITS] = c.counters[C_PERSISTENCE_HITS]! + 1;
  } else {
    const pos = s.schedulers[svc]!.pick(clientHash(c, svc));
    if (pos < 0) {
      t.unlock();
      return -1;
    }
    rsId = s.pools[svc]!.ids[pos]!;
    slot = t.put(key, rsId, now);
    const at = slot >= 0 ? C_PERSISTENCE_TEMPLATES : C_PERSISTENCE_TABLE_FULL;
    c.counters[at] = c.counters[at]! + 1;
  }
  if (slot >= 0) {
    t.acquire(slot, now, s.persistSec[svc]!);
    // HA: peers learn the template when it is made or moves, and again each half timeout.
    if (c.sync !== null && c.sync.active && t.duePublish(slot, now))
      c.sync.publishTemplate(s, key, rsId, s.persistSec[svc]!);
  }
  t.unlock();
  c.templateSlot = slot;
  return rsId;
}

/** The session createSession was making through a template was not made after all. */
function unbindTemplate(c: NatContext): void {
  if (c.templateSlot >= 0) c.templates!.release(c.templateSlot, c.nowMs);
  c.templateSlot = -1;
}

/** Move a session to state `to`, keeping active/inactive counts (and half-open) right. */
export function setState(c: NatContext, base: number, to: number): void {
  const rec = c.table.rec;
  const meta = rec[base + R_META]!;
  const from = (meta >>> META_STATE_SHIFT) & 0xff;
  if (isHalfOpen(from)) c.halfOpen--;
  if (isHalfOpen(to)) c.halfOpen++;
  let flags = meta >>> META_FLAGS_SHIFT;
  const wasActive = (flags & FLAG_COUNTED_ACTIVE) !== 0;
  const nowActive = isActiveState(to);
  if (wasActive !== nowActive) {
    const rsId = recServer(rec, base);
    const counts = c.counts;
    if (nowActive) {
      counts.inactive[rsId] = counts.inactive[rsId]! - 1;
      counts.active[rsId] = counts.active[rsId]! + 1;
      flags |= FLAG_COUNTED_ACTIVE;
    } else {
      counts.active[rsId] = counts.active[rsId]! - 1;
      counts.inactive[rsId] = counts.inactive[rsId]! + 1;
      flags &= ~FLAG_COUNTED_ACTIVE;
    }
  }
  rec[base + R_META] = (meta & 0xffff) | (to << META_STATE_SHIFT) | (flags << META_FLAGS_SHIFT);
}

/**
 * Restart TCP session `r`'s timeout after a packet that left it in state `ns`. In a closing
 * connection (FIN_WAIT, CLOSE_WAIT, LAST_ACK) a segment with payload and no FIN is timed as
 * ESTABLISHED, and no packet shortens the timer the session has: not the FIN that half-closes
 * it, nor the bare ACKs after it, nor the second FIN. The short closing timeouts (7 s) are for
 * a connection gone quiet, not for the tail of a transfer that one side's shutdown(SHUT_WR)
 * left running: its data may still be in flight, backing off, when a FIN arrives, and a
 * session that expired 7 s after it would drop the next retransmission and hang the
 * connection (an echo under loss did: the server in CLOSE_WAIT retransmitting every 10 s into
 * a session that was gone). A connection that goes quiet while closing lives out the timer
 * its last data gave it, at most the ESTABLISHED timeout; a normal close moves on to
 * TIME_WAIT once both FINs are acknowledged (finsAcked), with its own short timeout.
 */
export function restartTimeout(c: NatContext, r: number, ns: number): void {
  const table = c.table;
  const base = r * RECORD_WORDS;
  let expire = c.tick + timeoutOf(c, base, ns);
  if (isClosing(ns)) {
    if ((c.pFlags & TCP_FIN) === 0 && c.pEnd - c.pL4 > c.pThl) expire = Math.max(expire, c.tick + idleTicks(c, base));
    expire = Math.max(expire, table.expireOf(r));
  }
  table.setExpire(r, expire);
}

/** Ticks session `base` lives in state `st` without a packet: the service's idle timeout
 * (idleTicks) when ESTABLISHED or a UDP flow, the state's own otherwise. */
export function timeoutOf(c: NatContext, base: number, st: number): number {
  return st === S_ESTABLISHED || st === S_UDP ? idleTicks(c, base) : c.timeouts[st]!;
}

/** Ticks an idle connection (ESTABLISHED) or UDP flow of session `base`'s service lives: its
 * idleTimeout, or timeouts.established / timeouts.udp (NatContext.setIdleTimeouts). */
export function idleTicks(c: NatContext, base: number): number {
  return c.idleTicks[recService(c.table.rec, base)]!;
}

/**
 * The later of two acks of one direction (sequence-number order, mod 2^32); `had` 0 is none
 * recorded yet. A connection's recorded acks (R_CLI_ACK, R_RS_ACK) only move forward: a segment
 * that arrives late (reordered on the way or in the LB) carries an older ack, and recorded, it
 * would hold a closed connection in LAST_ACK (finsAcked no longer true when the last ACK comes:
 * the session lived out the timer of its last data, 90 s, in the soak) and put its RSTs at
 * expiry (nat/rst.ts) out of the window.
 */
export function laterAck(ack: number, had: number): number {
  return had === 0 || ((ack - had) | 0) > 0 ? ack : had;
}

/**
 * Whether each side has acknowledged the other's FIN, given the client's latest ack (as the
 * client sent it) and the real server's (LB space): LAST_ACK becomes TIME_WAIT only then. An
 * ACK before that (a duplicate ACK asking for the last data, the ACK of one FIN while the
 * other is being retransmitted) leaves the session in LAST_ACK, alive. A FIN not recorded
 * (0: a copy installed from a node of sync format 2, which does not carry these words) counts
 * as acknowledged.
 */
export function finsAcked(rec: Int32Array, base: number, cliAck: number, rsAck: number): boolean {
  const srvFin = rec[base + R_SRV_FIN_ACK]!;
  const cliFin = rec[base + R_CLI_FIN_ACK]!;
  return (srvFin === 0 || ((cliAck - srvFin) | 0) >= 0) && (cliFin === 0 || ((rsAck - cliFin) | 0) >= 0);
}

/** The ack that covers the current packet's FIN: its sequence number `seq` (in the space
 * the receiver sees), past its payload and the FIN itself. */
export function finCoverAck(c: NatContext, seq: number): number {
  return (seq + (c.pEnd - c.pL4 - c.pThl) + 1) | 0;
}

/** End session `r` now: its end published if it was, out of its server's counts and its
 * template, out of the table; counted as expired. */
export function endSession(c: NatContext, r: number): void {
  const base = r * RECORD_WORDS;
  c.sync?.onRemove(base);
  uncountSession(c, base);
  c.table.remove(r);
  c.counters[C_SESSIONS_EXPIRED] = c.counters[C_SESSIONS_EXPIRED]! + 1;
}

/** Take an ending session out of its real server's counts (before the record is freed),
 * and out of its persistence template. */
export function uncountSession(c: NatContext, base: number): void {
  if (isHalfOpen(stateOf(c.table.rec, base)) && c.halfOpen > 0) c.halfOpen--;
  const tslot = c.table.rec[base + R_TEMPLATE]!;
  if (tslot !== 0 && c.templates !== null) c.templates.release(tslot - 1, c.nowMs);
  uncountRecord(c.table.rec, base, c.counts);
}

/** The same for any shard and counts (HA sync installs and removes records too). */
export function uncountRecord(
  rec: Int32Array,
  base: number,
  counts: { readonly active: Int32Array; readonly inactive: Int32Array },
): void {
  const rsId = recServer(rec, base);
  if (((rec[base + R_META]! >>> META_FLAGS_SHIFT) & FLAG_COUNTED_ACTIVE) !== 0) {
    counts.active[rsId] = counts.active[rsId]! - 1;
  } else {
    counts.inactive[rsId] = counts.inactive[rsId]! - 1;
  }
}
