/**
 * What the data plane decides for each packet, and why it drops one.
 *
 * Per-packet functions return a number: >= 0 is the length of the rewritten packet to
 * forward; < 0 is the negated drop reason below. Every reason has a counter
 * (`Counters.drops[reason]`), so an operator can always tell why a packet vanished —
 * the role DPVS's EDPVS_* codes play.
 */

/** Burst slot verdicts, written by the engine for the I/O layer. */
export const VERDICT_FORWARD = 0;
export const VERDICT_DROP = 1;
/** The packet belongs to another worker's shard: aux holds the owner worker index. */
export const VERDICT_REDIRECT = 2;
/** DR: the slot holds an Ethernet frame for the real servers' link, not a packet for the TUN
 * device (native/tun.c writes it to the packet socket). */
export const VERDICT_LINK = 3;

/** Returned instead of a length or −reason: the engine took the packet (the SYN proxy holds a
 * client segment until the real server answers; TUNNEL wrote a GSO super-packet's segments
 * into the emit ring; a fragment waits for the rest of its datagram, or its datagram went out
 * through the emit ring or to the worker that owns it); nothing is written for its slot,
 * nothing is dropped. */
export const HELD = -0x20000;

// Malformed input: the packet cannot be parsed safely.
/** Shorter than its headers say, or than the minimum header. */
export const DROP_TRUNCATED = 1;
/** IP version nibble is neither 4 nor 6. */
export const DROP_BAD_IP_VERSION = 2;
/** IPv4 IHL < 5, or total length larger than what was read or smaller than the header. */
export const DROP_BAD_IPV4_HEADER = 3;
/** An IPv4 fragment that cannot be part of a datagram (dataplane/reassembly.ts): it overlaps
 * another (RFC 5722; the datagram's other fragments go with it), a middle one is not a multiple
 * of 8 bytes, it ends past 64 KiB, or the first does not hold the whole TCP/UDP header. */
export const DROP_IPV4_FRAGMENT = 4;
/** An IPv6 extension header the engine does not look past (packet/ipv6_ext.ts): Routing, AH,
 * Mobility, …, or more than IPV6_OPTION_HEADERS_MAX options headers. Hop-by-Hop and
 * Destination Options headers are looked past and forwarded. */
export const DROP_IPV6_EXT_HEADER = 5;
/** The same for an IPv6 fragment (its fragment header right after the fixed header). */
export const DROP_IPV6_FRAGMENT = 6;
/** A Hop-by-Hop header anywhere but right after the fixed IPv6 header (RFC 8200 §4.3). */
export const DROP_BAD_IPV6_HEADER = 7;
/** TCP data offset < 5 or past the end of the packet. */
export const DROP_BAD_TCP_HEADER = 8;
/** TCP option list runs past the header or has a length < 2. */
export const DROP_BAD_TCP_OPTIONS = 9;
/** SYN with FIN or RST, or no flag at all. */
export const DROP_BAD_TCP_FLAGS = 10;
/** UDP length field disagrees with the IP length. */
export const DROP_BAD_UDP_HEADER = 11;
/** ICMP error too short to hold the quoted IP header and 8 bytes of transport header. */
export const DROP_BAD_ICMP = 12;
/** Neither TCP, UDP, ICMP nor ICMPv6 (IPv6: behind any options headers). */
export const DROP_UNSUPPORTED_PROTOCOL = 13;

// Policy: well-formed packets tunvs will not forward.
/** Destination is neither a VIP nor a local address: tunvs is no open relay. */
export const DROP_NOT_LOCAL = 14;
/** Destination is a VIP, but no service listens on that protocol and port. */
export const DROP_NO_SERVICE = 15;
/** No session, and the packet may not start one (TCP without a lone SYN). */
export const DROP_NO_SESSION = 16;
/** The scheduler found no real server with weight > 0. */
export const DROP_NO_REAL_SERVER = 17;
/** The shard's session table is full: new flows are refused, existing ones untouched. */
export const DROP_TABLE_FULL = 18;
/** No local address and port free toward the chosen real server (or none of that family). */
export const DROP_LPORT_EXHAUSTED = 19;
/** ICMP type tunvs does not translate (redirects, router adverts, …), or an error quoting a
 * protocol other than TCP and UDP or a fragment past a datagram's first (no ports). */
