/**
 * The session record and the shard memory layout: the one place that says where every
 * field lives. Both sides of a thread boundary import it (the owner worker writes; the main
 * thread reads for `tunvs conns` and stats; HA sync reads and installs records).
 *
 * A shard is one SharedArrayBuffer:
 *
 *   +-----------+---------------------+-------------------+-------------------------------+
 *   | header    | index               | wheel heads       | records                       |
 *   | 16 × i32  | indexSlots × i32    | WHEEL_SLOTS × i32 | capacity × RECORD_WORDS × i32 |
 *   +-----------+---------------------+-------------------+-------------------------------+
 *
 * Session record, RECORD_WORDS = 48 int32 words (192 bytes), three cache lines. Everything
 * an IPv4 packet of a plain session reads or writes on the forwarding path is in the first
 * line, so an IPv4 lookup costs one record cache miss; IPv6 address words and the rarely
 * used timer links live in the second; the third holds what only sessions made by the SYN
 * proxy use per packet (nat/synproxy.ts), the persistence template, and room for what is to
 * come.
 *
 *   line 1 (words 0–15): the hot path
 *   word  0  META        proto (bits 0–7) | af (8–15) | state (16–23) | flags (24–28) |
 *                        forwarding mode (29–30, recMode: nat/modes/)
 *   words 1–3  IN key    cport<<16|vport, cip0, vip0
 *   words 4–6  OUT key   rport<<16|lport, rip0, lip0  (NAT, TUNNEL, DR: the client's port
 *                        and address stand for lport and lip; only FULLNAT and NAT index it)
 *   word  7  SVC_RS      owner node (bits 26–31) | service id (16–25) | real-server id (0–15):
 *                        svcRsWord() builds it, recService/recServer/recOwner read it
 *   word  8  SEQ_DELTA   LB ISN − client ISN: inbound seq += delta, outbound ack −= delta
 *   word  9  RS_ISN1     real server ISN + 1: the ack (RS space) that marks packets that carry
 *                        TOA while FLAG_TOA_OPEN is set (0 until the server's SYN-ACK)
 *   word 10  TS_DELTA    LB timestamp clock − client TSval: inbound TSval += it, outbound
 *                        TSecr −= it (0: timestamps pass as they are)
 *   word 11  CLI_ACK     last ack from the client, as the client sent it
 *   word 12  SRV_DELTA   SYN proxy: the ISN the client was given (the cookie) − the real
 *                        server's ISN: outbound seq += it, inbound ack −= it (0 otherwise)
 *   word 13  RS_ACK      last ack from the real server (LB space: client seq + delta)
 *   word 14  EXPIRE      tick at which the session expires (moved forward lazily per packet)
 *   word 15  SCHED       tick of the wheel slot the record is linked in
 *
 *   line 2 (words 16–31): IPv6 and bookkeeping
 *   words 16–21 IN key   cip1, vip1, cip2, vip2, cip3, vip3      (IPv6 only)
 *   words 22–27 OUT key  rip1, lip1, rip2, lip2, rip3, lip3      (IPv6 only)
 *   word 28  TIMER_PREV  timer-wheel list links (record ids, −1 = none)
 *   word 29  TIMER_NEXT  (also the free-list link of a free record)
 *   word 30  CREATED     tick the session was created (HA: sync only after it lived a while)
 *   word 31  SYNC        reserved for HA sync bookkeeping
 *
 *   line 3 (words 32–47): SYN proxy (FLAG_PROXIED sessions only), persistence
 *   word 32  SRV_TS_DELTA  TSval the client was given − the real server's TSval: outbound
 *                          TSval += it, inbound TSecr −= it. Before the server answers: the
 *                          TSval the client was given (its ACK echoed it).
 *   word 33  PROXY_OPTS    what was negotiated with each side (proxyOpts* accessors below)
 *   word 34  SYN_TSVAL     TSval of the SYN the LB sent the real server (its ACK repeats it)
 *   word 35  HOLD          first held client segment while the server has not answered
 *                          (nat/hold.ts: slot + 1; 0: none)
 *   word 36  PROXY_TRIES   SYNs sent to the real server so far
 *   word 37  CLI_WIN       the window of the client's handshake ACK (for the server's ACK)
 *   word 38  TEMPLATE      persistence: the template the session was made through
 *                          (conn/templates.ts slot + 1; 0: none) — its end releases it
 *   word 39  CLI_FIN_ACK   the real server's ack that covers the client's FIN (LB space;
 *                          0: no FIN seen). LAST_ACK ends only when both FINs are acked.
 *                          TUNNEL, DR (the server's packets skip the LB): the ack the
 *                          client's FIN carried (conn/state.ts quietSinceFin).
 *   word 40  SRV_FIN_ACK   the client's ack that covers the server's FIN (the server's
 *                          sequence as the client sees it; 0: no FIN seen). Words 39–40
 *                          travel in HA sync records from format 3 on.
 *   word 41  RESET         1: the LB ended the session with RSTs (a health check's
 *                          resetOnDown, or rstOnExpire). It stays in CLOSE for the close
 *                          timeout and answers each packet of either end with an RST at the
 *                          sequence number the packet's ack names (nat/rst.ts answerReset):
 *                          the first RSTs carry the acks the LB last saw, which an end with
 *                          data in flight takes for a blind reset (RFC 5961) and answers
 *                          with a challenge ACK.
 *   words 42–47           unused
 *
 * A lookup key built from a packet is [af<<8|proto, sport<<16|dport, src0, dst0, src1,
 * dst1, src2, dst2, src3, dst3]: its words 1–3 compare with a record's low key block
 * (IN or OUT) and words 4–9 with the matching high block. Addresses are interleaved (src,
 * dst) so IPv4 uses key words 0–3 only. IPv4 address words 1–3 are 0.
 */

