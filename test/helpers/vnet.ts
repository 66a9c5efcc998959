/**
 * The virtio_net_hdr side of TUN offloads, as the kernel writes and reads it: a packet's
 * partial checksum (NEEDS_CSUM), its completion, and the header of a GSO super-packet.
 */

import { VNET_HDR_LEN } from '../../src/constants.js';
import { refChecksum, upperLayer } from './packets.js';

export const NEEDS_CSUM = 1;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;

/** The IP headers' length (IPv6: its extension headers too). */
function l3len(p: Uint8Array): number {
  return upperLayer(p).at;
}

function csumOffset(p: Uint8Array): number {
  const { at, proto } = upperLayer(p);
  return at + (proto === 6 ? 16 : 6);
}

/** Replace the full L4 checksum by the partial one (folded pseudo-header sum), as Linux does. */
export function makePartial(p: Uint8Array): Uint8Array {
  const q = p.slice();
  const dv = new DataView(q.buffer);
  const v4 = q[0]! >> 4 === 4;
  const l3 = l3len(q);
  const proto = upperLayer(q).proto;
  const l4len = q.length - l3;
  const pseudo = new Uint8Array(v4 ? 12 : 40);
  const pv = new DataView(pseudo.buffer);
  if (v4) {
    pseudo.set(q.subarray(12, 20), 0);
    pseudo[9] = proto;
    pv.setUint16(10, l4len);
  } else {
    pseudo.set(q.subarray(8, 40), 0);
    pv.setUint32(32, l4len);
    pseudo[39] = proto;
  }
  dv.setUint16(csumOffset(q), ~refChecksum(pseudo) & 0xffff);
  return q;
}

/** What the kernel does with a NEEDS_CSUM packet: sum from csum_start to the end. */
export function complete(p: Uint8Array): Uint8Array {
  const q = p.slice();
  const l3 = l3len(q);
  const at = csumOffset(q);
  new DataView(q.buffer).setUint16(at, refChecksum(q.subarray(l3)));
  return q;
}

export function vnetHeader(p: Uint8Array, gsoType: number, gsoSize: number): Uint8Array {
  const h = new Uint8Array(VNET_HDR_LEN);
  const dv = new DataView(h.buffer);
  h[0] = NEEDS_CSUM;
  h[1] = gsoType;
  const l3 = l3len(p);
  const thl = ((p[l3 + 12]! >> 4) & 15) * 4;
  dv.setUint16(2, l3 + thl, true); // hdr_len (little-endian: legacy virtio on x86)
  dv.setUint16(4, gsoSize, true);
  dv.setUint16(6, l3, true); // csum_start
  dv.setUint16(8, csumOffset(p) - l3, true); // csum_offset
  return h;
}
