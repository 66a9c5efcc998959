/**
 * TUNNEL (LVS "Tunnel"): the client's packet goes to the real server whole, inside an outer
 * IP header — IPv4-in-IPv4 (protocol 4) or IPv6-in-IPv6 (next header 41) — from the
 * service's first local address to the real server. The server decapsulates it (its
 * tunl0 / ip6tnl0 device), holds the VIP on a loopback device and answers the client
 * directly: only client packets pass the LB, so a session follows their flags alone
 * (conn/state.ts nextStateInputOnly) and has no OUT index entry. docs/modes.md has the real
 * server's side. A service of `tunnel.type: gre` (IPVS's --tun-type gre) puts a GRE header
 * (RFC 2784: protocol 47, 4 bytes, 8 with its checksum) between the outer header and the
 * packet instead, for servers whose gre0 / ip6gre0 or tunvs's decapsulator take it. One of
 * `tunnel.type: gue` (IPVS's --tun-type gue) puts a UDP header to the service's port and a
 * GUE header (draft-ietf-intarea-gue, version 0: 4 bytes naming the inner protocol) there,
 * for servers whose fou (`ip fou add port P gue`) or tunvs's decapsulator take it; its UDP
 * source port is a hash of the client's address and port (as IPVS's udp_flow_src_port), so
 * a server's NIC spreads the tunnel's flows over its queues and each flow stays on one.
 *
 * The outer header costs 20 (40) bytes, a GRE header its 4 or 8 more, UDP and GUE 12
 * (outerLength).
 * What limits a client's segments is the MSS the real server announces in its SYN-ACK,
 * which goes straight to the client: the LB cannot clamp it (clamping the client's SYN would
 * only shrink the server's segments, which never pass the tunnel). So a packet that no
 * longer fits the MTU (tun.mtu, or the real server's path MTU learned from a router's error
 * about an outer packet: tunnel_pmtu.ts) is answered the way a router would: IPv4 with DF and
 * IPv6 get "fragmentation needed" / "packet too big" (icmp_too_big.ts) and are dropped
 * (tunnel_too_big); IPv4 without DF is sent with DF clear, and the kernel fragments the
 * outer packet. The real server's route toward clients can carry `advmss` so that no client
 * ever needs the ICMP (docs/modes.md).
 *
 *   create    the client as the OUT key's local half (shown by `tunvs conns`; not indexed)
 *   inbound   state and timeout; a partial checksum completed (gso.ts); too big → ICMP;
 *             the packet moves back by the outer header's length and the header is written
 *             in front (writeOuter, a GRE header by writeGre); a GSO super-packet is cut into
 *             its segments instead, each encapsulated into the emit ring (encapsulateSegments)
 *   outbound  none: no reply passes
 *   icmp      an error about a packet the server sent the client (to the VIP: a router on
 *             the way back, e.g. "fragmentation needed") goes to the server, in the tunnel
 *   owner     the client's address and port
 *
 * Partial checksums and GSO super-packets cannot go back into the kernel inside IPIP (a
 * virtio_net_hdr cannot say "IPIP", and the kernel's IPIP segmentation refuses GSO without
 * it), so tunvs finishes them itself, as the kernel's GSO would have (gso.ts): the TUN
 * offloads stay on for the node's other services, and a TUNNEL packet costs what it would
 * have cost without them.
 */

import { addrWord, R_CIP0, R_CIP1, R_IN_PORTS, R_RIP0, R_RIP1, recService, RECORD_WORDS } from '../../conn/layout.js';
import { C_PACKETS_IN, RS_PACKETS_IN } from '../../dataplane/counters.js';
import {
  AF_INET,
  IPPROTO_GRE,
  IPPROTO_IPIP,
  IPPROTO_IPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_FRAG,
  ORIGINATED_TTL,
} from '../../packet/headers.js';
import { GUE_HEADERS_LEN } from '../../service/service.js';
import { clientAddressHash } from '../session.js';
import type { NatContext } from '../context.js';
import { sendTooBig } from '../icmp_too_big.js';
import { tunnelMtu } from '../tunnel_pmtu.js';
import { countPacket } from '../rewrite.js';
import { csumFromSum, pseudoHeaderSum, sumWords } from '../../packet/checksum.js';
import { IPV4_DF, writeIpv4Header } from '../segment.js';
import { DROP_TUNNEL_NO_ROOM, DROP_TUNNEL_TOO_BIG, HELD } from '../verdict.js';
import { completeChecksum, gsoSegments, gsoSize, writeGsoSegment } from '../gso.js';
import { clientOnlyState, createAsClient, noReply, ownerByClient } from './client_side.js';
import { MODE_TUNNEL, registerMode, type ForwardingMode } from './mode.js';

