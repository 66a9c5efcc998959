/**
 * TCP session states of a FULLNAT session and their transitions.
 *
 * tunvs sees both halves of every connection (client ↔ LB, LB ↔ real server), so it tracks
 * one state per session from the flags of packets in each direction. The names and default
 * timeouts are the DPVS/Alibaba LVS ones, so operators read familiar values; the transition
 * rules are tunvs's own and are listed in full below (no flag combination is left out).
 *
 *   client SYN          NONE → SYN_RECV            (a new session)
 *   RS SYN+ACK          SYN_RECV → SYNACK
 *   client ACK          SYNACK → ESTABLISHED
 *   client FIN          ESTABLISHED/SYN_RECV/SYNACK → FIN_WAIT,  CLOSE_WAIT → LAST_ACK
 *   RS FIN              ESTABLISHED/SYN_RECV/SYNACK → CLOSE_WAIT, FIN_WAIT → LAST_ACK
 *   ACK after both FINs LAST_ACK → TIME_WAIT, once each side has acknowledged the
 *                       other's FIN (nat/session.ts finsAcked: until then data or a FIN
 *                       may still be in flight, retransmitted)
 *   RST either way      any → CLOSE
 *
 * UDP sessions have the single state UDP.
 *
 * A packet restarts its session's timeout: the state's (TIMEOUTS_DEFAULT_SEC), except in a
 * closing connection (FIN_WAIT, CLOSE_WAIT, LAST_ACK), where data is timed as ESTABLISHED and
 * no packet shortens the timer, a FIN included (nat/session.ts restartTimeout): the short
 * closing timeouts are for a connection gone quiet, not for the tail of a transfer that one
 * side's shutdown(SHUT_WR) left running, or the last segments and FIN of one still being
 * retransmitted.
 *
 * In a cluster a node may see one direction of a flow only (ECMP moved the client's packets to
 * it while the replies still go to the owner of the local address): it never sees the acks
 * that end LAST_ACK, and its copy lives out the timer of the flow's last data (at most the
 * ESTABLISHED timeout). That is bounded, and a client that reuses the port meanwhile is not
 * caught by it: a lone SYN on any closing session starts a new one (isEnding).
 *
 * In the modes whose replies skip the LB (TUNNEL; nat/modes/) only the client's flags are
 * seen, and a session follows them alone (nextStateInputOnly, as LVS's input-only table):
 *
 *   client SYN          NONE → SYN_RECV
 *   client ACK          SYN_RECV → ESTABLISHED
 *   client FIN          ESTABLISHED/SYN_RECV → FIN_WAIT (kept alive by the client's ACKs
 *                       while the server still sends: an ack that moves by more than a FIN
 *                       times it as ESTABLISHED, nat/modes/client_side.ts clientOnlyState)
 *   client RST          any → CLOSE
 */

export const S_NONE = 0;
export const S_ESTABLISHED = 1;
export const S_SYN_SENT = 2;
export const S_SYN_RECV = 3;
export const S_FIN_WAIT = 4;
export const S_TIME_WAIT = 5;
export const S_CLOSE = 6;
export const S_CLOSE_WAIT = 7;
export const S_LAST_ACK = 8;
export const S_LISTEN = 9;
export const S_SYNACK = 10;
export const S_UDP = 11;
export const STATE_COUNT = 12;

export const STATE_NAMES: readonly string[] = [
  'NONE',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'SYNACK',
  'UDP',
];

/** Timeouts in seconds, per state. Defaults are DPVS's (and Alibaba LVS's). */
export interface TimeoutsSec {
  none: number;
  established: number;
  synSent: number;
  synRecv: number;
  finWait: number;
  timeWait: number;
  close: number;
  closeWait: number;
  lastAck: number;
  listen: number;
  synack: number;
  udp: number;
}

export const TIMEOUTS_DEFAULT_SEC: Readonly<TimeoutsSec> = {
  none: 2,
  established: 90,
  synSent: 3,
  synRecv: 30,
  finWait: 7,
  timeWait: 7,
  close: 3,
  closeWait: 7,
  lastAck: 7,
  listen: 120,
  synack: 30,
  udp: 300,
};

