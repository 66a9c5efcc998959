import { describe, expect, it } from 'vitest';
import { HandoffRing, handoffRingBytes } from '../../src/dataplane/handoff.js';
import {
  GSO_SLOT_SIZE_BYTES,
  HANDOFF_BUDGET_BYTES,
  HANDOFF_RING_MAX_BYTES,
  HANDOFF_RING_MIN_BYTES,
} from '../../src/constants.js';
import { PacketRing } from '../../src/dataplane/ring.js';

const PATTERN = Uint8Array.from({ length: GSO_SLOT_SIZE_BYTES + 256 }, (_, k) => k & 255);

/** A packet whose bytes say which packet it is and where in it they are. */
function packet(seq: number, len: number): Uint8Array {
  const from = (seq * 7) & 255;
  return PATTERN.slice(from, from + len);
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

describe('HandoffRing', () => {
  it('passes packets in order, refuses when full, wakes once per drain cycle', () => {
    const h = new HandoffRing(undefined, 4096);
    const consumer = new HandoffRing(h.sab); // the other thread's view of the same memory
    expect(consumer.capacity).toBe(4096);
    const src = new PacketRing(1);
    const out = new PacketRing(64);
    expect(h.claimWake()).toBe(true);
    expect(h.claimWake()).toBe(false);
    // Records of 16 bytes (8 of header, 1..4 bytes padded to 8): 256 fill 4096 bytes.
    let pushed = 0;
    for (;;) {
      src.put(0, Uint8Array.from([pushed & 255, 1, 2, 3].slice(0, 1 + (pushed % 4))));
      if (!h.push(src, 0)) break;
      pushed++;
    }
    expect(pushed).toBe(256);
    let seen = 0;
    for (;;) {
      const n = consumer.drain(out);
      if (n === 0) break;
      for (let k = 0; k < n; k++, seen++) {
        expect(out.lens[k]).toBe(1 + (seen % 4));
        expect(out.bytes[k * out.slotSize]).toBe(seen & 255);
      }
    }
    expect(seen).toBe(pushed);
    expect(h.claimWake()).toBe(true); // drained: a new push must wake again
    expect(h.pending).toBe(0);
  });

  it('takes a GSO super-packet (with its virtio_net_hdr) wherever the ring stands, never split', () => {
    const h = new HandoffRing(); // the smallest ring a deployment gets
    const big = new PacketRing(1, GSO_SLOT_SIZE_BYTES);
    const small = new PacketRing(1);
    const out = new PacketRing(4, GSO_SLOT_SIZE_BYTES);
    const gso = GSO_SLOT_SIZE_BYTES - 64;
    // Move the tail around the ring with small packets, then hand a super-packet over at each
    // position: near the end it cannot fit, so it goes to offset 0 behind a wrap marker.
    for (let round = 0; round < 40; round++) {
      for (let k = 0; k < 1 + (round % 3); k++) {
        small.put(0, packet(round * 10 + k, 1400 + round));
        expect(h.push(small, 0)).toBe(true);
      }
      big.put(0, packet(round, gso));
      expect(h.push(big, 0)).toBe(true);
      const got: Uint8Array[] = [];
      for (let n = h.drain(out); n > 0; n = h.drain(out)) for (let k = 0; k < n; k++) got.push(out.get(k));
      expect(got.length).toBe(2 + (round % 3));
      expect(same(got.at(-1)!, packet(round, gso))).toBe(true);
      got.slice(0, -1).forEach((p, k) => expect(same(p, packet(round * 10 + k, 1400 + round))).toBe(true));
      expect(h.pending).toBe(0);
    }
    expect(h.maxPacket).toBeGreaterThanOrEqual(GSO_SLOT_SIZE_BYTES);
  });

  it('keeps every byte and the order under any interleaving of pushes and drains', () => {
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const h = new HandoffRing(undefined, 1 << 18);
    const consumer = new HandoffRing(h.sab);
    const src = new PacketRing(1, GSO_SLOT_SIZE_BYTES);
    const out = new PacketRing(8, GSO_SLOT_SIZE_BYTES);
    const sent: number[] = [];
    let next = 0;
    let checked = 0;
    for (let step = 0; step < 4000; step++) {
      if (rand(3) > 0) {
        const len = rand(10) === 0 ? 1 + rand(src.slotSize) : 1 + rand(1600);
        src.put(0, packet(next, len));
        if (h.push(src, 0)) {
          sent.push(len);
          next++;
        } else expect(h.pending + 2 * (len + 16)).toBeGreaterThan(h.capacity); // refused only when it cannot fit
      } else {
        const n = consumer.drain(out);
        for (let k = 0; k < n; k++, checked++) expect(same(out.get(k), packet(checked, sent[checked]!))).toBe(true);
      }
    }
    for (let n = consumer.drain(out); n > 0; n = consumer.drain(out))
      for (let k = 0; k < n; k++, checked++) expect(same(out.get(k), packet(checked, sent[checked]!))).toBe(true);
    expect(checked).toBe(next);
    expect(next).toBeGreaterThan(1000);
  });

  it('refuses a packet larger than half the ring', () => {
    const h = new HandoffRing(undefined, 4096);
    const src = new PacketRing(1, 4096);
    src.put(0, new Uint8Array(h.maxPacket + 1));
    expect(h.push(src, 0)).toBe(false);
    src.put(0, new Uint8Array(h.maxPacket));
    expect(h.push(src, 0)).toBe(true);
  });

  it('few forwarders get deep rings, many the smallest; the whole stays within the budget', () => {
    expect(handoffRingBytes(2)).toBe(HANDOFF_RING_MAX_BYTES);
    expect(handoffRingBytes(64)).toBe(HANDOFF_RING_MIN_BYTES);
    for (let n = 2; n <= 64; n++) {
      const bytes = handoffRingBytes(n);
      expect(bytes & (bytes - 1)).toBe(0);
      if (bytes > HANDOFF_RING_MIN_BYTES) expect(n * (n - 1) * bytes).toBeLessThanOrEqual(HANDOFF_BUDGET_BYTES);
    }
    // A deep ring and its view from the other thread agree on its size.
    const deep = new HandoffRing(undefined, 1 << 20);
    expect(new HandoffRing(deep.sab).capacity).toBe(1 << 20);
  });
});
