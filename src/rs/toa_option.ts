/**
 * Decode a TOA from TCP option bytes, the way the real-server side reads it (the eBPF reader
 * does the same walk in C, native/bpf/toa_reader.bpf.c): kind, len, port (network order),
 * then 4 address bytes (len 8, IPv4) or 16 (len 20, IPv6).
 */

import { AF_INET, AF_INET6 } from '../packet/headers.js';
import { formatAddress } from '../service/addr.js';

export interface ToaKinds {
  /** Kinds accepted for an IPv4 TOA (len 8). Default 254. */
  v4: readonly number[];
  /** Kinds accepted for an IPv6 TOA (len 20). Default 254 and 253. */
  v6: readonly number[];
}

export const DEFAULT_TOA_KINDS: ToaKinds = { v4: [254], v6: [254, 253] };

export interface ToaAddress {
  family: 4 | 6;
  address: string;
  port: number;
  kind: number;
}

/** The first TOA in `opts` (the options area of a TCP header), or undefined. */
export function parseToaOptions(opts: Uint8Array, kinds: ToaKinds = DEFAULT_TOA_KINDS): ToaAddress | undefined {
  const view = new DataView(opts.buffer, opts.byteOffset, opts.byteLength);
  for (let i = 0; i < opts.length;) {
    const kind = opts[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = opts[i + 1] ?? 0;
    if (len < 2 || i + len > opts.length) break;
    const v4 = len === 8 && kinds.v4.includes(kind);
    const v6 = len === 20 && kinds.v6.includes(kind);
    if (v4 || v6) {
      const words = Array.from({ length: v4 ? 1 : 4 }, (_, k) => view.getInt32(i + 4 + 4 * k));
      return {
        family: v4 ? 4 : 6,
        address: formatAddress(v4 ? AF_INET : AF_INET6, words),
        port: view.getUint16(i + 2),
        kind,
      };
    }
    i += len;
  }
  return undefined;
}

/** The TCP header inside a packet that starts with its IP header (IPv4, or IPv6 with
 * extension headers skipped), or undefined when it is not TCP or is truncated. */
export function tcpHeaderOf(packet: Uint8Array): Uint8Array | undefined {
  let off: number;
  let next: number;
  const version = (packet[0] ?? 0) >> 4;
  if (version === 4) {
    off = (packet[0]! & 15) * 4;
    next = packet[9] ?? 0;
  } else if (version === 6) {
    off = 40;
    next = packet[6] ?? 0;
    // hop-by-hop, routing, destination options: (next, len in 8-octet units beyond the first 8)
    while ((next === 0 || next === 43 || next === 60) && off + 8 <= packet.length) {
      next = packet[off]!;
      off += (packet[off + 1]! + 1) * 8;
    }
  } else {
    return undefined;
  }
  if (next !== 6 || off + 20 > packet.length) return undefined;
  const doff = (packet[off + 12]! >> 4) * 4;
  if (doff < 20 || off + doff > packet.length) return undefined;
  return packet.subarray(off, off + doff);
}
