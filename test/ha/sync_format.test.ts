/**
 * Sync-record formats (src/ha/sync_format.ts): which format a node publishes beside nodes of
 * other versions, and the conversions between the data plane's records and older ones.
 */

import { describe, expect, it } from 'vitest';
import { EVENT_WORDS, OP_DELETE, OP_UPSERT, SYNC_FORMAT, SYNC_WORDS } from '../../src/ha/session_sync.js';
import {
  chooseFormat,
  eventsFromWire,
  eventsToWire,
  formatOfRecord,
  LEGACY_FORMATS,
  readable,
  recordsFromWire,
  recordsToWire,
  recordWords,
  SYNC_FORMATS,
} from '../../src/ha/sync_format.js';

describe('the format a node publishes', () => {
  it('is the newest every registered node reads', () => {
    expect(chooseFormat(SYNC_FORMATS, [])).toEqual({ format: SYNC_FORMAT, heldBy: [], incompatible: [] });
    expect(chooseFormat(SYNC_FORMATS, [{ id: 2, formats: SYNC_FORMATS }]).format).toBe(SYNC_FORMAT);
    // A node of a version before registered formats reads format 2 only.
    expect(
      chooseFormat(SYNC_FORMATS, [
        { id: 2, formats: SYNC_FORMATS },
        { id: 3, formats: LEGACY_FORMATS },
      ]),
    ).toEqual({ format: 2, heldBy: [3], incompatible: [] });
    // A newer node than this one: this one's newest.
    expect(chooseFormat(SYNC_FORMATS, [{ id: 4, formats: [2, SYNC_FORMAT + 1] }]).format).toBe(SYNC_FORMAT);
  });

  it('leaves out (and names) a node with no format in common', () => {
    expect(chooseFormat([2, 3], [{ id: 5, formats: [4, 5] }])).toEqual({ format: 3, heldBy: [], incompatible: [5] });
    expect(chooseFormat([3, 3], [{ id: 6, formats: [2, 2] }]).incompatible).toEqual([6]);
    // Two peers with no format in common: the older one sets the format, the other is named.
    expect(
      chooseFormat(
        [2, 3],
        [
          { id: 7, formats: [3, 4] },
          { id: 8, formats: [2, 2] },
        ],
      ),
    ).toEqual({ format: 2, heldBy: [8], incompatible: [7] });
  });

  it('knows every format it reads, by number and by record size', () => {
    expect(recordWords(SYNC_FORMAT)).toBe(SYNC_WORDS);
    expect(recordWords(2)).toBe(28);
    expect(formatOfRecord(28 * 4)).toBe(2);
    expect(formatOfRecord(SYNC_WORDS * 4)).toBe(SYNC_FORMAT);
    expect(formatOfRecord(27 * 4)).toBeUndefined();
    expect(readable(1)).toBe(false);
    expect(readable(SYNC_FORMAT + 1)).toBe(false);
    expect(readable(3, [2, 2])).toBe(false);
  });
});

describe('conversions', () => {
  const records = (n: number) => Int32Array.from({ length: n * SYNC_WORDS }, (_, i) => i + 1);

  it('an older record is the newer one cut short; back, its newer words are 0', () => {
    const r = records(3);
    const old = recordsToWire(r, 2);
    expect(old.length).toBe(3 * 28);
    for (let k = 0; k < 3; k++)
      expect([...old.subarray(k * 28, k * 28 + 28)]).toEqual([...r.subarray(k * 30, k * 30 + 28)]);
    const back = recordsFromWire(old, 2);
    for (let k = 0; k < 3; k++) {
      expect([...back.subarray(k * 30, k * 30 + 28)]).toEqual([...r.subarray(k * 30, k * 30 + 28)]);
      expect([...back.subarray(k * 30 + 28, k * 30 + 30)]).toEqual([0, 0]);
    }
    expect(recordsToWire(r, SYNC_FORMAT)).toBe(r); // no copy while every node runs the newest
  });

  it('events keep their op word', () => {
    const ev = new Int32Array(2 * EVENT_WORDS).map((_, i) => 100 + i);
    ev[0] = OP_UPSERT;
    ev[EVENT_WORDS] = OP_DELETE;
    const old = eventsToWire(ev, 2);
    expect(old.length).toBe(2 * 29);
    expect([old[0], old[29]]).toEqual([OP_UPSERT, OP_DELETE]);
    expect(old[29 + 1]).toBe(ev[EVENT_WORDS + 1]);
    const back = eventsFromWire(old, 2);
    expect(back.length).toBe(ev.length);
    expect(back[EVENT_WORDS + 28]).toBe(ev[EVENT_WORDS + 28]);
    expect(back[EVENT_WORDS + 29]).toBe(0);
  });
});
