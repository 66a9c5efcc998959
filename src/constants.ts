/**
 * Every fixed limit of the data plane, in one place, each with the reason for its value.
 * The engine allocates everything from these at start-up and nothing per packet;
 * `assertConstants()` checks how they relate and runs once when the engine is built.
 */

/** Bytes of one packet slot in a burst ring. An MTU-1500 packet plus up to 40 bytes of
 * TCP option growth (TOA) fits; a power of two keeps slot offsets a shift away. */
export const SLOT_SIZE_BYTES = 2048;

/** Bytes of a slot of a TUN ring with offloads on: a 64 KiB GSO super-packet, its
 * virtio_net_hdr, and TOA growth (a multiple of 8, as ring slots must be). */
export const GSO_SLOT_SIZE_BYTES = 65536 + 128;

/** Slots of a TUN ring with offloads on (8 MiB per worker). */
export const GSO_BURST_MAX = 128;

/** Size of struct virtio_net_hdr in front of each packet with IFF_VNET_HDR. */
export const VNET_HDR_LEN = 10;

/** Packets handled per burst: one JS call per burst amortises the native crossing; 256 keeps
 * a burst (512 KiB of slots) inside L2 while covering a full TUN txqueue drain. */
export const BURST_MAX = 256;

/** Memory for all hand-off rings of one LB (n × (n − 1) rings for n forwarders): a few
 * forwarders get deep rings, which a busy owner on a shared core needs when every other
 * packet is handed over (io: xdp, whose receive queues the NIC picks, not the shard rule). */
export const HANDOFF_BUDGET_BYTES = 64 << 20;

/** The smallest hand-off ring (many forwarders): 512 KiB, ~340 MTU packets or 7 GSO
 * super-packets; at least twice the largest packet, which an empty ring must take wherever
 * its tail stands (a record is never split at the ring's end). */
export const HANDOFF_RING_MIN_BYTES = 512 << 10;

/** The deepest hand-off ring: 4 MiB hold ~2,700 MTU packets, ~10 ms of a forwarder's. */
export const HANDOFF_RING_MAX_BYTES = 4 << 20;

/** Packets a forwarder takes from a hand-off ring per processed burst: its inbox has this many
 * slots of its queue's slot size (4 MiB with TUN offloads, whose slots hold a GSO
 * super-packet); it drains again until the ring is empty. */
export const HANDOFF_DRAIN_SLOTS = 64;

/** AF_XDP (io: xdp): bytes of one UMEM frame. The kernel puts a received frame 256 bytes in
 * (XDP_RX_HEADROOM_BYTES); 2048 leaves an MTU-1764 packet room behind its Ethernet header and a
 * DR frame's second one. A larger MTU takes 4096-byte frames (xdpFrameBytes in xdp_device.ts). */
export const XDP_FRAME_BYTES = 2048;

/** Where the kernel puts a received frame in its UMEM frame (XDP_PACKET_HEADROOM). */
export const XDP_RX_HEADROOM_BYTES = 256;

/** UMEM frames per forwarder (32 MiB at 2048 bytes): a quarter wait in the interfaces' fill
 * rings, the rest hold what the receive rings (4096 descriptors each: native/xdp.c RING_SIZE)
 * have taken in while the forwarder was off its core, and what is being sent. */
export const XDP_FRAMES = 16384;

/** Interfaces one LB attaches XDP to (the native queue's socket array: native/xdp.c PORTS_MAX). */
export const XDP_INTERFACES_MAX = 8;

/** Packets per AF_XDP burst (one JS call each): the TX of a burst goes out in two of the
 * kernel's 32-frame copy-mode batches. */
export const XDP_BURST = 64;

/** Default TUN MTU. TOA is only inserted when the grown packet still fits. */
export const MTU_DEFAULT = 1500;

/** IP fragments (dataplane/reassembly.ts): a datagram whose fragments are not all in this long
 * after its first arrived is dropped. A datagram's fragments leave their sender back to back,
 * so seconds apart means one is lost; a short wait frees the table sooner under a flood of
 * incomplete datagrams (the kernel waits 30 s: net.ipv4.ipfrag_time). */
