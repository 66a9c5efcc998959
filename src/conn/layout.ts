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
 * Session record, RECORD_WORDS = 32 int32 words (128 bytes):
 *
 *   word  0  META        proto (bits 0–7) | af (8–15) | state (16–23) | flags (24–31)
 *   words 1–9  IN key    cport<<16|vport, cip0, vip0, cip1, vip1, cip2, vip2, cip3, vip3
 *   words 10–18 OUT key  rport<<16|lport, rip0, lip0, rip1, lip1, rip2, lip2, rip3, lip3
 *   word 19  SVC_RS      service id << 16 | real-server id
 *   word 20  SEQ_DELTA   LB ISN − client ISN: inbound seq += delta, outbound ack −= delta
 *   word 21  RS_ISN1     real server ISN + 1: the ack that marks packets that carry TOA
 *   word 22  CLI_SEQ     last seq from the client (client space)
 *   word 23  CLI_ACK     last ack from the client (RS space)
 *   word 24  RS_SEQ      last seq from the real server (RS space)
 *   word 25  RS_ACK      last ack from the real server (LB space: client seq + delta)
 *   word 26  TIMER_PREV  timer-wheel list links (record ids, −1 = none)
 *   word 27  TIMER_NEXT  (also the free-list link of a free record)
 *   word 28  EXPIRE      tick at which the session expires (extended lazily per packet)
 *   word 29  SCHED       tick of the wheel slot the record is linked in
 *   word 30  CREATED     tick the session was created (HA: sync only after it lived a while)
 *   word 31  SYNC        reserved for HA sync bookkeeping
 *
 * The key blocks are interleaved (src0, dst0, src1, dst1, …) so that IPv4 uses the first
 * three words of a block and IPv6 all nine, and so that a lookup key built from a packet
 * (src, dst, sport<<16|dport) compares word for word against either block.
 * IPv4 addresses sit in word 0 of their pair; words 1–3 are 0.
 */

export const RECORD_WORDS = 32;
export const RECORD_BYTES = RECORD_WORDS * 4;

export const R_META = 0;
export const R_IN = 1; // IN key block start (9 words)
export const R_IN_PORTS = 1;
export const R_CIP0 = 2;
export const R_VIP0 = 3;
export const R_OUT = 10; // OUT key block start (9 words)
export const R_OUT_PORTS = 10;
export const R_RIP0 = 11;
export const R_LIP0 = 12;
export const R_SVC_RS = 19;
export const R_SEQ_DELTA = 20;
export const R_RS_ISN1 = 21;
export const R_CLI_SEQ = 22;
export const R_CLI_ACK = 23;
export const R_RS_SEQ = 24;
export const R_RS_ACK = 25;
export const R_TIMER_PREV = 26;
export const R_TIMER_NEXT = 27;
export const R_EXPIRE = 28;
export const R_SCHED = 29;
export const R_CREATED = 30;
export const R_SYNC = 31;

/** Words of a key block: ports + 4 address pairs. */
export const KEY_BLOCK_WORDS = 9;
/** Lookup key: META low 16 bits (af << 8 | proto) followed by one key block. */
export const KEY_WORDS = 1 + KEY_BLOCK_WORDS;
/** Key words that matter for IPv4 (meta, ports, src0, dst0). */
export const KEY_WORDS_V4 = 4;

export const META_KEY_MASK = 0xffff;
export const META_STATE_SHIFT = 16;
export const META_FLAGS_SHIFT = 24;

/** Flag: the real server's ISN is known (its SYN-ACK was seen): RS_ISN1 is valid. */
export const FLAG_RS_ISN_KNOWN = 1 << 0;
/** Flag: the session counts as active in its real server's counters. */
export const FLAG_COUNTED_ACTIVE = 1 << 1;
/** Flag: the session was installed by HA sync rather than created here. */
export const FLAG_SYNCED = 1 << 2;

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
