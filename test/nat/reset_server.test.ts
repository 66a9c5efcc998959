/** Health check resetOnDown: every session of a real server ends with an RST to each side. */

import { expect, it } from 'vitest';
import { Driver, makeEngine, V4 } from '../helpers/engine.js';
import { ACK, checksumsOk, parse, RST, SYN, tcp } from '../helpers/packets.js';
import { DROP_REASON_NAMES, DROP_SESSION_RESET } from '../../src/nat/verdict.js';

it('resetServer ends the real server’s sessions: RSTs with the expected seq, then they are gone', () => {
  const d = new Driver(makeEngine());
  const opened: { cport: number; lport: number; lbIsn: number }[] = [];
  for (const cport of [40001, 40002, 40003]) {
    const synOut = parse(
      d.forward(tcp({ src: V4.client, dst: V4.vip, sport: cport, dport: 80, seq: 100, ack: 0, flags: SYN })),
    );
    const lport = synOut.sport;
    d.forward(
      tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: lport, seq: 700, ack: synOut.seq + 1, flags: SYN | ACK }),
    );
    d.forward(tcp({ src: V4.client, dst: V4.vip, sport: cport, dport: 80, seq: 101, ack: 701, flags: ACK }));
    opened.push({ cport, lport, lbIsn: synOut.seq });
  }
  const rsId = d.engine.describe([...d.engine.sessionIds()][0]!).realServerId;
  const r = d.engine.resetServer(rsId);
  expect(r).toEqual({ ended: 3, next: -1 });
  expect(d.engine.emitCount).toBe(6);
  const rsts = Array.from({ length: 6 }, (_, i) => parse(d.engine.emit.get(i)));
  for (let i = 0; i < 6; i++) expect(checksumsOk(d.engine.emit.get(i))).toEqual({ ip: true, l4: true });
  for (const o of opened) {
    const toClient = rsts.find((p) => p.dport === o.cport)!;
    expect([toClient.sport, toClient.flags, toClient.seq]).toEqual([80, RST, 701]);
    const toRs = rsts.find((p) => p.sport === o.lport)!;
    expect([toRs.dport, toRs.flags, toRs.seq]).toEqual([8080, RST, (o.lbIsn + 1) >>> 0]);
  }
  d.engine.clearEmitted();
  // The sessions stay in CLOSE for the close timeout. A packet of either end is dropped and
  // answered with an RST at the sequence number its ack names: the exact one, also where the
  // first RST was stale because data was in flight (the end answered it with a challenge ACK).
  expect(d.engine.sessionCount).toBe(3);
  const o = opened[0]!;
  expect(
    DROP_REASON_NAMES[
      d.drop(tcp({ src: V4.client, dst: V4.vip, sport: o.cport, dport: 80, seq: 101, ack: 705, flags: ACK }))
    ],
  ).toBe('session_reset');
  const challenge = tcp({
    src: V4.rs1,
    dst: V4.lip,
    sport: 8080,
    dport: o.lport,
    seq: 705,
    ack: o.lbIsn + 9,
    flags: ACK,
  });
  expect(DROP_REASON_NAMES[d.drop(challenge)]).toBe('session_reset');
  expect(d.drop(tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: o.lport, seq: 705, ack: 0, flags: RST }))).toBe(
    DROP_SESSION_RESET,
  ); // an RST gets nothing back
  expect(d.engine.emitCount).toBe(2);
  const [toClient, toRs] = [parse(d.engine.emit.get(0)), parse(d.engine.emit.get(1))];
  expect([toClient.dport, toClient.flags, toClient.seq]).toEqual([o.cport, RST, 705]);
  expect([toRs.sport, toRs.dport, toRs.flags, toRs.seq]).toEqual([o.lport, 8080, RST, (o.lbIsn + 9) >>> 0]);
  for (let i = 0; i < 2; i++) expect(checksumsOk(d.engine.emit.get(i))).toEqual({ ip: true, l4: true });
  d.engine.clearEmitted();
  // After the close timeout they are gone: the next packet finds no session.
  d.nowMs += 4000;
  d.engine.advanceTimers(d.nowMs);
  expect(d.engine.sessionCount).toBe(0);
  expect(
    DROP_REASON_NAMES[
      d.drop(tcp({ src: V4.client, dst: V4.vip, sport: 40001, dport: 80, seq: 101, ack: 701, flags: ACK }))
    ],
  ).toBe('no_session');
});

it('more sessions than one round of RSTs: each round goes on where the last stopped; every session ends once', () => {
  const d = new Driver(makeEngine());
  for (let i = 0; i < 1800; i++) {
    d.forward(tcp({ src: V4.client, dst: V4.vip, sport: 10000 + i, dport: 80, seq: 1, ack: 0, flags: SYN }));
  }
  const rsId = d.engine.describe([...d.engine.sessionIds()][0]!).realServerId;
  const mine = [...d.engine.sessionIds()].filter((r) => d.engine.describe(r).realServerId === rsId).length;
  expect(mine).toBeGreaterThan(512); // more than two rounds' worth (256 sessions, 2 RSTs each)
  let ended = 0;
  let rsts = 0;
  let rounds = 0;
  for (let from = 0; from >= 0; rounds++) {
    const r = d.engine.resetServer(rsId, from);
    expect(r.next === -1 || r.next > from).toBe(true);
    ended += r.ended;
    rsts += d.engine.emitCount;
    d.engine.clearEmitted();
    from = r.next;
  }
  expect(ended).toBe(mine);
  expect(rsts).toBe(2 * mine);
  expect(rounds).toBe(Math.ceil(mine / 256));
  // In CLOSE (answering late packets) until the close timeout, then gone.
  expect(d.engine.sessionCount).toBe(1800);
  d.nowMs += 4000;
  d.engine.advanceTimers(d.nowMs);
  expect(d.engine.sessionCount).toBe(1800 - mine);
});