/** GUE's UDP source ports: the dynamic range (RFC 6335), 2^14 of them, one per flow hash. */
const GUE_SPORT_BASE = 0xc000;
const GUE_SPORT_MASK = 0x3fff;
/** GRE (RFC 2784): the flags word with the checksum present, and the protocol types of an
 * IPv4 and an IPv6 packet (EtherTypes). */
const GRE_CHECKSUM = 0x8000;
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;

export const tunnel: ForwardingMode = {
  id: MODE_TUNNEL,
  name: 'tunnel',
  twoWay: false,
  create: createAsClient,
  inbound: tunnelInbound,
  outbound: noReply,
  icmp: encapsulate,
  owner: ownerByClient,
};

registerMode(tunnel);

function tunnelInbound(c: NatContext, r: number): number {
  clientOnlyState(c, r);
  // (UDP never comes as GSO: tunvs does not ask the TUN for USO.)
  if (c.pGso && c.pProto === IPPROTO_TCP) return encapsulateSegments(c, r);
  if (c.pPartial) {
    completeChecksum(c);
    c.plainVnet();
  }
  return encapsulate(c, r);
}

/** The IPv4 DF bit of the packet in hand (IPv6 is never fragmented on the way: true; a
 * datagram that came in fragments leaves in fragments: false). */
function dontFragment(c: NatContext): boolean {
  if (c.pReassembled) return false;
  return c.pAf !== AF_INET || (c.dv.getUint16(c.pL3 + IPV4_FRAG) & IPV4_DF) !== 0;
}

/** The packet in hand (of session `r`) into the tunnel to its real server: the new length,
 * or −reason. */
function encapsulate(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const l3 = c.pL3;
  const len = c.pEnd - l3;
  const outer = outerLength(c, r);
  const df = dontFragment(c);
  const mtu = tunnelMtu(c, r);
  if ((len + outer > mtu && df) || c.pEnd + outer > c.slotEnd) {
    sendTooBig(c, mtu - outer);
    return -DROP_TUNNEL_TOO_BIG;
  }
  c.buf.copyWithin(l3 + outer, l3, c.pEnd);
  writeOuter(c, c.buf, c.dv, l3, len, outer, df, r);
  countPacket(c, rec, base, c.pEnd + outer, RS_PACKETS_IN, C_PACKETS_IN);
  return len + outer;
}

/**
 * A TCP GSO super-packet of session `r` (the TUN offloads are on): cut into its segments
 * (gso.ts), each encapsulated into a slot of the emit ring. The packet in hand is used up
 * (HELD: nothing is written for its slot), or dropped whole: too big for the tunnel (ICMP
 * as for a single packet), or more segments than the emit ring has room for in this burst.
 */
function encapsulateSegments(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const outer = outerLength(c, r);
  const df = dontFragment(c);
  const mss = gsoSize(c);
  const n = gsoSegments(c, mss);
  const e = c.emit;
  const largest = c.pL4 - c.pL3 + c.pThl + Math.min(mss, c.pEnd - c.pL4 - c.pThl);
  const mtu = tunnelMtu(c, r);
  if ((largest + outer > mtu && df) || e.headroom + outer + largest > e.slotSize) {
    sendTooBig(c, mtu - outer);
    return -DROP_TUNNEL_TOO_BIG;
  }
  if (e.slots - c.emitCount < n) return -DROP_TUNNEL_NO_ROOM;
  let bytes = 0;
  for (let k = 0; k < n; k++) {
    const at = c.emitSlot() + e.headroom;
    const len = writeGsoSegment(c, k, n, mss, e.bytes, e.view, at + outer);
    writeOuter(c, e.bytes, e.view, at, len, outer, df, r);
    c.emitted(len + outer);
    bytes += len + outer;
  }
  countPacket(c, rec, base, c.pL3 + bytes, RS_PACKETS_IN, C_PACKETS_IN);
  return HELD;
}

/** The bytes session `r`'s tunnel puts in front of a packet: the outer IP header, and its
 * service's GRE or UDP and GUE headers if any. */
function outerLength(c: NatContext, r: number): number {
  return (c.pAf === AF_INET ? 20 : 40) + c.services.tunnelHeader[recService(c.table.rec, r * RECORD_WORDS)]!;
}

/**
 * The outer header at `at` of `buf` / `dv`, `outer` bytes (outerLength) in front of an inner
 * packet of `len` bytes of session `r`: from its service's tunnel source to its real server.
 * IPv4: the inner TOS and DF, an ID when not DF; IPv6: the inner traffic class and flow label
 * (the path hashes it). Then the service's GRE header (writeGre) or UDP and GUE headers
 * (writeGue), if it has them.
 */