export const FRAG_TIMEOUT_MS = 5000;
/** Datagrams one worker reassembles at once; fragments of a further one are dropped
 * (fragment_table_full) until one completes or times out. */
export const FRAG_DATAGRAMS_MAX = 1024;
/** Bytes of fragments one worker holds at most (the kernel's net.ipv4.ipfrag_high_thresh is
 * 4 MiB per namespace): 64 largest datagrams. */
export const FRAG_BYTES_MAX = 4 << 20;
/** Fragments are kept in chunks of this many bytes, cut from the FRAG_BYTES_MAX a worker
 * allocates once (at its first fragment): an MTU fragment takes three, the smallest one, so a
 * worker holds at most 8,192 fragments (~2,700 of MTU size). A copy per fragment instead made
 * the allocator's pages grow under a steady stream of fragments (docs/benchmarks.md). */
export const FRAG_CHUNK_BYTES = 512;
/** Bytes of fragments one worker hands over to the datagrams' owners after one burst: those of
 * three 64 KiB datagrams in MTU fragments; a further datagram's are dropped (redirect_full). */
export const FRAG_HANDOVER_BYTES = 256 << 10;
/** The largest reassembled datagram: IPv4's total length and IPv6's payload length (after its
 * 40-byte header) are 16 bits. */
export const FRAG_DATAGRAM_MAX_BYTES = 65535 + 40;

/** IPv6 options headers (packet/ipv6_ext.ts) the engine looks past in front of the upper
 * layer: RFC 8200 §4.1 allows one Hop-by-Hop and one Destination Options header there (a
 * second Destination Options header only before a Routing header, which the engine does not
 * look past); one more is tolerated, a longer chain is no real sender's and is dropped
 * (ipv6_ext_header). It bounds the walk over packet bytes. */
export const IPV6_OPTION_HEADERS_MAX = 3;

/** TCP allows at most 40 bytes of options (data offset 15 words minus the 5-word header). */
export const TCP_OPTIONS_MAX_BYTES = 40;

/** Timer-wheel resolution. Timeouts are whole seconds; 100 ms keeps expiry within 10 %
 * of the shortest timeout (NONE, 2 s) without touching the wheel on every packet. */
export const TIMER_TICK_MS = 100;

/** Wheel slots: 4096 × 100 ms = 409.6 s, longer than every default timeout (UDP 300 s), so a
 * session normally sits in the slot of its expiry; longer ones are re-checked on wrap. */
export const TIMER_WHEEL_SLOTS = 4096;

/** The longest session timeout a config may set (`timeouts`, a service's `idleTimeout`): a
 * day. Sessions idle longer are better served by TCP keepalives than by the LB's table; and
 * beyond the wheel's span (above) a session is re-checked once per turn, ~210 times a day. */
export const TIMEOUT_SEC_MAX = 86_400;

/** Timer work per `advance()` call, so a mass expiry (1M sessions at once) is spread over
 * several bursts instead of stalling forwarding for hundreds of milliseconds. */
export const TIMER_BUDGET_PER_ADVANCE = 16384;

/** The port of an all-ports service (every port of its VIP, IPVS's port-0 service) and of
 * its servers (each connection keeps the port the client asked for). 0 because no TCP or
 * UDP packet carries it, and because ipvsadm and keepalived write such a service so. */
export const ALL_PORTS = 0;

/** How long the session of a one-packet datagram (ServiceSpec.onePacket; FULLNAT and NAT)
 * waits for the real server's reply, unless the service sets idleTimeout: 5 s, a stub
 * resolver's own wait (glibc's RES_TIMEOUT) before it asks again, which a later answer would
 * not reach. A FULLNAT session ends at its first reply, so this bounds only the unanswered
 * ones, each of which holds a local port meanwhile. */
export const ONE_PACKET_REPLY_SEC = 5;

/** Local ports handed out to sessions: 1025–65535, as DPVS and LVS FULLNAT do. */
export const LPORT_MIN = 1025;
export const LPORT_MAX = 65535;

