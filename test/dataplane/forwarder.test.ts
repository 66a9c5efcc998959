/**
 * The forwarder loop without root: two forwarders on fake TUN queues, one shard each.
 * A SYN the "kernel" puts on the wrong queue is handed over through shared memory and
 * forwarded by its owner; an idle ESTABLISHED session expires into RSTs written out.
 */

import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/dataplane/engine.js';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { HandoffRing } from '../../src/dataplane/handoff.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { FakeTunQueue } from '../../src/dataplane/tun_fake.js';
import { IdRegistry, resolveServices } from '../../src/service/service.js';
import { labServices, V4 } from '../helpers/engine.js';
import { ACK, parse, PSH, RST, SYN, tcp } from '../helpers/packets.js';
import { GSO_TCPV4, makePartial, vnetHeader } from '../helpers/vnet.js';
import { GSO_SLOT_SIZE_BYTES, VNET_HDR_LEN } from '../../src/constants.js';
import { DROPS_BASE } from '../../src/dataplane/counters.js';
import { DROP_REDIRECT_FULL, VERDICT_REDIRECT } from '../../src/nat/verdict.js';

function pair(opts: { rstOnExpire?: boolean; offload?: boolean } = {}) {
  const services = resolveServices(labServices(), new IdRegistry());
  const rings = [
    [null, new HandoffRing().sab],
    [new HandoffRing().sab, null],
  ];
  let clock = 0;
  const wakes: number[][] = [[], []];
  // With TUN offloads every slot starts with a virtio_net_hdr and holds a GSO super-packet.
  const headroom = opts.offload ? VNET_HDR_LEN : 0;
  const fwd = [0, 1].map((w) => {
    const engine = new Engine(
      {
        worker: w,
        workers: 2,
        capacity: 256,
        seed: 3,
        nowMs: 0,
        timeouts: { established: 2 },
        headroom,
        ...(opts.rstOnExpire ? { rstOnExpire: true } : {}),
      },
      services,
    );
    return new Forwarder(
      engine,
      new FakeTunQueue(),
      opts.offload ? new PacketRing(32, GSO_SLOT_SIZE_BYTES, undefined, headroom) : new PacketRing(32),
      { to: rings[w]!, from: rings.map((r) => r[w]!), wake: (owner) => wakes[owner]!.push(w) },
      () => clock,
    );
  });
  for (const f of fwd) f.start();
  return { fwd, wakes, setClock: (t: number) => (clock = t), q: (w: number) => fwd[w]!.queue as FakeTunQueue };
}

/** rs1's SYN-ACK (ISN 69) for session `s` (its local port and the LB's sequence delta). */
function serverSynAck(s: { lport: number; seqDelta: number }): Uint8Array {
  return tcp({
    src: V4.rs1,
    dst: V4.lip,
    sport: 8080,
    dport: s.lport,
    seq: 70,
    ack: (2 + s.seqDelta) >>> 0,
    flags: SYN | ACK,
  });
}

