import { describe, expect, it } from 'vitest';
import { scanOptions } from '../../src/packet/tcp_options.js';

describe('scanOptions', () => {
  const out = new Int32Array(40);
  it.each([
    ['empty', [], 0],
    ['mss nop ws', [2, 4, 5, 180, 1, 3, 3, 7], 3],
    ['stops at EOL', [1, 0, 2, 4, 5, 180], 1],
    ['zero length is malformed', [2, 0, 1, 1], -1],
    ['length 1 is malformed', [8, 1, 1, 1], -1],
    ['runs past the end', [8, 10, 0, 0], -1],
    ['kind without length byte', [1, 1, 1, 8], -1],
    ['forty NOPs', new Array<number>(40).fill(1), 40],
  ] as const)('%s', (_name, bytes, want) => {
    const buf = Uint8Array.from([9, 9, ...bytes, 9]);
    expect(scanOptions(buf, 2, 2 + bytes.length, out)).toBe(want);
  });
});
