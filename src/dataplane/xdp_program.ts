/**
 * The XDP program of the AF_XDP data path (config `io: xdp`, docs/xdp.md), assembled here
 * like the TUN steering program and loaded by the native addon (native/xdp.c). One copy per
 * interface, each naming that interface's XSKMAP:
 *
 *   IPv4 or IPv6 frame to a VIP, a local address or a cluster peer's local address
 *       → bpf_redirect_map(xsks, rx_queue_index, XDP_PASS): the AF_XDP socket of the
 *         forwarder that serves this queue; with no socket there, the kernel's path
 *   anything else (ARP, ND, the node's own traffic, VLAN tags, other addresses) → XDP_PASS
 *
 * Frames the program passes reach the kernel as if nothing were attached: the VIP and local
 * address routes into the TUN device still exist, so those packets are forwarded the TUN way.
 * The addresses are immediates, so the program is rebuilt (and swapped on its bpf_link) when
 * they change.
 */

import { AF_INET, AF_INET6 } from '../packet/headers.js';
import type { ParsedAddress } from '../service/addr.js';
import type { ResolvedService } from '../service/service.js';
import { Asm, ALU64, H, J_EQ, J_GT, J_NE, K, OP_ADD, OP_MOV, W } from './bpf_asm.js';

const XDP_PASS = 2;
const BPF_FUNC_REDIRECT_MAP = 51;
// struct xdp_md
const MD_DATA = 0;
const MD_DATA_END = 4;
const MD_RX_QUEUE_INDEX = 16;
// Ethernet frame offsets
const ETHERTYPE = 12;
const V4_DST = 14 + 16;
const V4_END = 14 + 20;
const V6_DST = 14 + 24;
const V6_END = 14 + 40;
/** The ethertypes as a little-endian 16-bit load sees them. */
const LE_IPV4 = 0x0008;
const LE_IPV6 = 0xdd86;

/** A big-endian address word (as ParsedAddress holds it) as a little-endian load reads it. */
function le(word: number): number {
  return ((word & 0xff) << 24) | ((word & 0xff00) << 8) | ((word >>> 8) & 0xff00) | (word >>> 24) | 0;
}

/** Every address whose frames go to the AF_XDP sockets: VIPs, local addresses, peers'. */
export function xdpAddresses(
  services: readonly ResolvedService[],
  peerLaddrs: readonly ParsedAddress[],
): ParsedAddress[] {
  const seen = new Map<string, ParsedAddress>();
  const add = (family: number, words: Int32Array): void => {
    const af: ParsedAddress['af'] = family === AF_INET ? AF_INET : AF_INET6;
    const w = af === AF_INET ? Int32Array.of(words[0]!, 0, 0, 0) : words;
    seen.set(`${af}:${Array.from(w).join(',')}`, { af, words: w });
  };
  for (const s of services) {
    add(s.af, s.vip);
    for (const l of s.laddrs) add(s.af, l);
  }
  for (const l of peerLaddrs) add(l.af, l.words);
  return [...seen.values()];
}

/** Assemble the program for one interface, whose XSKMAP is `mapFd`. */
export function xdpProgram(mapFd: number, addresses: readonly ParsedAddress[]): Uint8Array {
  const v4 = addresses.filter((a) => a.af === AF_INET);
  const v6 = addresses.filter((a) => a.af !== AF_INET);
  const a = new Asm('XDP');
  a.mov64x(6, 1) // keep the context: r1 is the helper's first argument
    .ldx(W, 2, 6, MD_DATA)
    .ldx(W, 3, 6, MD_DATA_END)
    .mov64x(4, 2)
    .alu64(OP_ADD, 4, V4_END)
    .jx(J_GT, 4, 3, 'pass')
    .ldx(H, 5, 2, ETHERTYPE)
    .j32(J_EQ, 5, LE_IPV4, 'v4');
  if (v6.length > 0) a.j32(J_EQ, 5, LE_IPV6, 'v6');
  a.ja('pass');
  // Every block is emitted only where a jump reaches it (the verifier refuses dead code).
  a.label('v4');
  if (v4.length > 0) a.ldx(W, 5, 2, V4_DST);
  for (const addr of v4) a.j32(J_EQ, 5, le(addr.words[0]!), 'redirect');
  a.ja('pass');
  if (v6.length > 0) {
    a.label('v6').mov64x(4, 2).alu64(OP_ADD, 4, V6_END).jx(J_GT, 4, 3, 'pass');
    v6.forEach((addr, n) => {
      const next = `v6next${n}`;
      for (let k = 0; k < 4; k++) {
        a.ldx(W, 5, 2, V6_DST + 4 * k);
        if (k < 3) a.j32(J_NE, 5, le(addr.words[k]!), next);
        else a.j32(J_EQ, 5, le(addr.words[k]!), 'redirect');
      }
      a.label(next);
    });
    a.ja('pass');
  }
  if (addresses.length > 0) {
    a.label('redirect')
      .ldMap(1, mapFd)
      .ldx(W, 2, 6, MD_RX_QUEUE_INDEX)
      .emit(ALU64 | OP_MOV | K, 3, 0, 0, XDP_PASS) // no socket at that index: pass
      .call(BPF_FUNC_REDIRECT_MAP)
      .exit();
  }
  a.label('pass')
    .emit(ALU64 | OP_MOV | K, 0, 0, 0, XDP_PASS)
    .exit();
  return a.bytes();
}
