import { describe, expect, it } from 'vitest';
import { TIMER_WHEEL_SLOTS } from '../../src/constants.js';
import { DIR_IN, DIR_OUT, KEY_WORDS, R_META, RECORD_WORDS, RECORD_BYTES } from '../../src/conn/layout.js';
import { SessionTable, shardGeometry } from '../../src/conn/table.js';

/** Session i's IN or OUT key; IPv6 keys (v6) fill all nine key words. */
function keyFor(i: number, dir: number, v6 = false): Int32Array {
  const k = new Int32Array(KEY_WORDS);
  k[0] = ((v6 ? 6 : 4) << 8) | 6;
  k[1] = ((i & 0xffff) << 16) | (dir === DIR_IN ? 80 : 8080);
  k[2] = (0xc6120000 + i) | 0;
  k[3] = dir === DIR_IN ? 0xc6120064 | 0 : (0xc6120201 + (i >>> 16)) | 0;
  if (v6) for (let w = 4; w < KEY_WORDS; w++) k[w] = Math.imul(i + w, 0x9e3779b1) ^ dir;
  return k;
}

function addSession(t: SessionTable, i: number, expire: number, v6 = false): number {
  const r = t.alloc();
  if (r < 0) return r;
  const kin = keyFor(i, DIR_IN, v6);
  const kout = keyFor(i, DIR_OUT, v6);
  const words = v6 ? 9 : 3;
  t.rec[r * RECORD_WORDS + R_META] = kin[0]!;
  t.setKey(r, DIR_IN, kin);
  t.setKey(r, DIR_OUT, kout);
  t.insert(r, DIR_IN, t.hashKey(kin, words));
  t.insert(r, DIR_OUT, t.hashKey(kout, words));
  t.schedule(r, expire);
  return r;
}

const expiries: number[] = [];
const handler = { onExpire: (r: number) => void expiries.push(r) };

describe('SessionTable', () => {
  it('record layout is 192 bytes and 1M sessions cost at most 224 B each', () => {
    expect(RECORD_BYTES).toBe(192);
    const g = shardGeometry(1 << 20);
    const perSession = g.bytes / (1 << 20);
    console.log(`memory per session at 1M: ${perSession.toFixed(1)} B (records + both index entries + wheel)`);
    expect(perSession).toBeLessThanOrEqual(224);
  });

  it.each([
    ['IPv4', false],
    ['IPv6', true],
  ])('%s: finds both keys, deletes with backward shift, keeps every other entry findable', (_n, v6) => {
    const t = new SessionTable(20000, 99, 100);
    const words = v6 ? 9 : 3;
    const ids: number[] = [];
    for (let i = 0; i < 20000; i++) ids.push(addSession(t, i, 1000, v6));
    expect(t.alloc()).toBe(-1); // full
    // A record's key (split over two cache lines) hashes like the packet key.
    for (const dir of [DIR_IN, DIR_OUT]) expect(t.hashRecord(ids[7]!, dir)).toBe(t.hashKey(keyFor(7, dir, v6), words));
    // Remove every third session, then check all lookups.
    for (let i = 0; i < 20000; i += 3) t.remove(ids[i]!);
    for (let i = 0; i < 20000; i++) {
      for (const dir of [DIR_IN, DIR_OUT]) {
        const k = keyFor(i, dir, v6);
        const found = t.find(k, words, dir, t.hashKey(k, words));
        expect(found).toBe(i % 3 === 0 ? -1 : ids[i]);
      }
    }
    expect(t.live).toBe(20000 - Math.ceil(20000 / 3));
  });

  it('an IN key never matches an OUT entry', () => {
    const t = new SessionTable(16, 1, 100);
    addSession(t, 1, 10);
    const k = keyFor(1, DIR_IN);
    expect(t.find(k, 3, DIR_OUT, t.hashKey(k, 3))).toBe(-1);
  });

  it('timer wheel expires at the right tick, lazily extends, and relinks on a shorter timeout', () => {
    const t = new SessionTable(64, 5, 100);
    t.startTicks(0);
    const a = addSession(t, 1, 10);
    const b = addSession(t, 2, 10);
    const c = addSession(t, 3, 50);
    t.setExpire(a, 30); // extended: stays linked at 10, moved when reached
    t.setExpire(c, 5); // shortened: relinked now
    expiries.length = 0;
    t.advance(9, 1000, handler);
    expect(expiries).toEqual([c]);
    t.advance(10, 1000, handler);
    expect(expiries).toEqual([c, b]);
    t.advance(29, 1000, handler);
    expect(expiries).toEqual([c, b]);
    t.advance(30, 1000, handler);
    expect(expiries).toEqual([c, b, a]);
    expect(t.live).toBe(0);
  });

  it('timeouts longer than one wheel turn survive the wrap', () => {
    const t = new SessionTable(8, 5, 100);
    t.startTicks(0);
    const a = addSession(t, 1, TIMER_WHEEL_SLOTS * 2 + 7);
    expiries.length = 0;
    t.advance(TIMER_WHEEL_SLOTS * 2 + 6, 1 << 20, handler);
    expect(expiries).toEqual([]);
    t.advance(TIMER_WHEEL_SLOTS * 2 + 7, 1 << 20, handler);
    expect(expiries).toEqual([a]);
  });

  it('a budget spreads a mass expiry over several calls without losing sessions', () => {
    const t = new SessionTable(10000, 5, 100);
    t.startTicks(0);
    for (let i = 0; i < 10000; i++) addSession(t, i, 20);
    expiries.length = 0;
    let calls = 0;
    while (t.live > 0 && calls < 100) {
      t.advance(25, 1000, handler);
      calls++;
    }
    expect(expiries.length).toBe(10000);
    expect(calls).toBe(10);
  });
});
