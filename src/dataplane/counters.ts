/**
 * Per-worker counters in a SharedArrayBuffer: the worker is the only writer, the main
 * thread reads them for `tunvs stats`, `tunvs list` and metrics. Float64 slots count
 * exactly up to 2^53 and need no BigInt on the hot path.
 *
 *   [0, GLOBAL_COUNT)                          global counters (C_* below)
 *   [DROPS_BASE, DROPS_BASE + DROP_REASON_COUNT) drops by reason (nat/verdict.ts)
 *   [RS_BASE + id × RS_FIELDS, …)              per real server (RS_* fields)
 */

import { REAL_SERVERS_MAX } from '../constants.js';
import { DROP_REASON_COUNT } from '../nat/verdict.js';

export const C_RX_PACKETS = 0;
export const C_RX_BYTES = 1;
export const C_TX_PACKETS = 2;
export const C_TX_BYTES = 3;
export const C_DROPPED = 4;
export const C_REDIRECTED = 5;
export const C_SESSIONS_CREATED = 6;
export const C_SESSIONS_EXPIRED = 7;
export const C_SESSIONS_REUSED = 8;
export const C_TOA_INSERTED = 9;
/** TOA was due but did not fit (40 option bytes or the MTU) even after pruning. */
export const C_TOA_NO_ROOM = 10;
/** TOA fitted only after pruning NOPs or SACK blocks. */
export const C_TOA_PRUNED = 11;
/** A client-supplied TOA-like option was removed (anti-spoofing). */
export const C_CLIENT_TOA_REMOVED = 12;
export const C_MSS_CLAMPED = 13;
export const C_TS_STRIPPED = 14;
export const C_ICMP_TRANSLATED = 15;
export const C_ICMP_ECHO_REPLIED = 16;
export const C_RST_SENT = 17;
/** Generated packets (RSTs) dropped because the emit ring was full. */
export const C_EMIT_FULL = 18;
export const C_PACKETS_IN = 19; // client → real server direction
export const C_PACKETS_OUT = 20; // real server → client direction
/** TOA was due on a GSO super-packet already at the 64 KiB IP limit, and was left out. */
export const C_TOA_SKIPPED_GSO = 21;
/** GSO super-packets rewritten (each stands for several wire packets). */
export const C_GSO_PACKETS = 22;
/** HA: session records installed or updated from peers' events. */
export const C_SYNC_INSTALLED = 23;
/** HA: sessions deleted on a peer's word. */
export const C_SYNC_DELETED = 24;
/** HA: events that could not be installed (no such service or real server here, the table
 * is full, or the record names no peer). */
export const C_SYNC_INSTALL_FAILED = 25;
/** HA: a peer's event about a session this node owns and publishes (it keeps its own). */
export const C_SYNC_CONFLICTS = 26;
/** HA: peers' sessions this node took over (pair promotion; a dead cluster peer's). */
export const C_SYNC_ADOPTED = 27;
/** SYN proxy: cookie SYN-ACKs sent to clients. */
export const C_SYNPROXY_SYNACKS = 28;
/** SYN proxy: client ACKs with a valid cookie (each made a session). */
export const C_SYNPROXY_ACCEPTED = 29;
/** SYN proxy: SYNs sent to real servers again (the client retransmitted, or the timer). */
export const C_SYNPROXY_SYN_RETRIES = 30;
/** SYN proxy: client segments held until the real server answered. */
export const C_SYNPROXY_HELD = 31;
/** SYN proxy: real servers that never answered (the client got an RST). */
export const C_SYNPROXY_SERVER_TIMEOUTS = 32;
/** SYN proxy, synProxy auto: 1 while this worker's proxy is on (summed: workers with it on). */
export const C_SYNPROXY_AUTO_ON = 33;
/** SYN proxy, synProxy auto: times a worker's proxy switched on. */
export const C_SYNPROXY_AUTO_SWITCHES = 34;
/** Persistence: sessions that followed a live template to its real server. */
export const C_PERSISTENCE_HITS = 35;
/** Persistence: templates made (a client's first session, or its old server unusable). */
export const C_PERSISTENCE_TEMPLATES = 36;
/** Persistence: sessions made without a template, the table being full of live ones. */
export const C_PERSISTENCE_TABLE_FULL = 37;
/** HA: older records a peer's record replaced (a stale copy, or one of ours that was closing,
 * whose local tuple or client tuple a newer connection now uses). */
export const C_SYNC_REPLACED = 38;
/** Sloppy TCP: sessions made from a client packet in the middle of a connection. */
export const C_SESSIONS_SLOPPY = 39;
/** HA cluster: sessions of ours handed over to the node that holds their local address (it
 * is back after this node adopted them: ha/session_sync.ts reconcile), or (TUNNEL, DR) to
 * the node that took them because their client's packets go there now (sync_taken there). */