function writeOuter(
  c: NatContext,
  buf: Uint8Array,
  dv: DataView,
  at: number,
  len: number,
  outer: number,
  df: boolean,
  r: number,
): void {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const s = c.services.tunnelSrc;
  const svc = recService(rec, base);
  const src = svc * 4;
  const ip = c.pAf === AF_INET ? 20 : 40;
  const extra = outer - ip;
  const gue = c.services.tunnelPort[svc]!;
  const proto = extra === 0 ? (c.pAf === AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6) : gue !== 0 ? IPPROTO_UDP : IPPROTO_GRE;
  if (c.pAf === AF_INET) {
    // An atomic datagram's ID means nothing (RFC 6864): 0; one the kernel may fragment
    // needs its own, per source and destination, apart from the other workers'.
    const id = df ? 0 : c.nextIpId(false);
    const tos = buf[at + outer + 1]!;
    writeIpv4Header(dv, at, tos, len + outer, id, df ? IPV4_DF : 0, proto, s[src]!, rec[base + R_RIP0]!);
  } else {
    // Version, traffic class and flow label as the inner header has them.
    dv.setUint32(at, dv.getUint32(at + outer));
    dv.setUint32(at + 4, ((len + extra) << 16) | (proto << 8) | ORIGINATED_TTL);
    for (let k = 0; k < 4; k++) {
      dv.setInt32(at + 8 + 4 * k, s[src + k]!);
      dv.setInt32(at + 24 + 4 * k, rec[base + addrWord(R_RIP0, R_RIP1, k)]!);
    }
  }
  if (gue !== 0) writeGue(c, buf, dv, at, ip, len, gue, r);
  else if (extra !== 0) writeGre(c, buf, dv, at + ip, len, extra);
}

/**
 * The UDP and GUE headers after the outer IP header at `at` (`ip` bytes), in front of the
 * inner packet of `len` bytes of session `r`: UDP from a port hashed from the client's
 * address and port (one per flow) to the service's `port`; GUE version 0, no control flag,
 * no extension fields or flags, the inner packet's protocol (4 or 41). The UDP checksum over
 * the whole datagram is written for IPv6 always (RFC 8200: Linux drops zero-checksum UDP
 * over IPv6 unless the socket allows it) and for IPv4 with the service's checksum; IPv4
 * without it sends 0 (none), as IPVS's --tun-nocsum.
 */
function writeGue(
  c: NatContext,
  buf: Uint8Array,
  dv: DataView,
  at: number,
  ip: number,
  len: number,
  port: number,
  r: number,
): void {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const v4 = c.pAf === AF_INET;
  const udp = at + ip;
  const udpLen = GUE_HEADERS_LEN + len;
  let h = clientAddressHash(
    rec[base + R_CIP0]!,
    v4 ? 0 : rec[base + addrWord(R_CIP0, R_CIP1, 1)]!,
    v4 ? 0 : rec[base + addrWord(R_CIP0, R_CIP1, 2)]!,
    v4 ? 0 : rec[base + addrWord(R_CIP0, R_CIP1, 3)]!,
  );
  h = Math.imul(h ^ rec[base + R_IN_PORTS]!, 0x85ebca6b);
  dv.setUint16(udp, GUE_SPORT_BASE | ((h ^ (h >>> 15)) & GUE_SPORT_MASK));
  dv.setUint16(udp + 2, port);
  dv.setUint16(udp + 4, udpLen);
  dv.setUint16(udp + 6, 0);
  dv.setUint32(udp + 8, (v4 ? IPPROTO_IPIP : IPPROTO_IPV6) << 16);
  if (!v4 || c.services.tunnelCsum[recService(rec, base)] === 1) {
    const sum = pseudoHeaderSum(buf, at, v4, IPPROTO_UDP, udpLen) + sumWords(buf, udp, udpLen);
    dv.setUint16(udp + 6, csumFromSum(sum) || 0xffff);
  }
}

/**
 * The GRE header at `at`, `gre` bytes (4, or 8 with the checksum), in front of the inner
 * packet of `len` bytes: no key or sequence number, version 0, the inner packet's EtherType;
 * with the checksum, the Internet checksum of the GRE header and the packet (RFC 2784), as
 * IPVS's --tun-csum.
 */
function writeGre(c: NatContext, buf: Uint8Array, dv: DataView, at: number, len: number, gre: number): void {
  const type = c.pAf === AF_INET ? ETH_P_IP : ETH_P_IPV6;
  if (gre === 4) {
    dv.setUint32(at, type);
    return;
  }
  dv.setUint32(at, (GRE_CHECKSUM << 16) | type);
  dv.setUint32(at + 4, 0);
  dv.setUint16(at + 4, csumFromSum(sumWords(buf, at, gre + len)));
}
