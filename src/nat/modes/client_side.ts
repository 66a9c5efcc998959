/**
 * What the modes other than FULLNAT share: the client stands where FULLNAT's local address
 * and port would (clientAsLocal), so the session's owner is the client's worker (ownerByClient);
 * and for the modes whose replies skip the LB (TUNNEL, DR) a session follows the client's
 * packets alone (clientOnlyState) and has no outbound path (noReply).
 */

import { META_STATE_SHIFT, R_CLI_ACK, R_CLI_FIN_ACK, R_META, recService, RECORD_WORDS } from '../../conn/layout.js';
import { nextStateInputOnly, quietSinceFin, S_FIN_WAIT, S_UDP } from '../../conn/state.js';
import { C_SYNC_TAKEN } from '../../dataplane/counters.js';
import { clientWorker } from '../../dataplane/shard.js';
import { IPPROTO_TCP, TCP_ACK, TCP_ACKF } from '../../packet/headers.js';
import type { NatContext } from '../context.js';
import { idleTicks, laterAck, setState, timeoutOf } from '../session.js';
import { DROP_NO_SESSION } from '../verdict.js';

/** The IN key's client address and port (c.key) as the local half of OUT key `ok`. */
export function clientAsLocal(c: NatContext, ok: Int32Array): void {
  const key = c.key;
  ok[1] = (ok[1]! & ~0xffff) | (key[1]! >>> 16);
  ok[3] = key[2]!;
  ok[5] = key[4]!;
  ok[7] = key[6]!;
  ok[9] = key[8]!;
}

/** ForwardingMode.create of a mode whose replies skip the LB: nothing but the client. */
export function createAsClient(c: NatContext, _svc: number, _r: number, ok: Int32Array): number {
  clientAsLocal(c, ok);
  return 0;
}

/** ForwardingMode.owner: the client's worker (the OUT key's low port is the client's). */
export function ownerByClient(
  a0: number,
  a1: number,
  a2: number,
  a3: number,
  outPorts: number,
  workers: number,
): number {
  return clientWorker(a0, a1, a2, a3, outPorts & 0xffff, workers);
}

/** ForwardingMode.outbound of a mode whose replies skip the LB: there is none to take. */
export function noReply(): number {
  return -DROP_NO_SESSION;
}

/**
 * A client packet of session `r` whose server's packets never pass the LB (TUNNEL, DR):
 * state by the client's flags alone, timeout, HA sync.
 *
 * After the client's FIN the server may still be sending (a download after the client's
 * shutdown(SHUT_WR)), and the LB sees that only in the client's acks. An ack that moved by
 * more than a FIN since the client's last packet means server data arrived: the session is
 * then timed as ESTABLISHED, and no packet shortens that timer, so a server that backs off
 * past FIN_WAIT's 7 s (its segments lost on the way) still finds the client's next ack
 * forwarded. A close with nothing after the client's FIN (the server's FIN alone) keeps the
 * short timeout: DR and TUNNEL sessions do not linger after a normal close, on this node or,
 * as copies, on its peers (the FIN's ack, R_CLI_FIN_ACK, travels in the sync record, and the
 * server's first data after it is published at once: conn/state.ts quietSinceFin).
 */
export function clientOnlyState(c: NatContext, r: number): void {
  const table = c.table;
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  const st = (rec[base + R_META]! >>> META_STATE_SHIFT) & 0xff;
  const tcp = c.pProto === IPPROTO_TCP;
  const ns = tcp ? nextStateInputOnly(st, c.pFlags) : S_UDP;
  if (ns !== st) setState(c, base, ns);
  let expire = c.tick + timeoutOf(c, base, ns);
  let changed = ns !== st;
  // Only after the client's FIN: its FIN records the ack the next packets are measured by.
  if (ns === S_FIN_WAIT && (c.pFlags & TCP_ACKF) !== 0) {
    const ack = c.dv.getInt32(c.pL4 + TCP_ACK);
    const last = rec[base + R_CLI_ACK]!;
    if (st === S_FIN_WAIT) {
      if (((ack - last) | 0) > 1) expire = c.tick + idleTicks(c, base);
      expire = Math.max(expire, table.expireOf(r));
      // The server's first data after the FIN: the peers' copies, timed short until now
      // (HA: session_sync.ts copyTicks), hear of it at once.
      const fin = rec[base + R_CLI_FIN_ACK]!;
      if (quietSinceFin(last, fin) && !quietSinceFin(ack, fin)) changed = true;
    } else rec[base + R_CLI_FIN_ACK] = ack;
    rec[base + R_CLI_ACK] = laterAck(ack, last);
  }
  table.setExpire(r, expire);
  // A one-packet service's datagram session ends with this packet: not published. A peer's
  // copy the client's packets now come to is this node's from now on (HA: takeByTraffic).
  if (c.sync !== null && (tcp || c.services.onePacket[recService(rec, base)] === 0)) {
    if (c.sync.takeByTraffic(base, c.tick)) c.counters[C_SYNC_TAKEN] = c.counters[C_SYNC_TAKEN]! + 1;
    else c.sync.onPacket(base, changed, ns, c.tick);
  }
}
