import { describe, expect, it } from 'vitest';
import { HANDOFF_SLOTS, HandoffRing, handoffSlots } from '../../src/dataplane/handoff.js';
import { HANDOFF_BUDGET_BYTES, HANDOFF_SLOTS_MAX } from '../../src/constants.js';
import { PacketRing } from '../../src/dataplane/ring.js';

describe('HandoffRing', () => {
  it('passes packets in order, refuses when full, wakes once per drain cycle', () => {
    const h = new HandoffRing();
    const consumer = new HandoffRing(h.sab); // the other thread's view of the same memory
    const src = new PacketRing(1);
    const out = new PacketRing(64);
    expect(h.claimWake()).toBe(true);
    expect(h.claimWake()).toBe(false);
    for (let i = 0; i < HANDOFF_SLOTS; i++) {
      src.put(0, Uint8Array.from([i & 255, 1, 2, 3].slice(0, 1 + (i % 4))));
      expect(h.push(src, 0)).toBe(true);
    }
    expect(h.push(src, 0)).toBe(false);
    let seen = 0;
    for (;;) {
      const n = consumer.drain(out);
      if (n === 0) break;
      for (let k = 0; k < n; k++, seen++) {
        expect(out.lens[k]).toBe(1 + (seen % 4));
        expect(out.bytes[k * out.slotSize]).toBe(seen & 255);
      }
    }
    expect(seen).toBe(HANDOFF_SLOTS);
    expect(h.claimWake()).toBe(true); // drained: a new push must wake again
    expect(h.pending).toBe(0);
  });

  it('few forwarders get deep rings, many the default; the whole stays within the budget', () => {
    expect(handoffSlots(2)).toBe(HANDOFF_SLOTS_MAX);
    expect(handoffSlots(64)).toBe(HANDOFF_SLOTS);
    for (let n = 2; n <= 64; n++) {
      const slots = handoffSlots(n);
      expect(slots & (slots - 1)).toBe(0);
      if (slots > HANDOFF_SLOTS) expect(n * (n - 1) * slots * 2048).toBeLessThanOrEqual(HANDOFF_BUDGET_BYTES);
    }
    // A deep ring and its view from the other thread agree on its size.
    const deep = new HandoffRing(undefined, 1024);
    expect(new HandoffRing(deep.sab).slots).toBe(1024);
  });
});
