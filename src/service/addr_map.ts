/**
 * A small open-addressing map from (meta, port, address) to an int, built by the control
 * plane and read per packet without allocation: services by (af, proto, VIP, port), and
 * the sets of VIP and local addresses used to name the reason of a drop.
 */

const KEY_WORDS = 6; // meta, port, a0..a3

export class AddrPortMap {
  private readonly keys: Int32Array;
  private readonly vals: Int32Array;
  private readonly mask: number;
  private size = 0;

  constructor(maxEntries: number) {
    let slots = 8;
    while (slots < maxEntries * 2) slots *= 2;
    this.keys = new Int32Array(slots * KEY_WORDS);
    this.vals = new Int32Array(slots).fill(-1);
    this.mask = slots - 1;
  }

  /** Mixes every key word into the low bits (the map is small, its keys the operator's, so
   * no keyed hash is needed): xor of rotated words, then MurmurHash3's finaliser. */
  private hash(meta: number, port: number, a0: number, a1: number, a2: number, a3: number): number {
    let h = meta ^ Math.imul(port, 0x9e3779b1) ^ a0 ^ ((a1 << 8) | (a1 >>> 24));
    h ^= ((a2 << 16) | (a2 >>> 16)) ^ ((a3 << 24) | (a3 >>> 8));
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }

  set(meta: number, port: number, addr: ArrayLike<number>, value: number): void {
    if (value < 0) throw new RangeError('AddrPortMap values must be >= 0');
    if ((this.size + 1) * 2 > this.vals.length) throw new RangeError('AddrPortMap is full');
    let slot = this.hash(meta, port, addr[0]!, addr[1]!, addr[2]!, addr[3]!) & this.mask;
    for (;;) {
      const o = slot * KEY_WORDS;
      if (this.vals[slot] === -1) {
        this.keys[o] = meta;
        this.keys[o + 1] = port;
        for (let i = 0; i < 4; i++) this.keys[o + 2 + i] = addr[i]!;
        this.vals[slot] = value;
        this.size++;
        return;
      }
      if (this.matches(o, meta, port, addr[0]!, addr[1]!, addr[2]!, addr[3]!)) {
        this.vals[slot] = value;
        return;
      }
      slot = (slot + 1) & this.mask;
    }
  }

  private matches(o: number, meta: number, port: number, a0: number, a1: number, a2: number, a3: number): boolean {
    const k = this.keys;
    return (
      k[o] === meta && k[o + 1] === port && k[o + 2] === a0 && k[o + 3] === a1 && k[o + 4] === a2 && k[o + 5] === a3
    );
  }

  /** The value stored for the key, or −1. */
  get(meta: number, port: number, a0: number, a1: number, a2: number, a3: number): number {
    let slot = this.hash(meta, port, a0, a1, a2, a3) & this.mask;
    for (let probes = 0; probes <= this.mask; probes++) {
      const v = this.vals[slot]!;
      if (v === -1) return -1;
      if (this.matches(slot * KEY_WORDS, meta, port, a0, a1, a2, a3)) return v;
      slot = (slot + 1) & this.mask;
    }
    return -1;
  }
}
