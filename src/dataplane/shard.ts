/**
 * Which worker owns a packet: one rule for every forwarding mode, used by the engine, the
 * ICMP path (on the quoted packet), HA sync installs (modes/mode.ts owner) and mirrored by
 * the TUN steering eBPF program (steering.ts), so that the kernel puts every packet on its
 * owner's queue:
 *
 *   to a VIP:            owner = clientShardHash(client address, cport) % workers
 *   to a local address:  owner = dport % workers   (FULLNAT: ports are handed out per worker;
 *                        a cluster peer's local addresses count, ServiceTable.isLocalAddress)
 *   anything else:       owner = clientShardHash(dst address, dport) % workers
 *                        (a NAT real server's reply to the client; with no NAT service
 *                        configured nothing legitimate arrives so, and the rule is skipped)
 *   a fragment:          its datagram's owner, known once it is whole: the worker the steering
 *                        program picked (by addresses and identification) reassembles it and
 *                        hands the fragments over (Engine.handovers)
 *
 * The kernel cuts the program's return value to 16 bits and takes it modulo the number of
 * queues, so the hash is 16 bits and both steps are the same in both places.
 */

import type { ServiceTable } from '../service/service.js';

/**
 * The xor of the client address words and the ports word, through MurmurHash3's 32-bit
 * finaliser so every input bit reaches the low 16 bits (a single multiply does not: Linux
 * picks even ephemeral ports for connect(), and one client's flows would all land on one
 * worker). Only 32-bit multiplies, shifts and xors: the BPF program does the same.
 */
export function clientShardHash(a0: number, a1: number, a2: number, a3: number, ports: number): number {
  let h = a0 ^ a1 ^ a2 ^ a3 ^ ports;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h & 0xffff;
}

/** Owner of a session by its client's address and port (every mode but FULLNAT, and the
 * client side of FULLNAT before its local port is chosen). */
export function clientWorker(a0: number, a1: number, a2: number, a3: number, cport: number, workers: number): number {
  return clientShardHash(a0, a1, a2, a3, cport) % workers;
}

/** Owner of a TCP/UDP packet that is not to a VIP service (address words d0..d3 of its
 * destination, family af): a local address's by the port; anything else, when NAT services
 * exist, is a real server's reply to a client and goes where the client's packets went. */
export function replyWorker(
  services: ServiceTable,
  af: number,
  d0: number,
  d1: number,
  d2: number,
  d3: number,
  dport: number,
  workers: number,
): number {
  if (!services.natReplies || services.isLocalAddress(af, d0, d1, d2, d3)) return dport % workers;
  return clientShardHash(d0, d1, d2, d3, dport) % workers;
}
