/**
 * The TUN steering program: a BPF_PROG_TYPE_SOCKET_FILTER program, assembled here and
 * attached by the native addon with TUNSETSTEERINGEBPF, that returns the shard of each
 * packet the kernel routes into the device, and the kernel takes it modulo the queues: its
 * owner worker, the same function as shard.ts (S = SESSION_SHARDS):
 *
 *   TCP/UDP to a local address:   dport % S
 *   TCP/UDP to a VIP:             clientShardHash(src, sport) % S
 *   other TCP/UDP (NAT replies):  clientShardHash(dst, dport) % S  (only with NAT services;
 *                                 without, every other packet is taken as to a VIP)
 *   a fragment (IPv4 MF or offset, clientShardHash(src ^ dst, identification): every fragment
 *   IPv6 fragment header):        of a datagram on one queue, whose engine reassembles it
 *                                 and hands it over if another worker owns it
 *   anything else (ICMP, …):      0; the engine hands it over if another worker owns it
 *
 * IPv6 TCP/UDP is found behind Hop-by-Hop and Destination Options headers, as the engine
 * finds it (packet/ipv6_ext.ts).
 *
 * The kernel runs it with the IP header at offset 0. Packet bytes are read with the
 * classic LD_ABS/LD_IND loads (they return big-endian words as numbers, like DataView, and
 * end the program with 0 when out of bounds). The local addresses are compared as
 * immediates (and the VIPs, with NAT services), so the program is rebuilt when they change
 * (reload).
 */

import { IPV6_OPTION_HEADERS_MAX, SESSION_SHARDS } from '../constants.js';
import { AF_INET, IPV6_HEADER_LEN } from '../packet/headers.js';
import type { ParsedAddress } from '../service/addr.js';
import type { ResolvedService } from '../service/service.js';

import {
  Asm,
  ALU64,
  B,
  H,
  J_EQ,
  J_NE,
  K,
  OP_ADD,
  OP_AND,
  OP_LSH,
  OP_MOD,
  OP_MOV,
  OP_MUL,
  OP_RSH,
  OP_XOR,
  W,
} from './bpf_asm.js';

// clientShardHash's (fmix32) multipliers, as int32 immediates.
const M1 = 0x85ebca6b | 0;
const M2 = 0xc2b2ae35 | 0;

/** r0 ^= r0 >>> n, with r1 as scratch. */
function xorShift(a: Asm, n: number): void {
  a.mov64x(1, 0).alu32(OP_RSH, 1, n).alu32x(OP_XOR, 0, 1);
}

/** The shard of r9 (xor of the address words) and r0 (the port): clientShardHash % S; exit. */
function hashAndExit(a: Asm): void {
  a.alu32x(OP_XOR, 0, 9);
  xorShift(a, 16);
  a.alu32(OP_MUL, 0, M1);
  xorShift(a, 13);
  a.alu32(OP_MUL, 0, M2);
  xorShift(a, 16);
  a.alu32(OP_AND, 0, 0xffff).alu32(OP_MOD, 0, SESSION_SHARDS).exit();
}

/** Assemble the steering program for the local addresses (and, with NAT services, the
 * VIPs) of `services`, and `peerLaddrs`: a cluster's other nodes' local addresses (address
 * words and family), whose sessions this node installs by the same port rule and whose
 * packets it receives once it takes a peer over. */
