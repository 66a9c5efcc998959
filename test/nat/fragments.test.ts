/**
 * IP fragments (dataplane/reassembly.ts, nat/fragment.ts): a fragmented datagram to a VIP or
 * a local address is reassembled, handled as one packet and written out (in fragments again
 * when it is larger than the MTU), both families, both directions, in any order; a datagram
 * another worker owns is handed over as its fragments; what cannot be a datagram is dropped
 * with a reason.
 */

import { describe, expect, it } from 'vitest';
import {
  FRAG_BYTES_MAX,
  FRAG_CHUNK_BYTES,
  FRAG_DATAGRAMS_MAX,
  FRAG_HANDOVER_BYTES,
  FRAG_TIMEOUT_MS,
} from '../../src/constants.js';
import {
  C_FRAGMENT_BYTES_HELD,
  C_FRAGMENTS_PENDING,
  C_FRAGMENTS_REASSEMBLED,
  C_FRAGMENTS_SENT,
  DROPS_BASE,
} from '../../src/dataplane/counters.js';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import {
  DROP_FRAGMENT_TABLE_FULL,
  DROP_FRAGMENT_TIMEOUT,
  DROP_IPV4_FRAGMENT,
  DROP_IPV6_FRAGMENT,
  DROP_REDIRECT_FULL,
  VERDICT_DROP,
  VERDICT_FORWARD,
  VERDICT_LINK,
} from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import {
  checksumsOk,
  DEST_OPTIONS,
  fragmentInfo,
  fragmentsOf,
  HOP_BY_HOP,
  parse,
  reassembled,
  refChecksum,
  udp,
  withExtHeaders,
} from '../helpers/packets.js';

type Family = typeof V4;
const CPORT = 40000;
const bytes = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

/** One packet through `engine`: its verdict and drop reason, and what the engine wrote into
 * its emit ring meanwhile (taken out). */
function send(
  engine: Engine,
  pkt: Uint8Array,
  nowMs = 0,
  verdicts: number[] = [],
): { verdict: number; reason: number; out: Uint8Array[] } {
  const ring = new PacketRing(1, 2048, undefined, engine.emit.headroom);
  ring.put(0, pkt);
  engine.processBurst(ring, 1, nowMs);
  const out: Uint8Array[] = [];
  for (let i = 0; i < engine.emitCount; i++) {
    out.push(engine.emit.get(i));
    verdicts.push(engine.emit.verdicts[i]!);
  }
  engine.clearEmitted();
  const verdict = ring.verdicts[0]!;
  return { verdict, reason: ring.aux[0]!, out: verdict === VERDICT_FORWARD ? [ring.get(0)] : out };
}

/** Two workers' engines, and a client port whose datagrams to the VIP worker 1 owns. */
function twoWorkers(fam: Family): { engines: Engine[]; cport: number } {
  const services = resolveServices(labServices(), new IdRegistry());
  const engines = [0, 1].map((w) => new Engine({ worker: w, workers: 2, capacity: 64, seed: 1 }, services));
  let cport = 1024;
  for (; ; cport++) {
    const r = send(
      new Engine({ worker: 0, workers: 2, capacity: 64, seed: 1 }, services),
      udp({ src: fam.client, dst: fam.vip, sport: cport, dport: 53 }),
    );
    if (r.verdict !== VERDICT_FORWARD) return { engines, cport };
  }
}

/** Every fragment of a datagram in turn: the ones before the last are held (nothing written,
 * nothing dropped); what the last one brings out. */