/**
 * Shards a node's sessions are cut into: a session's shard is its client's hash (or, for
 * FULLNAT, its local port: handed out in the client's shard) modulo this, and its owner
 * worker is the shard modulo the node's workers (dataplane/shard.ts). The count is the same
 * on every node whatever its workers, so a peer with another worker count finds the owner of
 * each synced session by the same rule (a pair or cluster of unlike machines; changing
 * `workers` one node at a time). 960 = 2^6·3·5: every worker count up to 6, and 8, 10, 12,
 * 15, 16, 20, 24, 30, 32, 40, 48, 60 and 64, gets an equal share, and a node of the version
 * before (whose shards were its workers) agrees with this one when its workers divide it.
 * A shard's local ports are ~67 per local address and real server (64,511 / 960); a full one
 * borrows from the worker's other shards (counted: docs/ha.md, "Workers").
 */
export const SESSION_SHARDS = 960;
/** Most forwarder threads per node (config `workers`): each gets a shard at least. */
export const WORKERS_MAX = 64;

/** Candidate ports tried per local address for one new session, in each of the two passes
 * (the client's shard, then the worker's others: service/laddr.ts), before moving to the next
 * local address. Bounded so a nearly exhausted pool cannot turn each SYN into a 32k scan. */
export const LPORT_PROBES_PER_LADDR = 256;
/** A new local-address pool starts at the port a sweep of the whole range every this many
 * seconds (Linux's TIME_WAIT) stands at now: see LocalAddressPool. */
export const LPORT_SWEEP_SEC = 60;

/** Highest load factor of a session index (two entries per session). */
export const TABLE_LOAD_MAX = 0.7;

/** Default session capacity of one LB (split over the worker shards). */
export const SESSIONS_PER_LB_DEFAULT = 1 << 20;

/** Largest shard: record ids and direction share the low bits of an index entry with a hash
 * tag in the high bits; 2^26 records leaves 5 tag bits. */
export const SESSIONS_PER_SHARD_MAX = 1 << 26;

/** Real servers known at once (ids are stable across reloads; counters are per id). */
export const REAL_SERVERS_MAX = 4096;

/** How long a real server's tunnel MTU learned from an ICMP error holds (nat/tunnel_pmtu.ts):
 * Linux's route MTU expiry (net.ipv4.route.mtu_expires, net.ipv6.route.mtu_expires: 10 min),
 * after which the TUN device's MTU is tried again. */
export const TUNNEL_PMTU_EXPIRE_SEC = 600;
/** The least tunnel MTU an ICMP error can set: Linux's net.ipv4.route.min_pmtu (552), and
 * IPv6's minimum link MTU (RFC 8200: 1280). A forged error cannot push packets below them. */
export const TUNNEL_PMTU_MIN_V4 = 552;
export const TUNNEL_PMTU_MIN_V6 = 1280;

/** GUE ports one XDP decapsulator takes (`tunvs rs decap --gue-port`): its decap_gue_ports
 * map's max_entries in native/bpf/ipip_decap.bpf.c; a real server listens on one or two. */
export const DECAP_GUE_PORTS_MAX = 8;

/** Services known at once. */
export const SERVICES_MAX = 1024;

/** Persistence groups known at once (ids stable across reloads, as services'; a group with
 * IPv4 and IPv6 members counts once per family). A template's key names a service id or
 * SERVICES_MAX + a group's number in 16 bits (conn/templates.ts). */
export const PERSIST_GROUPS_MAX = 1024;

/** The largest session cap of a real server (maxConns, ipvsadm -x): an LB holds at most
 * SESSIONS_PER_SHARD_MAX sessions a worker, so a cap above that never bites. */
export const CONNS_CAP_MAX = SESSIONS_PER_SHARD_MAX;

/** Highest HA node id (ha.nodeId). A session record names the peer it was installed from
 * in 6 bits of its SVC_RS word (conn/layout.ts), beside a 10-bit service id: 63 nodes is more
 * than an ECMP group of LB nodes needs (routers spread over 8–64 next hops). */
export const NODE_ID_MAX = 63;

