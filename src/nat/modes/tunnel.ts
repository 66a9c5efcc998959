/**
 * TUNNEL (LVS "Tunnel"): the client's packet goes to the real server whole, inside an outer
 * IP header — IPv4-in-IPv4 (protocol 4) or IPv6-in-IPv6 (next header 41) — from the
 * service's first local address to the real server. The server decapsulates it (its
 * tunl0 / ip6tnl0 device), holds the VIP on a loopback device and answers the client
 * directly: only client packets pass the LB, so a session follows their flags alone
 * (conn/state.ts nextStateInputOnly) and has no OUT index entry. docs/modes.md has the real
 * server's side.
 *
 * The outer header costs 20 (40) bytes. What limits a client's segments is the MSS the real
 * server announces in its SYN-ACK, which goes straight to the client: the LB cannot clamp
 * it (clamping the client's SYN would only shrink the server's segments, which never pass
 * the tunnel). So a packet that no longer fits the MTU is answered the way a router would:
 * IPv4 with DF and IPv6 get "fragmentation needed" / "packet too big" (icmp_too_big.ts)
 * and are dropped (tunnel_too_big); IPv4 without DF is sent with DF clear, and the kernel
 * fragments the outer packet. The real server's route toward clients can carry
 * `advmss` so that no client ever needs the ICMP (docs/modes.md).
 *
 *   create    the client as the OUT key's local half (shown by `tunvs conns`; not indexed)
 *   inbound   state and timeout; too big → ICMP; the packet moves back by the outer
 *             header's length and the header is written in front (writeOuter)
 *   outbound  none: no reply passes
 *   icmp      an error about a packet the server sent the client (to the VIP: a router on
 *             the way back, e.g. "fragmentation needed") goes to the server, in the tunnel
 *   owner     the client's address and port
 *
 * Partial checksums and GSO super-packets cannot go back into the kernel inside IPIP (a
 * virtio_net_hdr cannot say "IPIP", and the kernel's IPIP segmentation refuses GSO without
 * it), so while a TUNNEL service exists `tunvs run` turns the TUN device's offloads off and
 * the kernel hands over finished, MTU-sized packets; any that slip through a reload are
 * dropped (tunnel_offload).
 */

import { addrWord, R_RIP0, R_RIP1, recService, RECORD_WORDS } from '../../conn/layout.js';
import { C_PACKETS_IN, RS_PACKETS_IN } from '../../dataplane/counters.js';
import { AF_INET, IPV4_FRAG, ORIGINATED_TTL } from '../../packet/headers.js';
import type { NatContext } from '../context.js';
import { sendTooBig } from '../icmp_too_big.js';
import { countPacket } from '../rewrite.js';
import { IPV4_DF, writeIpv4Header } from '../segment.js';
import { DROP_TUNNEL_OFFLOAD, DROP_TUNNEL_TOO_BIG } from '../verdict.js';
import { clientOnlyState, createAsClient, noReply, ownerByClient } from './client_side.js';
import { MODE_TUNNEL, registerMode, type ForwardingMode } from './mode.js';

/** IP protocol numbers of the outer header: IPv4 in IPv4, IPv6 in IPv6. */
const IPPROTO_IPIP = 4;
const IPPROTO_IPV6 = 41;

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
  if (c.pGso || c.pPartial) return -DROP_TUNNEL_OFFLOAD;
  clientOnlyState(c, r);
  return encapsulate(c, r);
}

/** The packet in hand (of session `r`) into the tunnel to its real server: the new length,
 * or −reason. */
function encapsulate(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const l3 = c.pL3;
  const len = c.pEnd - l3;
  const v4 = c.pAf === AF_INET;
  const outer = v4 ? 20 : 40;
  const df = !v4 || (c.dv.getUint16(l3 + IPV4_FRAG) & IPV4_DF) !== 0;
  if ((len + outer > c.opts.mtu && df) || c.pEnd + outer > c.slotEnd) {
    sendTooBig(c, c.opts.mtu - outer);
    return -DROP_TUNNEL_TOO_BIG;
  }
  c.buf.copyWithin(l3 + outer, l3, c.pEnd);
  writeOuter(c, l3, len, v4, df, recService(rec, base) * 4, rec, base);
  countPacket(c, rec, base, c.pEnd + outer, RS_PACKETS_IN, C_PACKETS_IN);
  return len + outer;
}

/**
 * The outer header at `at`, in front of the inner packet of `len` bytes (now at
 * at + 20 / 40): from the service's tunnel source (c.services.tunnelSrc at `src`) to the
 * session's real server. IPv4: the inner TOS and DF, an ID when not DF; IPv6: the inner traffic
 * class and flow label (the path hashes it).
 */
function writeOuter(
  c: NatContext,
  at: number,
  len: number,
  v4: boolean,
  df: boolean,
  src: number,
  rec: Int32Array,
  base: number,
): void {
  const dv = c.dv;
  const s = c.services.tunnelSrc;
  if (v4) {
    // An atomic datagram's ID means nothing (RFC 6864): 0; one the kernel may fragment
    // needs its own, per source and destination.
    const id = df ? 0 : (c.outerIpId = (c.outerIpId + 1) & 0xffff);
    const tos = c.buf[at + 20 + 1]!;
    writeIpv4Header(dv, at, tos, len + 20, id, df ? IPV4_DF : 0, IPPROTO_IPIP, s[src]!, rec[base + R_RIP0]!);
  } else {
    // Version, traffic class and flow label as the inner header has them.
    dv.setUint32(at, dv.getUint32(at + 40));
    dv.setUint32(at + 4, (len << 16) | (IPPROTO_IPV6 << 8) | ORIGINATED_TTL);
    for (let k = 0; k < 4; k++) {
      dv.setInt32(at + 8 + 4 * k, s[src + k]!);
      dv.setInt32(at + 24 + 4 * k, rec[base + addrWord(R_RIP0, R_RIP1, k)]!);
    }
  }
}
