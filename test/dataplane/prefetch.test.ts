/**
 * The engine's lookup prefetch (processBurst steps 1–2) runs on bursts once the table holds
 * PREFETCH_MIN_SESSIONS live sessions. Differential: the same packets in bursts and one at a
 * time (a window of one packet is never prefetched), through two engines with the same seed,
 * must give the same verdicts, reasons and bytes, IPv4 and IPv6, new and established
 * sessions, replies, and packets the prefetch cannot classify.
 */

import { describe, expect, it } from 'vitest';
import { PREFETCH_MIN_SESSIONS } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, PSH, SYN, tcp } from '../helpers/packets.js';

const BURST = 64;
const CLIENTS = PREFETCH_MIN_SESSIONS + 2000;

/** Client i: IPv4 for even i, IPv6 for odd, all inside the lab's ranges. */
function client(i: number): { fam: typeof V4; addr: string; port: number } {
  const v6 = (i & 1) === 1;
  return {
    fam: v6 ? V6 : V4,
    addr: v6 ? `fd00:18:64::${(i + 0x100).toString(16)}` : `198.18.${128 + (i >> 8)}.${i & 255}`,
    port: 1024 + (i % 60000),
  };
}

describe('engine prefetch: bursts at a large table equal one packet at a time', () => {
  it('same verdicts and bytes for SYNs, established segments both ways, and junk', () => {
    const opts = { capacity: 2 * CLIENTS, isnKey: [1, 2, 3, 4] as const };
    // No SYN proxy: its `auto` would answer this many half-open sessions itself.
    const bursts = makeEngine(labServices({ synProxy: 'off' }), opts);
    const singles = makeEngine(labServices({ synProxy: 'off' }), opts);
    const ring = new PacketRing(BURST);
    const one = new PacketRing(1);
    let compared = 0;

    /** Both engines take `pkts`; everything they say about each packet must match. */
    const both = (pkts: Uint8Array[]): number[] => {
      pkts.forEach((p, k) => ring.put(k, p));
      bursts.processBurst(ring, pkts.length, 0);
      return pkts.map((p, k) => {
        one.put(0, p);
        singles.processBurst(one, 1, 0);
        expect([ring.verdicts[k], ring.aux[k]], `packet ${compared}`).toEqual([one.verdicts[0], one.aux[0]]);
        if (one.verdicts[0] === VERDICT_FORWARD) expect(ring.get(k)).toEqual(one.get(0));
        compared++;
        return one.verdicts[0]!;
      });
    };
    const inBursts = (make: (i: number) => Uint8Array, n: number): number[] => {
      const verdicts: number[] = [];
      for (let i = 0; i < n; i += BURST) {
        const pkts: Uint8Array[] = [];
        for (let k = i; k < Math.min(n, i + BURST); k++) pkts.push(make(k));
        verdicts.push(...both(pkts));
      }
      return verdicts;
    };

    // New sessions: the last ones arrive with the prefetch on.
    const syns = inBursts((i) => {
      const c = client(i);
      return tcp({ src: c.addr, dst: c.fam.vip, sport: c.port, dport: 80, seq: 1000 + i, flags: SYN });
    }, CLIENTS);
    expect(syns.every((v) => v === VERDICT_FORWARD)).toBe(true);
    expect(bursts.table.live).toBeGreaterThanOrEqual(PREFETCH_MIN_SESSIONS);

    // Each session's local port, from the one-at-a-time engine.
    const lport = new Map<string, number>();
    for (const id of singles.sessionIds()) {
      const s = singles.describe(id);
      lport.set(`${s.client}/${s.cport}`, s.lport);
    }
    const payload = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    // Client data, the server's reply, junk a prefetch cannot classify, a stray packet.
    const mixed = inBursts((i) => {
      const c = client((i * 7919) % CLIENTS);
      switch (i % 5) {
        case 0:
        case 1:
          return tcp({
            src: c.addr,
            dst: c.fam.vip,
            sport: c.port,
            dport: 80,
            seq: 2000,
            ack: 1,
            flags: ACK | PSH,
            payload,
          });
        case 2: {
          const port = lport.get(`${c.addr}/${c.port}`)!;
          return tcp({
            src: c.fam.rs1,
            dst: c.fam.lip,
            sport: 8080,
            dport: port,
            seq: 5000,
            ack: 1,
            flags: ACK,
            payload,
          });
        }
        case 3:
          return new Uint8Array([0x45, 0, 0, 20]); // truncated
        default:
          return tcp({ src: c.addr, dst: c.fam.vip, sport: c.port, dport: 81, seq: 1, flags: ACK }); // no service
      }
    }, 4000);
    expect(mixed.filter((v) => v === VERDICT_FORWARD).length).toBe(2400);
  });
});