/**
 * Cluster mode: what tunvs announces is said by the metric of its routes into the TUN device
 * (docs/cluster.md). The routers' BGP speaker on the node redistributes the TUN's kernel
 * routes through a route-map that takes ROUTE_METRIC_ANNOUNCED as "announce", each
 * ROUTE_METRIC_BACKUP_BASE + rank as "announce with the AS path prepended rank times", and
 * nothing else. FRR 8.4 does not apply `match metric 0`, so no announced metric is 0.
 */
export const ROUTE_METRIC_ANNOUNCED = 10;
/** Routes that forward but are not announced (before the node is ready, while it drains). */
export const ROUTE_METRIC_QUIET = 50;
/** A peer's local addresses, as this node's backup for them: base + rank (1..). */
export const ROUTE_METRIC_BACKUP_BASE = 100;
/** Ranks the routers can tell apart (the route-map has one entry each); a node ranked lower
 * announces with this rank (ties are fine: every node has every session). */
export const BACKUP_RANKS_MAX = 8;

/** Local addresses per service. */
export const LADDRS_PER_SERVICE_MAX = 64;

/** NAT mode (control/system.ts natReplyRules): the routing table whose default route is
 * the TUN device, and the priority of the rules that send real servers' replies to it —
 * after the local table (0), before main (32766), with room for an operator's own rules
 * on either side. Neither is a table or priority iproute2 or systemd-networkd hands out. */
export const NAT_ROUTE_TABLE = 4789;
export const NAT_RULE_PRIORITY = 10789;

/** Where `tunvs run` serves its admin API unless configured otherwise (config admin.socket). */
export const ADMIN_SOCKET_DEFAULT = '/run/tunvs/admin.sock';

/** Persistence templates per LB (conn/templates.ts; one table all workers share): a power
 * of two. 2^18 slots of 48 B = 12 MiB, allocated at start; a template is per client (prefix)
 * and persistent service, and a full table serves new clients without one (counted). */
export const TEMPLATE_SLOTS_DEFAULT = 1 << 18;
/** HA: how long the workers take to sweep the whole template table for templates this node
 * published that have since died (their Redis fields are deleted; the slots are reused only
 * then). 2^18 slots over 10 s is ~2.6k slot checks per 100 ms tick for the whole LB, a few µs;
 * a dead template's field outlives it by at most this, and its slot is held as long. */
export const TEMPLATE_SWEEP_MS = 10_000;
/** The default persistence timeout, the one ipvsadm's manual gives (ipvsadm itself sets 360 s for
 * a bare -p: `tunvs import ipvsadm` keeps that). */
export const PERSISTENCE_TIMEOUT_DEFAULT_SEC = 300;

/** Packets the engine may generate per burst or timer advance (RSTs on expiry). */
export const EMIT_SLOTS = 512;
/** ...with the TUN offloads on: TUNNEL cuts GSO super-packets into their segments there
 * (nat/gso.ts), up to ~45 per 64 KiB. 4096 slots (8 MiB per worker, as the TUN ring) hold
 * ~90 whole super-packets per burst; past that, one is dropped whole (tunnel_no_room). */
export const EMIT_SLOTS_GSO = 4096;

/**
 * SYN proxy (nat/synproxy.ts, nat/syncookie.ts). A cookie's time counts periods of 64 s (as
 * Linux's) and is good for 2 of them: a client's ACK comes back within a round trip, or a
 * few retransmissions later, never minutes later.
 */
export const SYNCOOKIE_PERIOD_MS = 64_000;
export const SYNCOOKIE_PERIODS_VALID = 2;
/** Window scale the SYN proxy's SYN-ACK promises a client that offered scaling: Linux's for
 * its default 6 MiB receive buffer, so with most Linux servers no window is rescaled. */
export const SYNPROXY_WSCALE = 7;
/** The SYN toward the real server is sent again after 1 s, then 2 s, …, SYNPROXY_SYN_TRIES
 * times in all (Linux's initial RTO and backoff); then the client gets an RST (7 s in all). */