function sendAll(engine: Engine, frags: Uint8Array[], verdicts: number[] = []): Uint8Array[] {
  for (const f of frags.slice(0, -1)) expect(send(engine, f)).toEqual({ verdict: VERDICT_DROP, reason: 0, out: [] });
  const last = send(engine, frags.at(-1)!, 0, verdicts);
  expect(last.reason).toBe(0);
  return last.out;
}

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('fragments %s', (_name, fam: Family) => {
  const v4 = fam === V4;
  const header = v4 ? 20 : 40;

  it('a 4,000-byte UDP datagram both ways: reassembled, rewritten, cut again for the MTU', () => {
    const engine = makeEngine();
    const query = bytes(4000);
    const frags = fragmentsOf(
      udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: query }),
      1448,
      0x1234,
    );
    expect(frags.length).toBe(3);
    // Out of order: the middle one first, the first one last.
    const out = sendAll(engine, [frags[1]!, frags[2]!, frags[0]!]);
    const s = engine.describe([...engine.sessionIds()][0]!);
    expect(out.length).toBe(3);
    for (const f of out) {
      expect(f.length).toBeLessThanOrEqual(1500);
      expect(checksumsOk(f).ip).toBe(true);
    }
    // One new identification for all of them (the source is now the local address).
    const ids = new Set(out.map((f) => fragmentInfo(f).id));
    expect(ids.size).toBe(1);
    expect([...ids][0]).not.toBe(0x1234);
    const whole = reassembled(out);
    expect(checksumsOk(whole)).toEqual({ ip: true, l4: true });
    expect(whole.subarray(header)).toEqual(
      udp({ src: fam.lip, dst: fam.rs1, sport: s.lport, dport: 5353, payload: query }).subarray(header),
    );
    expect(parse(whole)).toMatchObject({ dst: parse(udp({ src: fam.rs1, dst: fam.rs1, sport: 1, dport: 1 })).dst });

    // The real server's 9,000-byte answer, fragmented for its MTU, comes back to the client.
    const answer = bytes(9000, 3);
    const back = fragmentsOf(
      udp({ src: fam.rs1, dst: fam.lip, sport: 5353, dport: s.lport, payload: answer }),
      1448,
      77,
    );
    const toClient = sendAll(engine, back.reverse());
    expect(toClient.length).toBe(7);
    const got = reassembled(toClient);
    expect(checksumsOk(got)).toEqual({ ip: true, l4: true });
    expect(got.subarray(header)).toEqual(
      udp({ src: fam.vip, dst: fam.client, sport: 53, dport: CPORT, payload: answer }).subarray(header),
    );
    expect(engine.counters[C_FRAGMENTS_REASSEMBLED]).toBe(2);
    expect(engine.counters[C_FRAGMENTS_SENT]).toBe(10);
  });

  it('a datagram that fits the MTU once whole leaves as one packet', () => {
    const engine = makeEngine();
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(600) });
    const out = sendAll(engine, fragmentsOf(q, 304, 9));
    expect(out.length).toBe(1);
    expect(checksumsOk(out[0]!)).toEqual({ ip: true, l4: true });
    expect(parse(out[0]!)).toMatchObject({ dport: 5353, payload: bytes(600) });
    expect(engine.counters[C_FRAGMENTS_SENT]).toBe(0);
  });

  it('overlapping fragments end their datagram, each counted', () => {
    const engine = makeEngine();
    const frags = fragmentsOf(
      udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(3000) }),
      1448,
      5,
    );
    expect(send(engine, frags[0]!).reason).toBe(0);
    expect(send(engine, frags[2]!).reason).toBe(0);
    // The first again: it overlaps itself (RFC 5722: the whole datagram goes).
    const reason = v4 ? DROP_IPV4_FRAGMENT : DROP_IPV6_FRAGMENT;
    expect(send(engine, frags[0]!)).toMatchObject({ verdict: VERDICT_DROP, reason });
    expect(engine.counters[DROPS_BASE + reason]).toBe(3);
    // The middle one starts a datagram of its own, which never completes.
    expect(send(engine, frags[1]!).reason).toBe(0);
    expect(engine.sessionCount).toBe(0);
  });

  it('a datagram not whole in time is dropped; its fragments counted', () => {
    const engine = makeEngine();
    const frags = fragmentsOf(
      udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(3000) }),
      1448,
      6,
    );
    send(engine, frags[0]!, 0);
    send(engine, frags[1]!, 10);
    engine.advanceTimers(FRAG_TIMEOUT_MS - 1);
    expect(engine.counters[DROPS_BASE + DROP_FRAGMENT_TIMEOUT]).toBe(0);
    engine.advanceTimers(FRAG_TIMEOUT_MS);
    expect(engine.counters[DROPS_BASE + DROP_FRAGMENT_TIMEOUT]).toBe(2);
    // The last one alone now: held, as the start of a datagram that will not complete.
    expect(send(engine, frags[2]!, FRAG_TIMEOUT_MS).out).toEqual([]);
    expect(engine.sessionCount).toBe(0);
  });

  it('a datagram another worker owns is handed over as its fragments, and made whole there', () => {
    const { engines, cport } = twoWorkers(fam);
    const frags = fragmentsOf(
      udp({ src: fam.client, dst: fam.vip, sport: cport, dport: 53, payload: bytes(2500) }),
      1448,
      8,
    );
    expect(sendAll(engines[0]!, frags)).toEqual([]);
    expect(engines[0]!.handovers.map((h) => h.owner)).toEqual([1]);
    const handed = engines[0]!.handovers[0]!.fragments;
    expect(handed).toEqual(frags);
    const out = sendAll(engines[1]!, handed);
    expect(out.length).toBe(2);
    expect(parse(reassembled(out))).toMatchObject({ dport: 5353, payload: bytes(2500) });
    expect(engines[1]!.handovers).toEqual([]);
  });

  it("the datagrams the workers cut never share an identification: each worker's are its own residue mod the worker count", () => {
    // FULLNAT's local address carries every worker's datagrams to a server: two workers giving
    // one identification to datagrams in flight at once would have the server mix them up.
    const services = resolveServices(labServices(), new IdRegistry());
    const workers = 3;
    const seen = new Map<number, number>();
    for (let w = 0; w < workers; w++) {
      const engine = new Engine({ worker: w, workers, capacity: 4096, seed: 1 }, services);
      let sent = 0;
      for (let cport = 1024; sent < 400; cport++) {
        const frags = fragmentsOf(
          udp({ src: fam.client, dst: fam.vip, sport: cport, dport: 53, payload: bytes(2500) }),
          1448,
          cport,
        );
        const out = frags.flatMap((f) => send(engine, f).out);
        if (engine.handovers.length > 0) {
          engine.handedOver(); // another worker's: it cuts that one
          continue;
        }
        expect(out.length).toBe(2);
        const id = fragmentInfo(out[0]!).id;
        expect(id % workers, `worker ${w}'s identification ${id}`).toBe(w);
        expect(seen.has(id), `identification ${id} given twice`).toBe(false);
        seen.set(id, w);
        sent++;
      }
    }
    expect(seen.size).toBe(1200);
  });
});

