import { describe, expect, it } from 'vitest';
import { IsnGenerator, isnKeyId, type IsnKey } from '../../src/nat/seq.js';
import { sipHash24 } from '../../src/nat/siphash.js';
import { SIPHASH_WASM } from '../../src/nat/siphash_wasm.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Bytes 00 01 02 ... as little-endian words, the reference's message and key. */
const counting = (words: number): number[] =>
  Array.from(
    { length: words },
    (_, i) => ((4 * i) | ((4 * i + 1) << 8) | ((4 * i + 2) << 16) | ((4 * i + 3) << 24)) >>> 0,
  );

const hex = (out: Uint32Array): string => out[1]!.toString(16).padStart(8, '0') + out[0]!.toString(16).padStart(8, '0');

describe('ISN', () => {
  it('SipHash-2-4 gives the published outputs (key 00..0f, message 00..len-1)', () => {
    // The reference implementation's vectors_sip64 (lengths 0-16); 20 and 40 bytes from
    // OpenSSL's SIPHASH MAC (`openssl mac -macopt hexkey:0001..0f -macopt size:8 SIPHASH`).
    const expected: [number, string][] = [
      [0, '726fdb47dd0e0e31'],
      [4, 'cf2794e0277187b7'],
      [8, '93f5f5799a932462'],
      [12, '751e8fbc860ee5fb'],
      [16, '3f2acc7f57c29bdb'],
      [20, 'bed65cf21aa2ee98'],
      [40, '0e3ea96b5304a7d0'],
    ];
    const key = counting(4);
    const msg = counting(10);
    const out = new Uint32Array(2);
    for (const [bytes, want] of expected)
      expect(hex(sipHash24(key, msg, 0, bytes / 4, out)), `${bytes} bytes`).toBe(want);
  });

  it('the WebAssembly bytes are what wat2wasm makes of siphash.wat; longer messages are refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-sip-'));
    try {
      const wasm = join(dir, 'siphash.wasm');
      execFileSync('wat2wasm', [join(import.meta.dirname, '../../src/nat/siphash.wat'), '-o', wasm]);
      expect(readFileSync(wasm).toString('base64')).toBe(SIPHASH_WASM);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(() => sipHash24(counting(4), counting(17), 0, 17, new Uint32Array(2))).toThrow(RangeError);
  });

  it("a key's name (isnKeyId): the same for one key, another for another, not the key's words", () => {
    const key: IsnKey = [0x01020304, 0x05060708, 0x090a0b0c, 0x0d0e0f10];
    const id = isnKeyId(key);
    expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(isnKeyId([...key] as unknown as IsnKey)).toBe(id);
    expect(isnKeyId([key[0], key[1], key[2], key[3] ^ 1])).not.toBe(id);
    for (const w of key) expect(id).not.toContain(w.toString(16).padStart(8, '0'));
  });

  it('per tuple: steady under one key (advancing 250 per ms), unrelated under another', () => {
    const tuple = Int32Array.of(0x06000004, (8080 << 16) | 40000, 0xc6121415, 0xc6120201);
    const other = Int32Array.of(0x06000004, (8080 << 16) | 40001, 0xc6121415, 0xc6120201);
    const k1: IsnKey = [1, 2, 3, 4];
    const a = new IsnGenerator(k1);
    const b = new IsnGenerator([1, 2, 3, 4]); // the other LB of the pair, or the next process
    expect(b.generate(tuple, 3, 1000)).toBe(a.generate(tuple, 3, 1000));
    expect((a.generate(tuple, 3, 1004) - a.generate(tuple, 3, 1000)) | 0).toBe(1000);
    expect(a.generate(other, 3, 1000)).not.toBe(a.generate(tuple, 3, 1000));
    // One bit of the key changes about half the ISN's bits (no key can be peeled off bit by bit).
    let flipped = 0;
    for (let bit = 0; bit < 128; bit++) {
      const k = [...k1] as [number, number, number, number];
      k[bit >> 5] = (k[bit >> 5]! ^ (1 << (bit & 31))) >>> 0;
      let x = (new IsnGenerator(k).generate(tuple, 3, 1000) ^ a.generate(tuple, 3, 1000)) >>> 0;
      for (; x !== 0; x &= x - 1) flipped++;
    }
    expect(flipped / 128).toBeGreaterThan(13);
    expect(flipped / 128).toBeLessThan(19);
  });
});
