/**
 * Which worker owns a packet: one rule for every forwarding mode, used by the engine, the
 * ICMP path (on the quoted packet), HA sync installs (modes/mode.ts owner) and mirrored by
 * the TUN steering eBPF program (steering.ts), so that the kernel puts every packet on its
 * owner's queue. A packet's shard comes first, its owner is the shard's:
 *
 *   to a VIP:            shard = clientShardHash(client address, cport) % SESSION_SHARDS
 *   to a local address:  shard = dport % SESSION_SHARDS   (FULLNAT hands each session a
 *                        local port in its client's shard, service/laddr.ts; a cluster
 *                        peer's local addresses count, ServiceTable.isLocalAddress)
 *   anything else:       shard = clientShardHash(dst address, dport) % SESSION_SHARDS
 *                        (a NAT real server's reply to the client; with no NAT service
 *                        configured nothing legitimate arrives so, and the rule is skipped)
 *   owner                = shard % workers
 *   a fragment:          its datagram's owner, known once it is whole: the worker the steering
 *                        program picked (by addresses and identification) reassembles it and
 *                        hands the fragments over (Engine.handovers)
 *
 * The shard count is a constant, not the worker count, so that a node with other workers
 * (a peer, or this one restarted) finds each synced session's owner by the same rule
 * (constants.ts SESSION_SHARDS). The steering program returns the shard; the kernel cuts it
 * to 16 bits and takes it modulo the number of queues, the same two steps as here.
 */

import { SESSION_SHARDS } from '../constants.js';
import { gcd } from '../service/sched/scheduler.js';
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

/** The worker (of `workers`) that owns `shard`. */
export function shardWorker(shard: number, workers: number): number {
  return shard % workers;
}

/** Shard of a session by its client's address and port (FULLNAT: the shard its local port
 * is chosen in). */
export function clientShard(a0: number, a1: number, a2: number, a3: number, cport: number): number {
  return clientShardHash(a0, a1, a2, a3, cport) % SESSION_SHARDS;
}

/** Owner of a session by its client's address and port (every mode but FULLNAT, and the
 * client side of FULLNAT before its local port is chosen). */
export function clientWorker(a0: number, a1: number, a2: number, a3: number, cport: number, workers: number): number {
  return shardWorker(clientShard(a0, a1, a2, a3, cport), workers);
}

/** Owner of a FULLNAT session by its local port. */
export function localPortWorker(port: number, workers: number): number {
  return shardWorker(port % SESSION_SHARDS, workers);
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
  if (!services.natReplies || services.isLocalAddress(af, d0, d1, d2, d3)) return localPortWorker(dport, workers);
  return clientWorker(d0, d1, d2, d3, dport, workers);
}

/**
 * Whether this node (`workers`) finds the owner of every session a node that cut its
 * sessions into `peerShards` made: its shards name each of ours whole (they are a multiple of
 * SESSION_SHARDS), or both are multiples of our worker count (the owner is then the port or
 * hash modulo the workers on both). A node of the version before cut them into its workers.
 */
export function shardsAgree(peerShards: number, workers: number): boolean {
  return peerShards % SESSION_SHARDS === 0 || (SESSION_SHARDS % workers === 0 && peerShards % workers === 0);
}

/**
 * After how many shards every node of `workerCounts` (this one's and its peers') gives a shard
 * the same owner again: shards s and s + k × period have one owner on each node (the counts'
 * least common multiple). A FULLNAT session whose client's shard is full borrows a port from a
 * shard of the same class first (service/laddr.ts), so every node serves it. SESSION_SHARDS:
 * no other shard is in the class.
 */
export function ownerPeriod(workerCounts: readonly number[]): number {
  let period = 1;
  for (const w of workerCounts) {
    period = (period / gcd(period, w)) * w;
    if (period >= SESSION_SHARDS) return SESSION_SHARDS;
  }
  return period;
}