/** Timeouts per state in timer ticks, indexed by state. */
export function timeoutTicks(t: TimeoutsSec, tickMs: number): Int32Array {
  const sec = [
    t.none,
    t.established,
    t.synSent,
    t.synRecv,
    t.finWait,
    t.timeWait,
    t.close,
    t.closeWait,
    t.lastAck,
    t.listen,
    t.synack,
    t.udp,
  ];
  const out = new Int32Array(STATE_COUNT);
  for (let s = 0; s < STATE_COUNT; s++) out[s] = secondsToTicks(sec[s]!, tickMs);
  return out;
}

/** A timeout in whole timer ticks (at least one). */
export function secondsToTicks(sec: number, tickMs: number): number {
  return Math.max(1, Math.ceil((sec * 1000) / tickMs));
}

/** Sessions in these states count as "active" (ipvsadm's ActiveConn); all others inactive. */
export function isActiveState(state: number): boolean {
  return state === S_ESTABLISHED;
}

/** The client's handshake is not done: the SYN was seen (and perhaps the server's SYN-ACK),
 * the client's ACK not yet. A SYN flood piles these up (synProxy auto counts them). */
export function isHalfOpen(state: number): boolean {
  return state === S_SYN_RECV || state === S_SYNACK;
}

/** A FIN seen and not both acknowledged: the open side may still send for as long as it
 * likes (a download after the client's shutdown(SHUT_WR), an echo's tail), and either side's
 * last segments and FIN may still be on their way, retransmitted. */
export function isClosing(state: number): boolean {
  return state === S_FIN_WAIT || state === S_CLOSE_WAIT || state === S_LAST_ACK;
}

/** A FIN or an RST seen: a lone SYN on the tuple is a new connection, since the client's old
 * socket is gone (a client does not reuse the ports of a connection it still holds). */
export function isEnding(state: number): boolean {
  return isClosing(state) || state === S_TIME_WAIT || state === S_CLOSE;
}

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const ACK = 0x10;

/** Next state after a packet from the client with TCP `flags`. */
export function nextStateInbound(state: number, flags: number): number {
  if ((flags & RST) !== 0) return S_CLOSE;
  if ((flags & SYN) !== 0) return state === S_NONE ? S_SYN_RECV : state;
  if ((flags & FIN) !== 0) {
    if (state === S_ESTABLISHED || state === S_SYN_RECV || state === S_SYNACK) return S_FIN_WAIT;
    if (state === S_CLOSE_WAIT) return S_LAST_ACK;
    return state;
  }
  if ((flags & ACK) !== 0) {
    if (state === S_SYNACK) return S_ESTABLISHED;
    if (state === S_LAST_ACK) return S_TIME_WAIT;
  }
  return state;
}

/** Next state after a packet from the real server with TCP `flags`. */
export function nextStateOutbound(state: number, flags: number): number {
  if ((flags & RST) !== 0) return S_CLOSE;
  if ((flags & SYN) !== 0) return state === S_SYN_RECV ? S_SYNACK : state;
  if ((flags & FIN) !== 0) {
    if (state === S_ESTABLISHED || state === S_SYN_RECV || state === S_SYNACK) return S_CLOSE_WAIT;
    if (state === S_FIN_WAIT) return S_LAST_ACK;
    return state;
  }
  if ((flags & ACK) !== 0 && state === S_LAST_ACK) return S_TIME_WAIT;
  return state;
}

/** Next state after a packet from the client with TCP `flags`, when the server's packets
 * never pass the LB. */
export function nextStateInputOnly(state: number, flags: number): number {
  if ((flags & RST) !== 0) return S_CLOSE;
  if ((flags & SYN) !== 0) return state === S_NONE ? S_SYN_RECV : state;
  if ((flags & FIN) !== 0) return state === S_ESTABLISHED || state === S_SYN_RECV ? S_FIN_WAIT : state;
  if ((flags & ACK) !== 0 && state === S_SYN_RECV) return S_ESTABLISHED;
  return state;
}

/**
 * A session that follows the client alone (TUNNEL, DR) in FIN_WAIT, whose client has
 * acknowledged nothing of the server's since its own FIN but the server's FIN (`cliAck`: the
 * client's latest ack, `finAck`: the ack its FIN carried): closed, or half-closed with the
 * server silent so far, which its owner times with FIN_WAIT's short timeout
 * (nat/modes/client_side.ts clientOnlyState) and a peer's copy too (ha/session_sync.ts).
 * False when not known (`finAck` 0: no FIN ack recorded, as in a copy from a format-2 node).
 */
export function quietSinceFin(cliAck: number, finAck: number): boolean {
  return finAck !== 0 && ((cliAck - finAck) | 0) <= 1;
}