describe('IPv6 fragments behind options headers', () => {
  it('a Hop-by-Hop header in front of each fragment, a Destination Options header cut with the payload: reassembled, rewritten, cut again the same way', () => {
    const engine = makeEngine();
    const query = bytes(4000);
    const x = (p: Uint8Array) => withExtHeaders(p, HOP_BY_HOP, DEST_OPTIONS);
    const frags = fragmentsOf(
      x(udp({ src: V6.client, dst: V6.vip, sport: CPORT, dport: 53, payload: query })),
      1448,
      0x4321,
    );
    expect(frags.length).toBe(3);
    for (const f of frags) expect([f[6], f[40]]).toEqual([0, 44]);
    const out = sendAll(engine, [frags[2]!, frags[0]!, frags[1]!]);
    const s = engine.describe([...engine.sessionIds()][0]!);
    expect(out.length).toBe(3);
    for (const f of out) {
      expect(f.length).toBeLessThanOrEqual(1500);
      expect([f[6], f[40]], 'the Hop-by-Hop header, then the fragment header').toEqual([0, 44]);
    }
    const whole = reassembled(out);
    expect(checksumsOk(whole)).toEqual({ ip: true, l4: true });
    const want = x(udp({ src: V6.lip, dst: V6.rs1, sport: s.lport, dport: 5353, payload: query }));
    expect(whole.subarray(8)).toEqual(want.subarray(8));
    expect(engine.counters[C_FRAGMENTS_REASSEMBLED]).toBe(1);
  });
});

describe('IPv4 options', () => {
  it('the first fragment keeps them all; later ones only those flagged copied (RFC 791), the rest NOPs', () => {
    const engine = makeEngine();
    const frags = fragmentsOf(
      udp({ src: V4.client, dst: V4.vip, sport: CPORT, dport: 53, payload: bytes(4000) }),
      1448,
      0x77,
    );
    // Router alert (type 0x94: copied) and record route (type 7: not copied), 8 bytes.
    const options = Uint8Array.of(0x94, 4, 0, 0, 7, 3, 4, 0);
    const first = new Uint8Array(frags[0]!.length + options.length);
    first.set(frags[0]!.subarray(0, 20));
    first.set(options, 20);
    first.set(frags[0]!.subarray(20), 28);
    const dv = new DataView(first.buffer);
    first[0] = 0x47;
    dv.setUint16(2, first.length);
    dv.setUint16(10, 0);
    dv.setUint16(10, refChecksum(first.subarray(0, 28)));
    const out = sendAll(engine, [first, ...frags.slice(1)]);
    expect(out.length).toBe(3);
    expect(out.map((f) => f[0])).toEqual([0x47, 0x47, 0x47]);
    expect(out[0]!.subarray(20, 28)).toEqual(options);
    for (const f of out.slice(1)) expect(f.subarray(20, 28)).toEqual(Uint8Array.of(0x94, 4, 0, 0, 1, 1, 1, 0));
    for (const f of out) expect(checksumsOk(f).ip).toBe(true);
    expect(parse(reassembled(out)).payload).toEqual(bytes(4000));
  });
});