export const C_SYNC_HANDED_OVER = 40;
/** HA cluster: copies on local addresses this node holds that it took as its own (back after
 * a restart or a lapse of its alive key). */
export const C_SYNC_CLAIMED = 41;
/** IP datagrams made whole from their fragments (dataplane/reassembly.ts). */
export const C_FRAGMENTS_REASSEMBLED = 42;
/** Fragments the LB wrote: a reassembled datagram, rewritten, still larger than the MTU. */
export const C_FRAGMENTS_SENT = 43;
/** Gauges: datagrams being reassembled now, and the bytes of their fragments held (a worker
 * holds at most FRAG_DATAGRAMS_MAX and FRAG_BYTES_MAX). */
export const C_FRAGMENTS_PENDING = 44;
export const C_FRAGMENT_BYTES_HELD = 45;
/** FULLNAT sessions given a local port outside their client's shard: the client's shard had
 * no free port on any local address (service/laddr.ts). Taken from a shard every node of the
 * pair or cluster gives the same owner where one had a port free: docs/ha.md, "Workers". */
export const C_LPORT_OTHER_SHARD = 46;
/** ... of which in a shard some node of the pair or cluster gives another owner than the
 * client's: that node (another worker count) cannot serve the session after a failover. */
export const C_LPORT_OTHER_OWNER = 47;
/** ICMP "fragmentation needed" / "packet too big" errors about TUNNEL's outer packets that
 * lowered a real server's tunnel MTU (nat/tunnel_pmtu.ts). */
export const C_TUNNEL_MTU_LEARNED = 48;
/** HA: sessions younger than syncAfterMs published as a pair's master stood down or a node
 * stopped in order, so its peers go on with them (ha/session_sync.ts publishYoung). */
export const C_SYNC_STAND_DOWN = 49;
/** HA: copies of TUNNEL and DR sessions this node took over because their client's packets
 * come here now (an ECMP rehash; ha/session_sync.ts takeByTraffic): their owner sees none. */
export const C_SYNC_TAKEN = 50;
export const GLOBAL_COUNT = 51;

export const GLOBAL_COUNTER_NAMES: readonly string[] = [
  'rx_packets',
  'rx_bytes',
  'tx_packets',
  'tx_bytes',
  'dropped',
  'redirected',
  'sessions_created',
  'sessions_expired',
  'sessions_reused',
  'toa_inserted',
  'toa_no_room',
  'toa_pruned',
  'client_toa_removed',
  'mss_clamped',
  'timestamps_stripped',
  'icmp_translated',
  'icmp_echo_replied',
  'rst_sent',
  'emit_full',
  'packets_in',
  'packets_out',
  'toa_skipped_gso',
  'gso_packets',
  'sync_installed',
  'sync_deleted',
  'sync_install_failed',
  'sync_conflicts',
  'sync_adopted',
  'synproxy_synacks',
  'synproxy_accepted',
  'synproxy_syn_retries',
  'synproxy_held',
  'synproxy_server_timeouts',
  'synproxy_auto_on',
  'synproxy_auto_switches',
  'persistence_hits',
  'persistence_templates',
  'persistence_table_full',
  'sync_replaced',
  'sessions_sloppy',
  'sync_handed_over',
  'sync_claimed',
  'fragments_reassembled',
  'fragments_sent',
  'fragments_pending',
  'fragment_bytes_held',
  'lport_other_shard',
  'lport_other_owner',
  'tunnel_mtu_learned',
  'sync_stand_down',
  'sync_taken',
];

/** Global slots that are levels, not counts (metrics export them as gauges). */
export const GLOBAL_GAUGE_NAMES: ReadonlySet<string> = new Set([
  'synproxy_auto_on',
  'fragments_pending',
  'fragment_bytes_held',
]);

export const DROPS_BASE = GLOBAL_COUNT;
export const RS_BASE = DROPS_BASE + DROP_REASON_COUNT;

// Per real server. Each BYTES field sits 2 after its PACKETS field (rewrite.ts countPacket).
export const RS_SESSIONS = 0;
export const RS_PACKETS_IN = 1;
export const RS_PACKETS_OUT = 2;
export const RS_BYTES_IN = 3;
export const RS_BYTES_OUT = 4;
export const RS_FIELDS = 5;

export const COUNTER_SLOTS = RS_BASE + REAL_SERVERS_MAX * RS_FIELDS;

if (GLOBAL_COUNTER_NAMES.length !== GLOBAL_COUNT) throw new Error('GLOBAL_COUNTER_NAMES out of step');

export function createCounters(sab?: SharedArrayBuffer): Float64Array {
  return new Float64Array(sab ?? new SharedArrayBuffer(COUNTER_SLOTS * 8));
}