export const SYNPROXY_SYN_RTO_MS = 1000;
export const SYNPROXY_SYN_TRIES = 3;
/** Client segments held per worker while real servers have not answered the SYN: 1024 slots of
 * 2 KiB. A flood of cookie ACKs with data holds at most this much memory; then held segments
 * are dropped (counted) and the clients retransmit them. */
export const HOLD_SLOTS = 1024;
export const HOLD_SLOT_BYTES = 2048;
/** Held segments of one session (Linux's initial window is 10; the rest is retransmitted). */
export const HOLD_PER_SESSION_MAX = 10;
/** synProxy: auto turns a worker's proxy on when its half-open sessions (SYN_RECV or SYNACK:
 * the client has not completed the handshake; conn/state.ts isHalfOpen) reach this: ~270 ms
 * of a 15k SYN/s flood spread over two workers, while a worker forwarding 50k new
 * connections/s with 10 ms round trips has ~500. */
export const SYNPROXY_AUTO_ON_HALF_OPEN = 2048;
/** ...and off again once, for SYNPROXY_AUTO_OFF_MS, the cookies it sent each second exceed the
 * ACKs that came back for them by less than this (the flood has stopped). */
export const SYNPROXY_AUTO_OFF_UNANSWERED_PER_SEC = 256;
export const SYNPROXY_AUTO_OFF_MS = 10_000;

/** Slots of the default Maglev lookup table: prime, and > 100 × a typical pool size so each
 * server's share is within ~1 % of its weight (Maglev paper, section 3.4). */
export const MAGLEV_TABLE_SIZE_DEFAULT = 65537;
/** The largest maglevTableSize taken (the largest prime under 2^20): 100 × the largest pool
 * (REAL_SERVERS_MAX, every real server in one service) would want ~410k slots. A table is 4
 * bytes a slot in every forwarder and is built again at each weight change (~28 ms a million
 * slots here), so a size near 2^31 (an Int32Array of 8 GiB) is a typo, refused. */
export const MAGLEV_TABLE_SIZE_MAX = 1_048_573;

/** Source-hash scheduler table size (prime, spreads weights finely, small to rebuild). */
export const SH_TABLE_SIZE = 4093;
/** sh and mh with hashFallback (IPVS's sh-fallback): slots of further hashes of the client
 * tried when its own slot's server is at its cap, before the first available server. Each
 * try lands on a server by its share of the table, so the capped server's clients spread
 * over the others by weight; 8 misses in a row happen only when capped servers hold most of
 * the table (a share s: s^8), and then any server that can take the session is as good. */
export const HASH_FALLBACK_TRIES = 8;

/** V8's budget of bytecode inlined into one optimised function (dataplane/jit.ts; V8's
 * default is 920). Instructions per packet under callgrind, established FULLNAT at 1k
 * sessions with timestamp translation: 920 → 3755, 2000 → 3300, 3000 → 3176, 6000 → 3246;
 * timestamp translation's own cost 204 → 28; a new session 22,160 → 19,401. */
export const V8_INLINE_BUDGET_BYTES = 3000;

/** Records a forwarder scans per slice when a cluster's membership changes and it hands
 * sessions over (SessionSync.reconcile), or a node standing down publishes its young ones
 * (SessionSync.publishYoung): 17–42 ms per million sessions in one go, so a slice
 * holds its packets ~1–3 ms. A handover waits for room in the sync ring (the publisher
 * drains it every tick) up to SYNC_RING_WAIT_MS, then goes on and counts what is lost (the
 * resync that follows repairs it). */
export const RECONCILE_SLICE_RECORDS = 65536;
export const SYNC_RING_WAIT_MS = 2000;

/** The main thread's stalls (control/loop_watch.ts): it answers keepalived's check (`ready`,
 * 900 ms for its answer, twice in a row fails a node), the admin socket, health checks and HA
 * sync. A timer every LOOP_WATCH_MS; one that runs LOOP_STALL_MS or more late counts as a
 * stall (a third of the check's deadline: two checks still fit), logged at most once per
 * LOOP_STALL_LOG_MS with the count of those in between and what held it. */