describe("the fragments' memory (a pool allocated once per worker)", () => {
  const fam = V4;
  const query = (n: number, payload: Uint8Array) =>
    fragmentsOf(udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload }), 1448, n & 0xffff);

  it('is used over and over: 4,000 datagrams (13 MB of fragments through 4 MiB), each one byte-exact', () => {
    const engine = makeEngine();
    let through = 0;
    for (let n = 0; n < 4000; n++) {
      const payload = bytes(1500 + ((n * 7919) % 3500), n);
      const frags = query(n, payload);
      through += frags.reduce((sum, f) => sum + f.length, 0);
      // Reversed every other time: the first fragment's chunks are not always the first taken.
      const out = sendAll(engine, n % 2 ? frags.reverse() : frags);
      // Buffer's compare: vitest's deep equality walks 20 MB here element by element.
      expect(Buffer.compare(parse(reassembled(out)).payload, payload)).toBe(0);
    }
    expect(through).toBeGreaterThan(3 * FRAG_BYTES_MAX);
    expect(engine.counters[C_FRAGMENTS_REASSEMBLED]).toBe(4000);
    engine.advanceTimers(1);
    expect(engine.counters[C_FRAGMENTS_PENDING]).toBe(0);
    expect(engine.counters[C_FRAGMENT_BYTES_HELD]).toBe(0);
  });

  it('when full, drops (fragment_table_full) and counts what it holds; freed as datagrams time out', () => {
    const engine = makeEngine();
    // 60,000-byte datagrams of 42 fragments (3 chunks each): all but their last fragment.
    const big = (n: number) => query(n, bytes(60_000, n)).slice(0, -1);
    const perDatagram = 41 * Math.ceil(1468 / FRAG_CHUNK_BYTES);
    const fit = Math.floor(FRAG_BYTES_MAX / FRAG_CHUNK_BYTES / perDatagram);
    let held = 0;
    for (let n = 0; n < fit; n++) for (const f of big(n)) held += send(engine, f).reason === 0 ? f.length : 0;
    expect(engine.counters[C_FRAGMENTS_PENDING]).toBe(fit);
    expect(engine.counters[C_FRAGMENT_BYTES_HELD]).toBe(held);
    const reasons = big(fit).map((f) => send(engine, f).reason);
    expect(reasons.filter((r) => r === DROP_FRAGMENT_TABLE_FULL).length).toBeGreaterThan(0);
    expect(engine.counters[C_FRAGMENT_BYTES_HELD]).toBeLessThanOrEqual(FRAG_BYTES_MAX);
    engine.advanceTimers(FRAG_TIMEOUT_MS);
    expect(engine.counters[C_FRAGMENTS_PENDING]).toBe(0);
    expect(engine.counters[C_FRAGMENT_BYTES_HELD]).toBe(0);
    // Room again: a datagram goes through.
    const payload = bytes(5000);
    expect(parse(reassembled(sendAll(engine, query(9999, payload)))).payload).toEqual(payload);
  });

  it(`holds at most FRAG_DATAGRAMS_MAX (${FRAG_DATAGRAMS_MAX}) datagrams at once`, () => {
    const engine = makeEngine();
    for (let n = 0; n < FRAG_DATAGRAMS_MAX; n++) expect(send(engine, query(n, bytes(3000))[0]!).reason).toBe(0);
    expect(send(engine, query(FRAG_DATAGRAMS_MAX, bytes(3000))[0]!).reason).toBe(DROP_FRAGMENT_TABLE_FULL);
    // A fragment of a datagram already held still finds it.
    expect(send(engine, query(0, bytes(3000))[1]!).reason).toBe(0);
    expect(engine.counters[C_FRAGMENTS_PENDING]).toBe(FRAG_DATAGRAMS_MAX);
  });

  it(`hands over at most FRAG_HANDOVER_BYTES of fragments after one burst; the rest is counted redirect_full`, () => {
    const { engines, cport } = twoWorkers(fam);
    const datagrams = [0, 1, 2, 3, 4].map((n) =>
      fragmentsOf(udp({ src: fam.client, dst: fam.vip, sport: cport, dport: 53, payload: bytes(60_000, n) }), 1448, n),
    );
    for (const frags of datagrams) for (const f of frags.slice(0, -1)) expect(send(engines[0]!, f).reason).toBe(0);
    // The five last fragments in one burst: five datagrams of 61 KB for worker 1.
    const ring = new PacketRing(datagrams.length, 2048, undefined, engines[0]!.emit.headroom);
    datagrams.forEach((frags, i) => ring.put(i, frags.at(-1)!));
    engines[0]!.processBurst(ring, datagrams.length, 0);
    const size = datagrams[0]!.reduce((sum, f) => sum + f.length, 0); // 60,848 bytes
    const fit = Math.floor(FRAG_HANDOVER_BYTES / size);
    expect(fit).toBeLessThan(datagrams.length);
    expect(engines[0]!.handovers.length).toBe(fit);
    expect(engines[0]!.handovers.map((h) => h.fragments)).toEqual(datagrams.slice(0, fit));
    expect(engines[0]!.counters[DROPS_BASE + DROP_REDIRECT_FULL]).toBe((datagrams.length - fit) * 42);
    // Handed over: the buffer is free for the next burst.
    engines[0]!.handedOver();
    expect(engines[0]!.handovers).toEqual([]);
  });
});

