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

export function clientShardHash(a0: number, a1: number, a2: number, a3: number, ports: number): number {
  let h = Math.imul(a0 ^ a1 ^ a2 ^ a3 ^ ports, 0x9e3779b1);
  h ^= h >>> 16;
  return h & 0xffff;
}
