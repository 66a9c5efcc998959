/**
 * Which worker owns a packet. The TUN steering eBPF program (native/bpf/, a later issue)
 * must compute exactly this, so that the kernel puts every packet on its owner's queue:
 *
 *   to a local address:  owner = dport % workers   (ports are handed out per worker)
 *   to a VIP:            owner = clientShardHash(client address, cport<<16|vport) % workers
 *
 * The kernel cuts the program's return value to 16 bits and takes it modulo the number of
 * queues, so the hash is 16 bits and both steps are the same in both places.
 */

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