describe('fragments and the other modes', () => {
  const one = (fam: Family, mode: 'nat' | 'tunnel'): ServiceSpec[] => [
    serviceWithDefaults({
      protocol: 'udp',
      vip: fam.vip,
      port: 53,
      mode,
      realServers: [{ address: fam.rs1, port: mode === 'tunnel' ? 53 : 5353, weight: 1 }],
      ...(mode === 'tunnel' ? { localAddresses: [fam.lip] } : {}),
    }),
  ];

  it.each([
    ['IPv4', V4],
    ['IPv6', V6],
  ] as const)('NAT %s: the client stays the source; fragments again past the MTU', (_n, fam) => {
    const engine = makeEngine(one(fam, 'nat'));
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(3000) });
    const out = sendAll(engine, fragmentsOf(q, 1448, 11));
    expect(out.length).toBe(3);
    const whole = reassembled(out);
    expect(checksumsOk(whole)).toEqual({ ip: true, l4: true });
    expect(parse(whole)).toMatchObject({ src: parse(q).src, dport: 5353, sport: CPORT, payload: bytes(3000) });
  });

  it.each([
    ['IPv4', V4],
    ['IPv6', V6],
  ] as const)('TUNNEL %s: the whole datagram in the tunnel, the outer packet fragmented (no "too big")', (_n, fam) => {
    const engine = makeEngine(one(fam, 'tunnel'));
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(3000) });
    const out = sendAll(engine, fragmentsOf(q, 1448, 12));
    const outer = reassembled(out);
    const v4 = fam === V4;
    expect(outer[v4 ? 9 : 6]).toBe(v4 ? 4 : 41); // IP-in-IP
    expect(checksumsOk(outer).ip).toBe(true);
    const inner = outer.subarray(v4 ? 20 : 40);
    expect(checksumsOk(inner)).toEqual({ ip: true, l4: true });
    expect(parse(inner)).toMatchObject({ src: parse(q).src, dport: 53, payload: bytes(3000) });
  });

  it.each([
    ['IPv4', V4, 0],
    ['IPv6', V6, 0],
    ['IPv4 with TUN offloads', V4, 10],
  ] as const)('DR %s: frames to the server, each fragment with the Ethernet header', (_n, fam, headroom) => {
    const [svc] = resolveServices(
      [
        serviceWithDefaults({
          protocol: 'udp',
          vip: fam.vip,
          port: 53,
          mode: 'dr',
          realServers: [{ address: fam.rs1, port: 53, weight: 1 }],
        }),
      ],
      new IdRegistry(),
    );
    const annotated = {
      ...svc!,
      linkMac: '02:00:00:00:00:0a',
      realServers: svc!.realServers.map((r) => ({ ...r, mac: '02:00:00:00:00:21' })),
    };
    const engine = new Engine({ capacity: 64, seed: 1, nowMs: 0, headroom }, [annotated]);
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: bytes(3000) });
    const verdicts: number[] = [];
    const frames = sendAll(engine, fragmentsOf(q, 1448, 13), verdicts);
    expect(frames.length).toBe(3);
    expect(verdicts).toEqual([VERDICT_LINK, VERDICT_LINK, VERDICT_LINK]);
    for (const f of frames) {
      expect(f.length).toBeLessThanOrEqual(1514);
      expect([...f.subarray(0, 6)]).toEqual([2, 0, 0, 0, 0, 0x21]);
    }
    // The client's datagram itself, unchanged (DR rewrites nothing above the link) but for
    // an IPv4 header's identification (new for its new fragments), flags (q's DF: it was sent
    // in fragments) and so its checksum.
    const whole = reassembled(frames.map((f) => f.subarray(14)));
    expect(checksumsOk(whole)).toEqual({ ip: true, l4: true });
    if (fam === V4) for (const b of [whole, q]) b.fill(0, 4, 8).fill(0, 10, 12);
    expect(whole).toEqual(q);
  });
});