export const DROP_ICMP_UNSUPPORTED = 20;
/** ICMP error that quotes a packet of no known session. */
export const DROP_ICMP_NO_SESSION = 21;
/** The packet reached a worker that does not own it and could not be handed over. */
export const DROP_REDIRECT_FULL = 22;
/** This LB is the standby of an HA pair (keepalived says BACKUP or FAULT): it forwards nothing. */
export const DROP_STANDBY = 23;
/** A new session from a client the service's ACL does not allow (or denies). */
export const DROP_ACL_DENIED = 24;
/** A new session over the service's new-sessions-per-second cap (SYN-flood guard). */
export const DROP_RATE_LIMITED = 25;

// SYN proxy (synproxy.ts): nothing is stored for any of these.
/** An ACK without a session whose cookie is forged or too old (ACK floods land here). */
export const DROP_SYNPROXY_BAD_COOKIE = 26;
/** A client segment that arrived before the real server answered, with no room to hold it
 * (the client retransmits it). */
export const DROP_SYNPROXY_HOLD_FULL = 27;
/** A packet of a proxied session before its handshake with the real server is done (a
 * server segment other than SYN-ACK or RST, a second client SYN). */
export const DROP_SYNPROXY_NOT_READY = 28;

// Forwarding modes (modes/).
/** NAT: the real server already has a session with this client address and port (the same
 * client port to two VIPs of one server): its replies could not be told apart. */
export const DROP_NAT_TUPLE_TAKEN = 29;
/** TUNNEL: with the outer header the packet would exceed the MTU and may not be fragmented
 * (IPv4 DF, or IPv6): the client was sent "fragmentation needed" / "packet too big". */
export const DROP_TUNNEL_TOO_BIG = 30;
/** TUNNEL: a GSO super-packet has more segments than this burst's emit ring has room for
 * (EMIT_SLOTS_GSO; modes/tunnel.ts cuts it up in software): dropped whole, TCP sends it again. */
export const DROP_TUNNEL_NO_ROOM = 31;
/** DR: the real server's link-layer address is not known yet (the neighbour table has no
 * entry; `tunvs run` asks the kernel to resolve it) or this LB has no link to it. */
export const DROP_DR_NO_NEIGHBOUR = 32;
/** A packet of a session the LB ended with RSTs (resetOnDown, rstOnExpire; layout.ts R_RESET):
 * answered with an RST at the sequence number its ack names, not forwarded. */
export const DROP_SESSION_RESET = 33;
/** A new session's service has servers up, but each the scheduler may pick is at its session
 * cap (maxConns, ipvsadm -x; sched/scheduler.ts available). */
export const DROP_SERVER_OVERLOADED = 34;

/** A fragment of a datagram that was not whole within FRAG_TIMEOUT_MS (each held one counts). */
export const DROP_FRAGMENT_TIMEOUT = 35;
/** A fragment of a new datagram while the worker's reassembly table was full (FRAG_DATAGRAMS_MAX
 * datagrams or FRAG_BYTES_MAX bytes). */
export const DROP_FRAGMENT_TABLE_FULL = 36;
/** A reassembled datagram larger than the MTU whose fragments did not fit the emit ring. */
export const DROP_FRAGMENT_NO_ROOM = 37;

/** IPv6 to an interface- or link-scope multicast group (ff01::/16, ff02::/16): never for a VIP.
 * What arrives so is the kernel's own, on the TUN device: with IPv6 forwarding on it joins the
 * all-routers group (ff02::2) on the device and reports that (MLDv2) when the link comes up. */
export const DROP_IPV6_LINK_MULTICAST = 38;

export const DROP_REASON_COUNT = 39;

/** Names for counters, logs and `tunvs stats`, indexed by reason. */
export const DROP_REASON_NAMES: readonly string[] = [
  'none',
  'truncated',
  'bad_ip_version',
  'bad_ipv4_header',
  'ipv4_fragment',
  'ipv6_ext_header',
  'ipv6_fragment',
  'bad_ipv6_header',
  'bad_tcp_header',
  'bad_tcp_options',
  'bad_tcp_flags',
  'bad_udp_header',
  'bad_icmp',
  'unsupported_protocol',
  'not_local',
  'no_service',
  'no_session',
  'no_real_server',
  'table_full',
  'lport_exhausted',
  'icmp_unsupported',
  'icmp_no_session',
  'redirect_full',
  'standby',
  'acl_denied',
  'rate_limited',
  'synproxy_bad_cookie',
  'synproxy_hold_full',
  'synproxy_not_ready',
  'nat_tuple_taken',
  'tunnel_too_big',
  'tunnel_no_room',
  'dr_no_neighbour',
  'session_reset',
  'server_overloaded',
  'fragment_timeout',
  'fragment_table_full',
  'fragment_no_room',
  'ipv6_link_multicast',
];

if (DROP_REASON_NAMES.length !== DROP_REASON_COUNT) throw new Error('DROP_REASON_NAMES out of step');
