/**
 * A whole TCP connection through the engine, both ways, for IPv4 and IPv6: SYN, SYN-ACK
 * (MSS clamp), ACK with TOA, data before and after the server answers, SACK, then idle
 * expiry with an RST generated to each side carrying the sequence number it expects, and an
 * exact RST for what comes late.
 */

import { describe, expect, it } from 'vitest';
import { C_RST_SENT, C_SESSIONS_EXPIRED } from '../../src/dataplane/counters.js';
import { DROP_SESSION_RESET } from '../../src/nat/verdict.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, checksumsOk, opt, parse, PSH, RST, SYN, tcp } from '../helpers/packets.js';

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('whole connection %s', (_n, fam) => {
  it('handshake, data both ways, SACK, idle expiry with RST to both sides', () => {
    const d = new Driver(makeEngine(undefined, { rstOnExpire: true, timeouts: { established: 5 } }));
    const C = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: 80, seq, ack, flags, ...extra });
    const v4 = fam === V4;
    const toaLen = v4 ? 8 : 20;

    const synOut = parse(d.forward(C(1000, 0, SYN, { options: [...opt.mss(1460), ...opt.sackPerm(), 1, 1] })));
    const s = d.session();
    const lbIsn = (1000 + s.seqDelta) >>> 0;
    expect(synOut.seq).toBe(lbIsn);
    const R = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq, ack, flags, ...extra });

    const synAck = parse(
      d.forward(R(9000, lbIsn + 1, SYN | ACK, { options: [...opt.mss(1460), ...opt.sackPerm(), 1, 1] })),
    );
    expect(synAck.ack).toBe(1001);
    expect(synAck.options.slice(0, 4)).toEqual(opt.mss(1460 - toaLen));

    const hsAck = parse(d.forward(C(1001, 9001, ACK)));
    expect(hsAck.options).toEqual(opt.toa(254, 50000, fam.client));
    expect(hsAck.seq).toBe((lbIsn + 1) >>> 0);

    // Client speaks first (TOA again, ack still rs_isn + 1), then the server answers.
    const req = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');
    const reqOut = parse(d.forward(C(1001, 9001, ACK | PSH, { payload: req })));
    expect(reqOut.options.slice(0, 2)).toEqual([254, toaLen]);
    expect(Buffer.from(reqOut.payload).toString()).toBe('GET / HTTP/1.1\r\n\r\n');

    const resp = new Uint8Array(1000).fill(65);
    const respOut = parse(d.forward(R(9001, lbIsn + 1 + req.length, ACK | PSH, { payload: resp })));
    expect(respOut.ack).toBe(1001 + req.length);
    expect(respOut.payload).toEqual(resp);

    // After the server answered: no TOA; SACK from the client passes, from the server shifts.
    const more = parse(d.forward(C(1001 + req.length, 10001, ACK, { options: [1, 1, ...opt.sack([[20001, 21001]])] })));
    expect(more.options).toEqual([1, 1, ...opt.sack([[20001, 21001]])]);
    const sackBack = parse(
      d.forward(R(10001, lbIsn + 1 + req.length, ACK, { options: [1, 1, ...opt.sack([[lbIsn + 500, lbIsn + 600]])] })),
    );
    expect(sackBack.options).toEqual([1, 1, ...opt.sack([[1000 + 500, 1000 + 600]])]);
    expect(d.session().state).toBe('ESTABLISHED');

    // Idle past the ESTABLISHED timeout (5 s): the session ends with an RST each way and
    // stays in CLOSE for the close timeout, to answer what still comes.
    d.engine.advanceTimers(4900);
    expect(d.engine.sessionCount).toBe(1);
    d.engine.advanceTimers(5200);
    expect(d.session().state).toBe('CLOSE');
    expect(d.engine.counters[C_SESSIONS_EXPIRED]).toBe(0);
    expect(d.engine.emitCount).toBe(2);
    expect(d.engine.counters[C_RST_SENT]).toBe(2);
    const toClient = d.engine.emit.get(0);
    const toRs = d.engine.emit.get(1);
    for (const p of [toClient, toRs]) expect(checksumsOk(p)).toEqual({ ip: true, l4: true });
    const a = parse(toClient);
    const b = parse(toRs);
    // To the client: from the VIP, seq = the client's last ack (what it expects next).
    expect([a.src, a.dst, a.sport, a.dport, a.flags, a.seq]).toEqual([
      parse(C(0, 0, ACK)).dst,
      parse(C(0, 0, ACK)).src,
      80,
      50000,
      RST,
      10001,
    ]);
    // To the real server: from LIP:lport, seq = the server's last ack (LB space).
    expect([b.src, b.dst, b.sport, b.dport, b.flags, b.seq]).toEqual([
      parse(R(0, 0, ACK)).dst,
      parse(R(0, 0, ACK)).src,
      s.lport,
      8080,
      RST,
      (lbIsn + 1 + req.length) >>> 0,
    ]);
    d.engine.clearEmitted();
    // A late segment with data in flight (the client sent 10 more bytes the RST did not
    // cover): dropped and answered at the sequence number its own ack names.
    expect(d.drop(C(1001 + req.length, 10011, ACK | PSH, { payload: new Uint8Array(10) }))).toBe(DROP_SESSION_RESET);
    expect(d.engine.emitCount).toBe(1);
    expect(parse(d.engine.emit.get(0))).toMatchObject({ dport: 50000, flags: RST, seq: 10011 });
    d.engine.clearEmitted();
    // After the close timeout the flow is gone.
    d.engine.advanceTimers(5200 + 3100);
    expect(d.engine.sessionCount).toBe(0);
    expect(d.engine.counters[C_SESSIONS_EXPIRED]).toBe(1);
    expect(d.engine.emitCount).toBe(0);
    expect(d.send(C(1001 + req.length, 10001, ACK)).verdict).toBe(1);
  });

  it('sessions without rstOnExpire end silently; half-open ones use the SYN_RECV timeout', () => {
    const d = new Driver(makeEngine());
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50001, dport: 80, seq: 1, flags: SYN }));
    d.engine.advanceTimers(29_900);
    expect(d.engine.sessionCount).toBe(1);
    d.engine.advanceTimers(30_100);
    expect(d.engine.sessionCount).toBe(0);
    expect(d.engine.emitCount).toBe(0);
  });
});

describe('clock', () => {
  it('regression: a wall-clock nowMs (~1.8e12) does not overflow the int32 ticks and expire sessions at once', () => {
    const t0 = Date.now();
    const d = new Driver(makeEngine(undefined, { nowMs: t0 }));
    d.nowMs = t0 + 5;
    d.forward(tcp({ src: V4.client, dst: V4.vip, sport: 50002, dport: 80, seq: 1, flags: SYN }));
    d.engine.advanceTimers(t0 + 1000);
    expect(d.engine.sessionCount).toBe(1);
    expect(d.session().expiresInMs).toBeGreaterThan(28_000);
    d.engine.advanceTimers(t0 + 31_000);
    expect(d.engine.sessionCount).toBe(0);
  });
});
