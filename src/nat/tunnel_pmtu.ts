/**
 * TUNNEL's path MTU toward each real server, learned from the errors routers send the tunnel
 * source about outer packets that did not fit: IPv4 "fragmentation needed" (RFC 1191) and
 * ICMPv6 "packet too big" (RFC 8201) quoting a packet tunvs wrote — from a TUNNEL service's
 * tunnel source to one of its real servers, in its encapsulation. The LB's own kernel sends
 * one when its route to a server has a smaller MTU than the TUN device (an overlay, a VPN).
 * IPVS has this from the kernel's route cache (dst_mtu); tunvs keeps it itself, per real
 * server, in shared memory: a client's packets to one server arrive on every worker.
 * Without it a path MTU below tun.mtu is a black hole for the clients' larger segments.
 *
 *   learnTunnelMtu   (an ICMP error to the LB) about a tunnel packet: the real servers it
 *                    went to get the MTU it names for TUNNEL_PMTU_EXPIRE_SEC, never below
 *                    the family's minimum and never raised before that (a router says
 *                    "smaller" only); the error is used up (HELD, tunnel_mtu_learned)
 *   tunnelMtu        what a packet of session `r` may be with its outer header: the learned
 *                    MTU while it lasts, else the TUN device's; modes/tunnel.ts answers a
 *                    client's larger packet with "too big" for it less the outer header
 */

import { RECORD_WORDS, recServer } from '../conn/layout.js';
import {
  REAL_SERVERS_MAX,
  SERVICES_MAX,
  TUNNEL_PMTU_EXPIRE_SEC,
  TUNNEL_PMTU_MIN_V4,
  TUNNEL_PMTU_MIN_V6,
} from '../constants.js';
import { C_TUNNEL_MTU_LEARNED } from '../dataplane/counters.js';
import {
  AF_INET,
  ICMP_DEST_UNREACH,
  ICMP_FRAG_NEEDED,
  ICMPV6_PACKET_TOO_BIG,
  IPPROTO_GRE,
  IPPROTO_IPIP,
  IPPROTO_IPV6,
  IPPROTO_UDP,
  IPV6_HEADER_LEN,
  IPV6_NEXT,
} from '../packet/headers.js';
import type { NatContext } from './context.js';
import { MODE_TUNNEL } from './modes/mode.js';
import { HELD } from './verdict.js';

/** The learned MTUs by real-server id (0: none) and until when (ms), shared by the workers. */
export class TunnelMtuTable {
  readonly sab: SharedArrayBuffer;
  readonly mtu: Int32Array;
  readonly untilMs: Float64Array;

  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer(REAL_SERVERS_MAX * 12);
    this.untilMs = new Float64Array(this.sab, 0, REAL_SERVERS_MAX);
    this.mtu = new Int32Array(this.sab, REAL_SERVERS_MAX * 8, REAL_SERVERS_MAX);
  }

  /** Real server `id`'s MTU at `nowMs`, 0 when none is learned (or it ran out). */
  get(id: number, nowMs: number): number {
    const m = this.mtu[id]!;
    return m !== 0 && this.untilMs[id]! > nowMs ? m : 0;
  }

  /** Lower real server `id`'s MTU to `mtu` (a higher one than it has is ignored while it
   * lasts). Whether it changed. */
  lower(id: number, mtu: number, nowMs: number): boolean {
    const had = this.get(id, nowMs);
    if (had !== 0 && had <= mtu) return false;
    this.untilMs[id] = nowMs + TUNNEL_PMTU_EXPIRE_SEC * 1000;
    this.mtu[id] = mtu;
    return true;
  }
}

/** The most a packet of session `r` may be with its outer header (TUNNEL). */
export function tunnelMtu(c: NatContext, r: number): number {
  const learned = c.tunnelMtus.get(recServer(c.table.rec, r * RECORD_WORDS), c.nowMs);
  return learned !== 0 && learned < c.opts.mtu ? learned : c.opts.mtu;
}

/**
 * The ICMP error in hand (its type in c.pFlags): when it says a tunnel packet was too big
 * for the path, lower the MTU of the real servers that packet went to and use the error up
 * (HELD); else 0, for the session path (icmp_errors.ts natIcmp) to take it.
 */
export function learnTunnelMtu(c: NatContext): number {
  const b = c.buf;
  const dv = c.dv;
  const v4 = c.pAf === AF_INET;
  const icmp = c.pL4;
  if (v4 ? c.pFlags !== ICMP_DEST_UNREACH || b[icmp + 1] !== ICMP_FRAG_NEEDED : c.pFlags !== ICMPV6_PACKET_TOO_BIG)
    return 0;
  // The quoted outer header: IPv4 without options, or IPv6 with the encapsulation right after
  // the fixed header (as tunvs writes them), and for GUE the UDP ports.
  const q = icmp + 8;
  const ipLen = v4 ? 20 : IPV6_HEADER_LEN;
  if (q + ipLen + 4 > c.pEnd || b[q]! >>> 4 !== (v4 ? 4 : 6) || (v4 && (b[q]! & 15) !== 5)) return 0;
  const proto = b[q + (v4 ? 9 : IPV6_NEXT)]!;
  // What the quoted packet is: IP-in-IP (0), GRE (1) or UDP, GUE's if to a service's port (2).
  const kind = proto === IPPROTO_GRE ? 1 : proto === IPPROTO_UDP ? 2 : 0;
  if (kind === 0 && proto !== (v4 ? IPPROTO_IPIP : IPPROTO_IPV6)) return 0;
  const port = kind === 2 ? dv.getUint16(q + ipLen + 2) : 0;
  const reported = v4 ? dv.getUint16(icmp + 6) : dv.getUint32(icmp + 4);
  // RFC 1191's routers that do not name the MTU (0): nothing to learn from.
  if (reported === 0) return 0;
  const mtu = Math.max(reported, v4 ? TUNNEL_PMTU_MIN_V4 : TUNNEL_PMTU_MIN_V6);
  const srcAt = q + (v4 ? 12 : 8);
  const dstAt = q + (v4 ? 16 : 24);
  const words = v4 ? 1 : 4;
  const s = c.services;
  let matched = false;
  let lowered = false;
  for (let svc = 0; svc < SERVICES_MAX; svc++) {
    // A TUNNEL service of this family, encapsulation and tunnel source.
    if (s.alive[svc] !== 1 || s.mode[svc] !== MODE_TUNNEL || s.af[svc] !== c.pAf) continue;
    const servicePort = s.tunnelPort[svc]!;
    if ((servicePort !== 0 ? 2 : s.tunnelHeader[svc] !== 0 ? 1 : 0) !== kind || servicePort !== port) continue;
    if (!sameAddress(dv, srcAt, s.tunnelSrc, svc * 4, words)) continue;
    // Its real servers at the quoted destination.
    const pool = s.pools[svc];
    for (let i = 0; pool !== undefined && i < pool.count; i++) {
      const id = pool.ids[i]!;
      if (!sameAddress(dv, dstAt, s.rsAddr, id * 4, words)) continue;
      matched = true;
      if (c.tunnelMtus.lower(id, mtu, c.nowMs)) lowered = true;
    }
  }
  if (!matched) return 0;
  if (lowered) c.counters[C_TUNNEL_MTU_LEARNED]!++;
  return HELD;
}

/** Whether the `words` address words at `at` of the packet are `words` of `a` from `from`. */
function sameAddress(dv: DataView, at: number, a: Int32Array, from: number, words: number): boolean {
  for (let k = 0; k < words; k++) if (dv.getInt32(at + 4 * k) !== a[from + k]) return false;
  return true;
}