export function steeringProgram(
  services: readonly ResolvedService[],
  peerLaddrs: readonly ParsedAddress[] = [],
): Uint8Array {
  const lips4 = new Set<number>();
  const lips6 = new Map<string, Int32Array>();
  for (const l of peerLaddrs) {
    if (l.af === AF_INET) lips4.add(l.words[0]!);
    else lips6.set(Array.from(l.words).join(','), l.words);
  }
  const vips4 = new Set<number>();
  const vips6 = new Map<string, Int32Array>();
  for (const s of services) {
    for (const l of s.laddrs) {
      if (s.af === AF_INET) lips4.add(l[0]!);
      else lips6.set(Array.from(l).join(','), l);
    }
    if (s.af === AF_INET) vips4.add(s.vip[0]!);
    else vips6.set(Array.from(s.vip).join(','), s.vip);
  }
  // Without NAT services everything not to a local address is to a VIP: no VIP test.
  const nat = services.some((s) => s.mode === 'nat');
  const a = new Asm('steering');
  a.mov64x(6, 1) // LD_ABS/LD_IND take the skb from r6
    .ldAbs(B, 0)
    .mov64x(7, 0)
    .alu32(OP_RSH, 7, 4)
    .j32(J_EQ, 7, 6, 'v6')
    .j32(J_NE, 7, 4, 'zero');
  // IPv4: r8 = header length.
  a.alu32(OP_AND, 0, 0x0f).alu32(OP_LSH, 0, 2).mov64x(8, 0);
  a.ldAbs(H, 6).alu32(OP_AND, 0, 0x3fff).j32(J_NE, 0, 0, 'v4frag'); // MF or an offset
  a.ldAbs(B, 9).j32(J_EQ, 0, 6, 'v4l4').j32(J_EQ, 0, 17, 'v4l4').ja('zero');
  // Every block is emitted only where a jump or a fall-through reaches it: the verifier
  // refuses a program with an unreachable instruction (a v4-only service set has no IPv6
  // local address to jump to, for one).
  a.label('v4l4').ldAbs(W, 16);
  for (const w of lips4) a.j32(J_EQ, 0, w, 'v4lip');
  if (nat) {
    for (const w of vips4) a.j32(J_EQ, 0, w, 'v4vip');
    // A NAT real server's reply: the client is the destination.
    a.mov64x(9, 0).ldInd(H, 8, 2);
    hashAndExit(a);
  }
  if (!nat || vips4.size > 0) {
    a.label('v4vip').ldAbs(W, 12).mov64x(9, 0).ldInd(H, 8, 0);
    hashAndExit(a);
  }
  if (lips4.size > 0) a.label('v4lip').ldInd(H, 8, 2).alu32(OP_MOD, 0, SESSION_SHARDS).exit();
  // A fragment: by its datagram (addresses and identification), so that one worker gets all
  // of its fragments and reassembles them (only the first has ports).
  a.label('v4frag').ldAbs(W, 12).mov64x(9, 0).ldAbs(W, 16).alu32x(OP_XOR, 9, 0).ldAbs(H, 4);
  hashAndExit(a);
  // IPv6: r8 = where its TCP/UDP or fragment header starts, past at most
  // IPV6_OPTION_HEADERS_MAX Hop-by-Hop and Destination Options headers (packet/ipv6_ext.ts:
  // the engine looks past them too; it drops what else there is, so anything else goes to 0).
  a.label('v6')
    .emit(ALU64 | OP_MOV | K, 8, 0, 0, IPV6_HEADER_LEN)
    .ldAbs(B, 6)
    .j32(J_EQ, 0, 6, 'v6l4')
    .j32(J_EQ, 0, 17, 'v6l4')
    .j32(J_EQ, 0, 44, 'v6frag')
    .j32(J_EQ, 0, 0, 'v6opt0')
    .j32(J_EQ, 0, 60, 'v6opt0')
    .ja('zero');
  for (let k = 0; k < IPV6_OPTION_HEADERS_MAX; k++) {
    // r8 += (length + 1) × 8; r0 = the next header.
    a.label(`v6opt${k}`).ldInd(B, 8, 1).alu32(OP_ADD, 0, 1).alu32(OP_LSH, 0, 3).mov64x(7, 0);
    a.ldInd(B, 8, 0).alu32x(OP_ADD, 8, 7).j32(J_EQ, 0, 6, 'v6l4').j32(J_EQ, 0, 17, 'v6l4').j32(J_EQ, 0, 44, 'v6frag');
    if (k + 1 < IPV6_OPTION_HEADERS_MAX) a.j32(J_EQ, 0, 60, `v6opt${k + 1}`);
    a.ja('zero');
  }
  a.label('v6l4');
  const match6 = (addrs: Iterable<Int32Array>, hit: string, tag: string): void => {
    let n = 0;
    for (const words of addrs) {
      const next = `${tag}${n++}`;
      for (let k = 0; k < 4; k++) {
        a.ldAbs(W, 24 + 4 * k);
        if (k < 3) a.j32(J_NE, 0, words[k]!, next);
        else a.j32(J_EQ, 0, words[k]!, hit);
      }
      a.label(next);
    }
  };
  match6(lips6.values(), 'v6lip', 'v6lipnext');
  if (nat) {
    match6(vips6.values(), 'v6vip', 'v6vipnext');
    a.ldAbs(W, 24).mov64x(9, 0);
    for (const off of [28, 32, 36]) a.ldAbs(W, off).alu32x(OP_XOR, 9, 0);
    a.ldInd(H, 8, 2);
    hashAndExit(a);
  }
  if (!nat || vips6.size > 0) {
    a.label('v6vip').ldAbs(W, 8).mov64x(9, 0);
    for (const off of [12, 16, 20]) a.ldAbs(W, off).alu32x(OP_XOR, 9, 0);
    a.ldInd(H, 8, 0);
    hashAndExit(a);
  }
  if (lips6.size > 0) a.label('v6lip').ldInd(H, 8, 2).alu32(OP_MOD, 0, SESSION_SHARDS).exit();
  a.label('v6frag').ldAbs(W, 8).mov64x(9, 0);
  for (let off = 12; off < 40; off += 4) a.ldAbs(W, off).alu32x(OP_XOR, 9, 0);
  a.ldInd(W, 8, 4); // the fragment header's identification
  hashAndExit(a);
  a.label('zero')
    .emit(ALU64 | OP_MOV | K, 0, 0, 0, 0)
    .exit();
  return a.bytes();
}