export const RECORD_WORDS = 48;
export const RECORD_BYTES = RECORD_WORDS * 4;

export const R_META = 0;
export const R_IN = 1; // IN key, low block (3 words)
export const R_IN_PORTS = 1;
export const R_CIP0 = 2;
export const R_VIP0 = 3;
export const R_OUT = 4; // OUT key, low block (3 words)
export const R_OUT_PORTS = 4;
export const R_RIP0 = 5;
export const R_LIP0 = 6;
export const R_SVC_RS = 7;
export const R_SEQ_DELTA = 8;
export const R_RS_ISN1 = 9;
export const R_TS_DELTA = 10;
export const R_CLI_ACK = 11;
export const R_SRV_DELTA = 12;
export const R_RS_ACK = 13;
export const R_EXPIRE = 14;
export const R_SCHED = 15;
export const R_IN_HI = 16; // IN key, high block (6 words, IPv6)
export const R_CIP1 = 16;
export const R_VIP1 = 17;
export const R_OUT_HI = 22; // OUT key, high block (6 words, IPv6)
export const R_RIP1 = 22;
export const R_LIP1 = 23;
export const R_TIMER_PREV = 28;
export const R_TIMER_NEXT = 29;
export const R_CREATED = 30;
export const R_SYNC = 31;
export const R_SRV_TS_DELTA = 32;
export const R_PROXY_OPTS = 33;
export const R_SYN_TSVAL = 34;
export const R_HOLD = 35;
export const R_PROXY_TRIES = 36;
export const R_CLI_WIN = 37;
export const R_TEMPLATE = 38;
export const R_CLI_FIN_ACK = 39;
export const R_SRV_FIN_ACK = 40;
export const R_RESET = 41;
/** First word of the second and third cache lines. */
export const R_LINE2 = 16;
export const R_LINE3 = 32;

/**
 * SVC_RS word bits. The owner is the HA node that publishes the session and answers for its
 * expiry: 0 on the node that owns it (every session a node creates), the peer's node id
 * (1..NODE_ID_MAX) on a copy installed from that peer (ha/session_sync.ts). A node that
 * takes a peer's sessions over (a pair's new master, a cluster node taking a dead peer's
 * local addresses) sets it back to 0.
 *
 *    31      26 25        16 15              0
 *   +----------+------------+----------------+
 *   |  owner   | service id | real-server id |
 *   +----------+------------+----------------+
 */
export const SVC_SHIFT = 16;
export const SVC_MASK = 0x3ff;
export const RS_MASK = 0xffff;
export const OWNER_SHIFT = 26;
export const OWNER_MASK = 0x3f;

export function svcRsWord(svc: number, rsId: number, owner: number): number {
  return (owner << OWNER_SHIFT) | (svc << SVC_SHIFT) | rsId;
}
export function recService(rec: Int32Array, base: number): number {
  return (rec[base + R_SVC_RS]! >>> SVC_SHIFT) & SVC_MASK;
}
export function recServer(rec: Int32Array, base: number): number {
  return rec[base + R_SVC_RS]! & RS_MASK;
}
/** 0: this node owns the session; else the id of the peer it was installed from. */
export function recOwner(rec: Int32Array, base: number): number {
  return rec[base + R_SVC_RS]! >>> OWNER_SHIFT;
}
export function setRecOwner(rec: Int32Array, base: number, owner: number): void {
  rec[base + R_SVC_RS] = (rec[base + R_SVC_RS]! & ~(OWNER_MASK << OWNER_SHIFT)) | (owner << OWNER_SHIFT);
}

/** Key words after META: ports + 4 address pairs. */
export const KEY_BLOCK_WORDS = 9;
/** Key words in the low (line 1) block; the rest (IPv6) are in the high block. */
export const KEY_LO_WORDS = 3;
/** Lookup key: META low 16 bits (af << 8 | proto) followed by the key words. */
export const KEY_WORDS = 1 + KEY_BLOCK_WORDS;