describe('Forwarder', () => {
  it('hands a packet on the wrong queue to its owner, which forwards it', () => {
    const { fwd, wakes, q } = pair();
    // Find client ports owned by worker 1, and deliver their SYNs on queue 0.
    const syns = [];
    for (let p = 20000; syns.length < 5; p++) {
      const s = tcp({ src: V4.client, dst: V4.vip, sport: p, dport: 80, seq: 1, flags: SYN });
      const probe = new PacketRing(1);
      probe.put(0, s);
      fwd[0]!.engine.processBurst(probe, 1, 0);
      if (probe.verdicts[0] === 2) syns.push(s);
    }
    q(0).inject(...syns);
    q(0).deliver();
    expect(q(0).written).toEqual([]);
    expect(wakes[1]).toEqual([0]); // one wake-up for the whole batch
    fwd[1]!.drainFrom(0);
    expect(q(1).written.length).toBe(5);
    for (const p of q(1).written) expect(parse(p).dst).toBe(V4.rs1);
    expect(fwd[1]!.engine.sessionCount).toBe(5);
  });

  it('hands a GSO super-packet over whole (TUN offloads, no steering program)', () => {
    const { fwd, wakes, q } = pair({ offload: true });
    // A client port whose session worker 1 owns; its handshake on worker 1's queue.
    let sport = 41000;
    const probe = new PacketRing(1, GSO_SLOT_SIZE_BYTES, undefined, VNET_HDR_LEN);
    for (; ; sport++) {
      probe.put(0, tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 1, flags: SYN }));
      fwd[0]!.engine.processBurst(probe, 1, 0);
      if (probe.verdicts[0] === VERDICT_REDIRECT) break;
    }
    const C = (flags: number, payload?: Uint8Array) =>
      tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: payload ? 2 : 1, ack: 71, flags, payload });
    q(1).inject(C(SYN));
    q(1).deliver();
    const s = fwd[1]!.engine.describe([...fwd[1]!.engine.sessionIds()][0]!);
    const R = serverSynAck(s);
    q(1).inject(R, C(ACK));
    q(1).deliver();
    // 60 000 bytes of data, one super-packet of 1448-byte segments, on the wrong queue.
    const data = C(ACK | PSH, new Uint8Array(60_000).fill(9));
    q(0).injectWithHeader(vnetHeader(data, GSO_TCPV4, 1448), makePartial(data));
    q(0).deliver();
    expect(wakes[1]).toEqual([0]);
    const written = q(1).written.length;
    fwd[1]!.drainFrom(0);
    expect(q(1).written.length).toBe(written + 1);
    const out = parse(q(1).written.at(-1)!);
    expect(out.dst).toBe(V4.rs1);
    expect(out.payload.length).toBe(60_000);
    expect(out.payload.every((b) => b === 9)).toBe(true);
    expect(fwd[0]!.engine.counters[DROPS_BASE + DROP_REDIRECT_FULL]).toBe(0);
  });

  it('writes the RSTs of an expired session through its queue', () => {
    const { fwd, setClock, q } = pair({ rstOnExpire: true });
    // A client port owned by worker 0.
    let sport = 30000;
    const probe = new PacketRing(1);
    for (; ; sport++) {
      probe.put(0, tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 1, flags: SYN }));
      fwd[0]!.engine.processBurst(probe, 1, 0);
      if (probe.verdicts[0] === 0) break;
    }
    const s = fwd[0]!.engine.describe([...fwd[0]!.engine.sessionIds()][0]!);
    q(0).inject(serverSynAck(s));
    q(0).inject(tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 2, ack: 71, flags: ACK }));
    q(0).deliver();
    setClock(2500);
    fwd[0]!.tick();
    const rsts = q(0).written.slice(-2).map(parse);
    expect(rsts.map((p) => p.flags)).toEqual([RST, RST]);
    expect(rsts.map((p) => p.dport)).toEqual([sport, 8080]);
  });

  it('ends a real server’s sessions a round of RSTs at a time, yielding to the queue between rounds', async () => {
    const engine = new Engine(
      { worker: 0, workers: 1, capacity: 2048, seed: 3, nowMs: 0 },
      resolveServices(labServices(), new IdRegistry()),
    );
    const queue = new FakeTunQueue();
    const fwd = new Forwarder(
      engine,
      queue,
      new PacketRing(32),
      { to: [null], from: [null], wake: () => undefined },
      () => 0,
    );
    fwd.start();
    const ring = new PacketRing(1);
    for (let i = 0; i < 700; i++) {
      ring.put(0, tcp({ src: V4.client, dst: V4.vip, sport: 10000 + i, dport: 80, seq: 1, flags: SYN }));
      engine.processBurst(ring, 1, 0);
    }
    const rsId = engine.describe([...engine.sessionIds()][0]!).realServerId;
    const done = fwd.resetServer(rsId);
    // Ended sessions wait in CLOSE (to answer late packets with exact RSTs) for its timeout.
    const ended = (): number => [...engine.sessionIds()].filter((r) => engine.describe(r).state === 'CLOSE').length;
    // The first round went out at once (256 sessions, 2 RSTs each); the rest wait their turn.
    expect(queue.written.length).toBe(512);
    expect(ended()).toBe(256);
    expect(await done).toBe(700);
    expect(queue.written.length).toBe(1400);
    expect(queue.written.every((p) => parse(p).flags === RST)).toBe(true);
    expect(ended()).toBe(700);
    engine.advanceTimers(4000);
    expect(engine.sessionCount).toBe(0);
  });
});
