/**
 * Offsets and constants of the IPv4, IPv6, TCP, UDP, ICMP and ICMPv6 headers.
 * The data plane reads and writes packets through a DataView at integer offsets; these
 * names are the only place the byte positions are spelled out.
 *
 *  IPv4                                   IPv6
 *   0      4      8             16   31    0     4       12      16            31
 *  +------+------+------+------+------+   +-----+-------+-------+-------------+
 *  | ver  | ihl  |  tos |  total len  |   | ver | class |     flow label      |
 *  |    identification  |flg| frag off|   |   payload len   | next  | hop lim |
 *  |  ttl |proto |    header csum     |   |        source address (16)        |
 *  |          source address          |   |     destination address (16)      |
 *  |        destination address       |   +-----------------------------------+
 *  +----------------------------------+   (40 bytes, no options: extension headers)
 */

/** An Ethernet header: destination and source MAC, ethertype. */
export const ETH_HEADER_LEN = 14;

export const AF_INET = 4;
export const AF_INET6 = 6;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;
export const IPPROTO_FRAGMENT = 44;
/** TUNNEL's outer protocols: IPv4 in IPv4, IPv6 in IPv6, GRE (GUE's is UDP). */
export const IPPROTO_IPIP = 4;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_GRE = 47;

/** IPv4's total length and IPv6's payload length (everything after its fixed header) are
 * 16-bit fields: the most either can say. */
export const IP_LENGTH_MAX = 65535;

export const IPV4_HEADER_MIN = 20;
export const IPV4_TOTAL_LEN = 2;
export const IPV4_ID = 4;
export const IPV4_FRAG = 6; // flags (3 bits) + fragment offset (13 bits)
export const IPV4_FRAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;
export const IPV4_TTL = 8;
export const IPV4_PROTO = 9;
export const IPV4_CSUM = 10;
export const IPV4_SRC = 12;
export const IPV4_DST = 16;
/** IPv4 options (RFC 791): end of list, no-operation, and the type bit that says an option is
 * copied into every fragment. */
export const IPOPT_END = 0;
export const IPOPT_NOP = 1;
export const IPOPT_COPIED = 0x80;

export const IPV6_HEADER_LEN = 40;
export const IPV6_PAYLOAD_LEN = 4;
export const IPV6_NEXT = 6;
export const IPV6_HOP_LIMIT = 7;
export const IPV6_SRC = 8;
export const IPV6_DST = 24;
/** The fragment header: next header, reserved, offset (13 bits) | 2 reserved | M, identification. */
export const IPV6_FRAG_HEADER_LEN = 8;
/** Its third and fourth bytes: the offset in bytes (a multiple of 8) and the more-fragments bit. */
export const IPV6_FRAG_OFFSET_MASK = 0xfff8;
export const IPV6_FRAG_MORE = 1;

/*  TCP
 *   0              16             31
 *  +--------------+---------------+
 *  |  source port |   dest port   |
 *  |        sequence number       |
 *  |     acknowledgment number    |
 *  | doff|rsv|flags|    window    |
 *  |   checksum   |   urgent ptr  |
 *  |   options (0–40 bytes) ...   |
 */
export const TCP_HEADER_MIN = 20;
export const TCP_SPORT = 0;
export const TCP_DPORT = 2;
export const TCP_SEQ = 4;
export const TCP_ACK = 8;
export const TCP_DOFF = 12; // high nibble: header length in 32-bit words
export const TCP_FLAGS = 13;
export const TCP_WINDOW = 14;
export const TCP_CSUM = 16;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACKF = 0x10;
/** Congestion window reduced (RFC 3168): only the first segment of a GSO packet keeps it. */
export const TCP_CWR = 0x80;

export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
export const TCPOPT_MD5 = 19;
export const TCPOPT_AO = 29;
export const TCPOPT_MPTCP = 30;
export const TCPOPT_FASTOPEN = 34;

export const UDP_HEADER_LEN = 8;
export const UDP_LEN = 4;
export const UDP_CSUM = 6;

export const ICMP_HEADER_LEN = 8;
export const ICMP_CSUM = 2;
export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
/** Its code "fragmentation needed and DF set" (RFC 1191: the next hop's MTU in bytes 6-7). */
export const ICMP_FRAG_NEEDED = 4;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_PARAM_PROBLEM = 12;

export const ICMPV6_DEST_UNREACH = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAM_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;

/** Hop limit of packets tunvs originates (echo replies, RSTs). */
export const ORIGINATED_TTL = 64;

/** virtio_net_hdr (in front of each packet with IFF_VNET_HDR): flag bit 0 at byte 0 says the
 * L4 checksum is partial (the kernel completes it); byte 1's low 7 bits are the GSO type. */
export const VIRTIO_NEEDS_CSUM = 1;