/** Record word of address word k (0–3) for an address whose word 0 is at `w0` and whose
 * words 1–3 are at `hi`, `hi + 2`, `hi + 4` (the interleaved high block). */
export function addrWord(w0: number, hi: number, k: number): number {
  return k === 0 ? w0 : hi + 2 * (k - 1);
}

export const META_KEY_MASK = 0xffff;
export const META_STATE_SHIFT = 16;
export const META_FLAGS_SHIFT = 24;

/** Flag: TOA is still owed. Set when the real server's SYN-ACK is seen (RS_ISN1 is valid
 * from then on); cleared when the server first acknowledges a client byte past the
 * handshake, because its socket exists by then and every TOA reader has had its packet
 * (nat/fullnat_out.ts). While set, client packets acking RS_ISN1 carry TOA. */
export const FLAG_TOA_OPEN = 1 << 0;
/** Flag: the session counts as active in its real server's counters. */
export const FLAG_COUNTED_ACTIVE = 1 << 1;
/** Flag: the session was installed by HA sync rather than created here. */
export const FLAG_SYNCED = 1 << 2;
/** Flag: a peer's copy that the peer's snapshot being reloaded has not confirmed yet
 * (ha/follower.ts): what is still stale after the reload is gone from the peer. */
export const FLAG_STALE = 1 << 3;
/** Flag: the SYN proxy answered the client's handshake (nat/synproxy.ts): the real server's
 * sequence and timestamp spaces differ from what the client was given (SRV_DELTA, line 3). */
export const FLAG_PROXIED = 1 << 4;

/** Flag: not a session but a persistence template (conn/templates.ts) travelling as an HA
 * sync record (ha/session_sync.ts publishTemplate); never set in a session table. */
export const FLAG_TEMPLATE = 1 << 7;

/** META bits 29–30: the session's forwarding mode (MODE_* of nat/modes/mode.ts), set at
 * creation and never changed, so a service's mode can change while its sessions run. */
export const META_MODE_SHIFT = 29;
export const META_MODE_MASK = 3;
/** The same bits within the flags byte (HA sync carries them with the flags). */
export const FLAGS_MODE_BITS = META_MODE_MASK << (META_MODE_SHIFT - META_FLAGS_SHIFT);
export function recMode(rec: Int32Array, base: number): number {
  return (rec[base + R_META]! >>> META_MODE_SHIFT) & META_MODE_MASK;
}

/**
 * PROXY_OPTS word: the options of a proxied session's two handshakes. A window scale of 15
 * means "none" (scaling is off unless both ends of a handshake sent one).
 *
 *    31            16 15   14   13   12 11     8 7      4 3      0
 *   +----------------+----+----+----+--+--------+--------+--------+
 *   | client MSS     |    |ecn |ts  |sk| server | LB ws  | client |
 *   |                |    |    |    |  | ws     | given  | ws     |
 *   +----------------+----+----+----+--+--------+--------+--------+
 */
export const WS_NONE = 15;
export function proxyOptsWord(
  mss: number,
  clientWs: number,
  lbWs: number,
  sack: boolean,
  ts: boolean,
  ecn: boolean,
): number {
  return (
    (mss << 16) |
    (ecn ? 1 << 14 : 0) |
    (ts ? 1 << 13 : 0) |
    (sack ? 1 << 12 : 0) |
    (WS_NONE << 8) |
    (lbWs << 4) |
    clientWs
  );
}
export function proxyClientWs(w: number): number {
  return w & 15;
}
export function proxyLbWs(w: number): number {
  return (w >>> 4) & 15;
}
export function proxyServerWs(w: number): number {
  return (w >>> 8) & 15;
}
export function withProxyServerWs(w: number, ws: number): number {
  return (w & ~(15 << 8)) | (ws << 8);
}
export function proxySack(w: number): boolean {
  return (w & (1 << 12)) !== 0;
}
export function proxyTs(w: number): boolean {
  return (w & (1 << 13)) !== 0;
}
export function proxyEcn(w: number): boolean {
  return (w & (1 << 14)) !== 0;
}
export function proxyMss(w: number): number {
  return w >>> 16;
}

/** Index entry direction bit: 0 = IN key (client side), 1 = OUT key (real-server side). */
export const DIR_IN = 0;
export const DIR_OUT = 1;

/** Shard header words. */
export const H_CAPACITY = 0;
export const H_INDEX_SLOTS = 1;
export const H_LIVE = 2;
export const H_FREE_HEAD = 3;
export const H_FRESH = 4; // records never used yet start here
export const H_TICK = 5; // last tick fully processed by the wheel
export const H_CURSOR = 6; // tick being processed when a budget ran out (−1: none)
export const H_TIMER_TICK_MS = 7;
export const HEADER_WORDS = 16;

export function metaKey(af: number, proto: number): number {
  return (af << 8) | proto;
}