export const LOOP_WATCH_MS = 100;
export const LOOP_STALL_MS = 300;
export const LOOP_STALL_LOG_MS = 10_000;
/** How often native/stall.c looks at the held main thread (a 1 s stall: ~18 looks, each a few
 * small /proc reads on a thread of its own). */
export const LOOP_STALL_SAMPLE_MS = 50;

/** HA: how often the publisher drains the workers' event rings into one MULTI (HSET/HDEL and
 * one XADD: ha/publisher.ts), not a Redis round trip per event; well inside syncAfterMs (2 s),
 * so a session's copy is at its peers long before a failover would need it. */
export const HA_TICK_MS = 100;
/** HA: the longest a pair's master standing down (or any node stopped in order) publishes on
 * to get its sessions younger than syncAfterMs out (ha/node.ts publishYoung). The publisher writes ~200k sessions a second, so a
 * second covers a busy node's young sessions (syncAfterMs' worth of new connections); the
 * peer forwards meanwhile, and a packet of such a connection that reaches it first is
 * dropped and retransmitted (TCP's first retransmission after ≥ 200 ms). */
export const HA_STAND_DOWN_MS = 2000;
/** HA: events one worker's ring holds between two ticks (8 MiB at 124 bytes each): 650,000 a
 * second at HA_TICK_MS, more than a forwarder makes (a new session is two events); it fills
 * only while the main thread stalls, and what it cannot take is counted lost and resynced. */
export const HA_SYNC_RING_EVENTS = 65536;
/** HA: events the publisher sends per tick (one stream entry, ~4 MiB of records at most; its
 * batch buffer is 6 MiB): 500,000 a second; what is left waits in the rings for the next. */
export const HA_EVENTS_PER_TICK = 50_000;
/** HA: sessions per HSET while a resync writes a node's new hash: a million in 200 commands,
 * none holding Redis (one thread for every client) for more than a few milliseconds. */
export const HA_RESYNC_BATCH = 5000;
/** HA: the COUNT hint of each HSCAN that loads a peer's hash: ~2,000 records a round trip,
 * a short step of Redis's work each (a peer's million sessions load in ~500). */
export const HA_HSCAN_COUNT = 2000;
/** HA: stream entries a follower reads per XREAD (each a tick's batch of a peer's events):
 * one in steady state; 20 s of ticks at once when it catches up. */
export const HA_XREAD_COUNT = 200;
/** HA: XREAD blocks at most this long, so that a change of peers or a stop is seen this soon. */
export const HA_XREAD_BLOCK_MS = 500;
/** HA: the entries a node's event stream keeps (XADD MAXLEN ~, one entry per 100 ms tick with
 * events: ~2.8 hours of steady traffic). A follower behind by more than that (paused, its
 * reads stalled) finds the entries it missed trimmed: it sees the jump in their numbers and
 * loads the peer's hash again (ha/redis.ts StreamPosition). It costs the stream's memory in
 * Redis: ~1 MiB per 18,000 entries at the soak's load (docs/benchmarks.md). */
export const HA_STREAM_MAXLEN = 100_000;

/** Records a forwarder scans per slice when it takes a snapshot for a full HA resync
 * (Engine.syncSnapshot; at start, after lost events, when Redis is back or fails over): a
 * million published sessions took ~0.5 s in one go, every packet of the worker held that long.
 * Most of it is the first touch of the new memory the copies go to (120 MB; 2 MB took 6.5 ms
 * to fault in on this VM, copying into it once faulted 0.8 ms), so a slice's chunk stays
 * small: 4,096 records, 0.5 MB. Longest block measured 3–14 ms (GC among them). */
export const SNAPSHOT_SLICE_RECORDS = 4096;

/** Records a forwarder scans per slice when it marks a peer's copies stale before reloading
 * them or adopts a dead peer's (a pair's promotion: all of them): one scan of a million took
 * 13–18 ms; in slices of 8,192 the longest hold measured 1–4 ms. A sweep of those the reload
 * did not bring removes up to every record it scans (~0.9 µs each; a million took 0.6 s in one
 * go, 7.6 ms per slice of 8,192), so its slices are a quarter of that: 1.3 ms each (median; the
 * longest hold measured 8–18 ms, GC among them). */
