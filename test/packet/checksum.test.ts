import { describe, expect, it } from 'vitest';
import {
  csumFinish,
  csumFromSum,
  csumReplace16,
  csumReplace32,
  csumReplaceSum,
  csumStart,
  sumWords,
} from '../../src/packet/checksum.js';
import { refChecksum } from '../helpers/packets.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

describe('checksum', () => {
  it('full sum matches the reference for odd and even lengths and offsets', () => {
    const r = rng(1);
    for (let n = 0; n < 200; n++) {
      const len = r() % 300;
      const buf = Uint8Array.from({ length: len + 3 }, () => r() & 255);
      // Words start at the given offset: compare against the reference on the same slice.
      for (const off of [0, 2]) {
        expect(csumFromSum(sumWords(buf, off, len))).toBe(refChecksum(buf.subarray(off, off + len)));
      }
    }
  });

  it('segment-sized sums (read as 32-bit words) match the reference at every alignment, in shared memory too', () => {
    const r = rng(3);
    for (let n = 0; n < 300; n++) {
      const len = 100 + (r() % 1900);
      const shared = new Uint8Array(new SharedArrayBuffer(len + 16));
      for (let i = 0; i < shared.length; i++) shared[i] = n % 5 === 0 ? 0xff : r() & 255;
      // A view that itself starts at an odd or even byte of its buffer (ring slots do).
      const view = shared.subarray(n % 4);
      for (const off of [0, 1, 2, 3, 6]) {
        expect(csumFromSum(sumWords(view, off, len))).toBe(refChecksum(view.subarray(off, off + len)));
      }
    }
  });

  it('sums 64 KiB of 0xff without overflow', () => {
    const buf = new Uint8Array(65535).fill(0xff);
    expect(csumFromSum(sumWords(buf, 0, buf.length))).toBe(refChecksum(buf));
  });

  it('RFC 1624 update of 16- and 32-bit words equals recomputation', () => {
    const r = rng(7);
    for (let n = 0; n < 2000; n++) {
      const buf = Uint8Array.from({ length: 40 }, () => r() & 255);
      const dv = new DataView(buf.buffer);
      buf[10] = 0;
      buf[11] = 0;
      dv.setUint16(10, refChecksum(buf));
      const at32 = 4 * (r() % 10);
      if (at32 === 8) continue;
      const old32 = dv.getInt32(at32);
      const new32 = r() | 0;
      const at16 = 2 * (r() % 20);
      let acc = csumStart(dv.getUint16(10));
      dv.setInt32(at32, new32);
      acc = csumReplace32(acc, old32, new32);
      if (at16 !== 10 && (at16 < at32 || at16 >= at32 + 4)) {
        const old16 = dv.getUint16(at16);
        const new16 = r() & 0xffff;
        dv.setUint16(at16, new16);
        acc = csumReplace16(acc, old16, new16);
      }
      dv.setUint16(10, csumFinish(acc));
      expect(refChecksum(buf)).toBe(0);
    }
  });

  it('region re-sum (used for option edits) equals recomputation', () => {
    const r = rng(9);
    for (let n = 0; n < 500; n++) {
      const buf = Uint8Array.from({ length: 60 }, () => r() & 255);
      const dv = new DataView(buf.buffer);
      dv.setUint16(16, 0);
      dv.setUint16(16, refChecksum(buf));
      const oldSum = sumWords(buf, 20, 40);
      for (let i = 20; i < 60; i++) if ((r() & 3) === 0) buf[i] = r() & 255;
      dv.setUint16(16, csumFinish(csumReplaceSum(csumStart(dv.getUint16(16)), oldSum, sumWords(buf, 20, 40))));
      expect(refChecksum(buf)).toBe(0);
    }
  });
});
