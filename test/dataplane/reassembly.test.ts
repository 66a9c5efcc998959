/**
 * The reassembly table's index of datagrams (dataplane/reassembly.ts), against a plain model:
 * thousands of datagrams of both families, their fragments interleaved and shuffled, some
 * left to time out, with few addresses and identifications so that keys differ in one word
 * only. Every add must say "whole" exactly when the model's datagram has all its fragments,
 * and the table must hold what the model holds after every step, down to empty. (The engine
 * tests, test/nat/fragments.test.ts, cover the rest: overlaps, limits, every mode.)
 */

import { describe, expect, it } from 'vitest';
import { FRAG_DATAGRAMS_MAX, FRAG_TIMEOUT_MS } from '../../src/constants.js';
import { FRAG_PENDING, FRAG_WHOLE, Reassembly } from '../../src/dataplane/reassembly.js';
import { fragmentsOf, udp } from '../helpers/packets.js';
import { Rng } from '../helpers/rng.js';

interface Datagram {
  name: string;
  fragments: Uint8Array[];
  left: number;
  firstMs: number;
}

describe('reassembly index', () => {
  it('holds exactly what a model holds through 6,000 datagrams in shuffled fragments, some timing out', () => {
    const rng = new Rng(0x7ab1e);
    const r = new Reassembly();
    const live = new Map<string, Datagram>();
    let nowMs = 0;
    let made = 0;
    let expired = 0;
    // Keys that differ in one word only: 3 sources, 2 destinations, 40 identifications a family.
    const sources = { 4: ['198.18.100.1', '198.18.100.2', '198.18.100.3'], 6: ['fd00::1', 'fd00::2', 'fd00::3'] };
    const dests = { 4: ['198.18.0.100', '198.18.0.101'], 6: ['fd00:18::100', 'fd00:18::101'] };
    const pending: { d: Datagram; f: Uint8Array }[] = [];
    for (let step = 0; step < 6000; step++) {
      // A new datagram whose key is not in flight, its fragments added to the shuffled pool.
      const fam = rng.below(2) === 0 ? 4 : 6;
      const src = sources[fam][rng.below(3)]!;
      const dst = dests[fam][rng.below(2)]!;
      const id = rng.below(40);
      const name = `${fam} ${src} ${dst} ${id}`;
      if (!live.has(name) && live.size < FRAG_DATAGRAMS_MAX / 2) {
        const p = udp({ src, dst, sport: 1000 + step, dport: 53, payload: new Uint8Array(200 + rng.below(3000)) });
        const d: Datagram = { name, fragments: fragmentsOf(p, 1024, id), left: 0, firstMs: -1 };
        d.left = d.fragments.length;
        live.set(name, d);
        // One datagram in ten loses a fragment: it can only time out.
        const lost = rng.below(10) === 0 ? rng.below(d.fragments.length) : -1;
        d.fragments.forEach((f, i) => {
          if (i !== lost) pending.push({ d, f });
        });
      }
      // Add a few random fragments of the pool.
      for (let k = 0; k < 2 && pending.length > 0; k++) {
        const { d, f } = pending.splice(rng.below(pending.length), 1)[0]!;
        if (live.get(d.name) !== d) continue; // its datagram timed out meanwhile
        if (d.firstMs < 0) d.firstMs = nowMs;
        const got = r.add(f, new DataView(f.buffer), 0, nowMs);
        d.left--;
        if (d.left === 0) {
          expect(got, `${d.name}: its last fragment`).toBe(FRAG_WHOLE);
          live.delete(d.name);
          made++;
        } else {
          expect(got, `${d.name}: ${d.left} fragments to come`).toBe(FRAG_PENDING);
        }
      }
      nowMs += 3;
      if (step % 50 === 0) {
        expired += r.expire(nowMs);
        for (const [name, d] of live) if (d.firstMs >= 0 && nowMs - d.firstMs >= FRAG_TIMEOUT_MS) live.delete(name);
      }
      expect(r.size).toBe([...live.values()].filter((d) => d.firstMs >= 0).length);
    }
    nowMs += FRAG_TIMEOUT_MS;
    expired += r.expire(nowMs);
    expect(r.size).toBe(0);
    expect(r.bytes).toBe(0);
    expect(made).toBeGreaterThan(3000);
    expect(expired).toBeGreaterThan(100);
  });
});