export const SYNC_SCAN_SLICE_RECORDS = 8192;
export const SYNC_SWEEP_SLICE_RECORDS = 2048;

/** Sessions a forwarder describes per slice for `tunvs conns` (control/conns.ts): describing
 * and filtering a million took 230–280 ms in one go (every packet of the worker held that
 * long, more than a TUN queue of txqueuelen 10,000 holds at 50k packets/s); a slice of 8,192
 * holds them ~2 ms. */
export const CONNS_SLICE_SESSIONS = 8192;

/** Health checks (control/checks/). The part of an HTTP body held to look for expectBody and
 * expectBodyMatch: a status page fits, a large download is not kept in memory (expectBodyMd5
 * hashes the whole body as it streams). */
export const HEALTH_BODY_HELD_BYTES = 65536;
/** An exec check that outlives its timeout gets SIGTERM (its process group), and SIGKILL this
 * much later if it is still there (keepalived does the same). */
export const HEALTH_EXEC_KILL_GRACE_MS = 1000;
/** A notification command (notifyUp, notifyDown) gets this long before it is stopped the same
 * way: long enough to send a mail or call a pager's API, not to linger. */
export const HEALTH_NOTIFY_TIMEOUT_SEC = 60;

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export function assertConstants(): void {
  if (!isPowerOfTwo(SLOT_SIZE_BYTES)) throw new Error('SLOT_SIZE_BYTES must be a power of two');
  if (SLOT_SIZE_BYTES < MTU_DEFAULT + TCP_OPTIONS_MAX_BYTES)
    throw new Error('a slot must hold an MTU packet plus TCP option growth');
  if (!isPowerOfTwo(TIMER_WHEEL_SLOTS)) throw new Error('TIMER_WHEEL_SLOTS must be a power of two');
  if (TIMER_WHEEL_SLOTS * TIMER_TICK_MS < 300_000)
    throw new Error('the timer wheel must span the longest default timeout (UDP, 300 s)');
  if (LPORT_MIN < 1 || LPORT_MAX > 65535 || LPORT_MIN > LPORT_MAX) throw new Error('bad local port range');
  if (SESSION_SHARDS < WORKERS_MAX || SESSION_SHARDS > LPORT_MAX - LPORT_MIN + 1 || SESSION_SHARDS > 0x10000)
    throw new Error('every worker needs a shard, every shard local ports and a 16-bit hash of its own');
  if (SYNCOOKIE_PERIODS_VALID < 1 || SYNCOOKIE_PERIODS_VALID > 3)
    throw new Error('a SYN cookie names its period in 2 bits: 1..3 periods can be valid');
  if (HOLD_SLOT_BYTES > SLOT_SIZE_BYTES) throw new Error('a held segment must fit an emit slot');
  if (!isPowerOfTwo(HANDOFF_RING_MIN_BYTES) || !isPowerOfTwo(HANDOFF_RING_MAX_BYTES))
    throw new Error('hand-off rings are powers of two');
  if (HANDOFF_RING_MIN_BYTES < 2 * (GSO_SLOT_SIZE_BYTES + 8))
    throw new Error('a hand-off ring must take a GSO super-packet');
  if (SYNPROXY_WSCALE > 14) throw new Error('window scale is at most 14 (RFC 7323)');
  if (REAL_SERVERS_MAX > 0x10000 || SERVICES_MAX > 0x400 || NODE_ID_MAX > 0x3f)
    throw new Error('real-server, service and node ids must fit 16, 10 and 6 bits of a session record');
  if (SERVICES_MAX + PERSIST_GROUPS_MAX > 0x10000)
    throw new Error("a template's key names a service or group in 16 bits");
  if (FRAG_BYTES_MAX % FRAG_CHUNK_BYTES !== 0) throw new Error('fragment chunks divide FRAG_BYTES_MAX');
  if (FRAG_HANDOVER_BYTES < FRAG_DATAGRAM_MAX_BYTES * 2)
    throw new Error('a burst must be able to hand over the fragments of a largest datagram');
}
