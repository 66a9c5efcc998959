/**
 * `tunvs stats --gc`: a full collection on demand, without node's --expose-gc, so the heap
 * figures say what is live.
 */

import { describe, expect, it } from 'vitest';
import { fullGc, heapBytes } from '../../src/control/memory.js';

/** 16 MiB of arrays, garbage once this returns. */
function litter(): number {
  const junk: number[][] = [];
  for (let i = 0; i < 2048; i++) junk.push(new Array<number>(1024).fill(i));
  return junk.length;
}

describe('memory', () => {
  it('fullGc frees the garbage a heap read would count', () => {
    fullGc();
    const live = heapBytes();
    expect(litter()).toBe(2048);
    const before = heapBytes();
    expect(before - live).toBeGreaterThan(8 << 20);
    fullGc();
    expect(heapBytes() - live).toBeLessThan(4 << 20);
  });
});
