/**
 * DR (LVS "Route", direct routing): the client's packet goes to the real server unchanged —
 * still client → VIP:vport — with only the link-layer destination changed: an Ethernet frame
 * to the server's MAC on the LB's link to it. The server holds the VIP on a loopback device
 * (arp_ignore / arp_announce) and answers the client directly; only client packets pass the
 * LB (state by their flags alone, as TUNNEL).
 *
 * A TUN device has no link layer, so these frames leave through a second way out:
 * `tunvs run` opens an AF_PACKET socket on the interface the real servers are on
 * (native/tun.c openLink) and the forwarder writes the slots whose verdict is LINK there. The
 * servers' MACs come from the kernel's neighbour table, read and kept fresh by the main thread
 * (control/link.ts) and handed to the workers with the services (ServiceTable.rsMac).
 *
 *   create    the client as the OUT key's local half (not indexed: no reply comes back)
 *   inbound   state and timeout; the packet moves up by 14 bytes and the Ethernet header is
 *             written in front (toLink); with TUN offloads the virtio_net_hdr is shifted to
 *             count from the frame (a packet socket with PACKET_VNET_HDR takes GSO frames and
 *             partial checksums as the TUN does: DR keeps the offloads)
 *   outbound  none: no reply passes
 *   icmp      an error about a packet the server sent the client goes to the server, framed
 *   owner     the client's address and port
 */

import { recServer, RECORD_WORDS } from '../../conn/layout.js';
import { C_PACKETS_IN, RS_PACKETS_IN } from '../../dataplane/counters.js';
import { AF_INET, ETH_HEADER_LEN, VIRTIO_NEEDS_CSUM } from '../../packet/headers.js';
import type { NatContext } from '../context.js';
import { countPacket } from '../rewrite.js';
import { DROP_DR_NO_NEIGHBOUR } from '../verdict.js';
import { clientOnlyState, createAsClient, noReply, ownerByClient } from './client_side.js';
import { MODE_DR, registerMode, type ForwardingMode } from './mode.js';

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;

export const dr: ForwardingMode = {
  id: MODE_DR,
  name: 'dr',
  twoWay: false,
  create: createAsClient,
  inbound(c, r) {
    clientOnlyState(c, r);
    return toLink(c, r);
  },
  outbound: noReply,
  icmp: toLink,
  owner: ownerByClient,
};

registerMode(dr);

/** The packet in hand as a frame to session `r`'s real server: the new length (frame), or
 * −reason. Sets c.toLink so the engine gives the slot the LINK verdict. */
function toLink(c: NatContext, r: number): number {
  const rec = c.table.rec;
  const base = r * RECORD_WORDS;
  const s = c.services;
  const rs = recServer(rec, base);
  const macHi = s.rsMac[rs * 2]!;
  const macLo = s.rsMac[rs * 2 + 1]!;
  const l3 = c.pL3;
  const len = c.pEnd - l3;
  if ((macHi === 0 && macLo === 0) || !s.linkUp || c.pEnd + ETH_HEADER_LEN > c.slotEnd) return -DROP_DR_NO_NEIGHBOUR;
  c.buf.copyWithin(l3 + ETH_HEADER_LEN, l3, c.pEnd);
  const dv = c.dv;
  dv.setUint16(l3, macHi);
  dv.setInt32(l3 + 2, macLo);
  dv.setUint16(l3 + 6, s.linkMac[0]!);
  dv.setInt32(l3 + 8, s.linkMac[1]!);
  dv.setUint16(l3 + 12, c.pAf === AF_INET ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6);
  if (c.headroom !== 0) {
    // virtio_net_hdr (little-endian): hdr_len at 2, csum_start at 6 now count from the frame.
    const v = c.pVnet;
    if (c.pGso) dv.setUint16(v + 2, dv.getUint16(v + 2, true) + ETH_HEADER_LEN, true);
    if ((c.buf[v]! & VIRTIO_NEEDS_CSUM) !== 0) dv.setUint16(v + 6, dv.getUint16(v + 6, true) + ETH_HEADER_LEN, true);
  }
  c.toLink = true;
  countPacket(c, rec, base, c.pEnd + ETH_HEADER_LEN, RS_PACKETS_IN, C_PACKETS_IN);
  return len + ETH_HEADER_LEN;
}
