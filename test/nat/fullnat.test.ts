/**
 * FULLNAT rewriting, table-driven, for IPv4 and IPv6. Each case sends one packet and
 * compares the output byte for byte with an expected packet built independently by the
 * test builder (whose checksums are computed in full), or checks the drop reason.
 * Timestamps pass as they are here (translateTimestamps: false); timestamps.test.ts covers
 * their translation.
 */

import { describe, expect, it } from 'vitest';
import {
  C_CLIENT_TOA_REMOVED,
  C_MSS_CLAMPED,
  C_TOA_INSERTED,
  C_TOA_NO_ROOM,
  C_TOA_PRUNED,
} from '../../src/dataplane/counters.js';
import { DROP_NO_SESSION } from '../../src/nat/verdict.js';
import { Driver, labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, FIN, opt, parse, PSH, refChecksum, RST, SYN, tcp, type TcpSpec } from '../helpers/packets.js';

const CPORT = 40000;
const CLIENT_ISN = 0xfffffff0; // wraps during the connection: exercises 32-bit arithmetic
const RS_ISN = 0x7ffffff0;
const SYN_OPTS = [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(111, 0), ...opt.nop(), ...opt.ws(7)];

type Family = typeof V4;

/** A connection through the engine with the handshake done up to `stage`. */
function connect(fam: Family, stage: 'syn' | 'synack' | 'established' = 'established') {
  const d = new Driver(makeEngine(labServices({ translateTimestamps: false })));
  const c = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, ...t });
  d.forward(c({ seq: CLIENT_ISN, flags: SYN, options: SYN_OPTS }));
  const s = d.session();
  const lbIsn = (CLIENT_ISN + s.seqDelta) >>> 0;
  const r = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, ...t });
  if (stage !== 'syn') d.forward(r({ seq: RS_ISN, ack: lbIsn + 1, flags: SYN | ACK, options: SYN_OPTS }));
  if (stage === 'established') d.forward(c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK }));
  const delta = s.seqDelta;
  /** What the real server receives for a client packet. */
  const toRs = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.lip, dst: fam.rs1, sport: s.lport, dport: 8080, ...t });
  /** What the client receives for a real-server packet. */
  const toClient = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.vip, dst: fam.client, sport: 80, dport: CPORT, ...t });
  return { d, c, r, toRs, toClient, s, lbIsn, delta, plus: (a: number, b: number) => (a + b) >>> 0 };
}

const toaV4 = (fam: Family) => opt.toa(254, CPORT, fam.client);
const payload = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('FULLNAT %s', (_name, fam) => {
  const toa = toaV4(fam);
  const toaLen = toa.length;

  it('SYN: client→VIP becomes LIP:lport→RIP:rport with the LB ISN; options untouched', () => {
    const d = new Driver(makeEngine(labServices({ translateTimestamps: false })));
    const out = d.forward(
      tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, seq: CLIENT_ISN, flags: SYN, options: SYN_OPTS }),
    );
    const s = d.session();
    expect(s.state).toBe('SYN_RECV');
    expect(s.lport).toBeGreaterThanOrEqual(1025);
    expect(out).toEqual(
      tcp({
        src: fam.lip,
        dst: fam.rs1,
        sport: s.lport,
        dport: 8080,
        seq: CLIENT_ISN + s.seqDelta,
        flags: SYN,
        options: SYN_OPTS,
      }),
    );
  });

  it('SYN-ACK: translated back, ack −= delta, MSS clamped by the TOA length', () => {
    const k = connect(fam, 'syn');
    const out = k.d.forward(k.r({ seq: RS_ISN, ack: k.lbIsn + 1, flags: SYN | ACK, options: SYN_OPTS }));
    const clamped = [...opt.mss(1460 - toaLen), ...SYN_OPTS.slice(4)];
    expect(out).toEqual(k.toClient({ seq: RS_ISN, ack: CLIENT_ISN + 1, flags: SYN | ACK, options: clamped }));
    expect(k.d.engine.counters[C_MSS_CLAMPED]).toBe(1);
    expect(k.d.session().state).toBe('SYNACK');
    expect(k.d.session().rsIsnPlus1).toBe(RS_ISN + 1);
  });

  it('handshake ACK carries TOA first; its retransmit too', () => {
    const k = connect(fam, 'synack');
    const ack = k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, options: opt.ts(112, 999).concat([1, 1]) });
    const want = k.toRs({
      seq: k.plus(CLIENT_ISN + 1, k.delta),
      ack: RS_ISN + 1,
      flags: ACK,
      options: [...toa, ...opt.ts(112, 999), 1, 1],
    });
    expect(k.d.forward(ack)).toEqual(want);
    expect(k.d.forward(ack)).toEqual(want);
    expect(k.d.engine.counters[C_TOA_INSERTED]).toBe(2);
    expect(k.d.session().state).toBe('ESTABLISHED');
  });

  it('client data before the server answers carries TOA, payload moved intact', () => {
    const k = connect(fam);
    const data = payload(700);
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK | PSH, payload: data }));
    expect(out).toEqual(
      k.toRs({ seq: k.plus(CLIENT_ISN + 1, k.delta), ack: RS_ISN + 1, flags: ACK | PSH, options: toa, payload: data }),
    );
  });

  it('data after the server answered has no TOA', () => {
    const k = connect(fam);
    const data = payload(100);
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 51, flags: ACK | PSH, payload: data }));
    expect(out).toEqual(
      k.toRs({ seq: k.plus(CLIENT_ISN + 1, k.delta), ack: RS_ISN + 51, flags: ACK | PSH, payload: data }),
    );
  });

  it('one-way upload: TOA stops once the server acknowledges client data (its ack never moves the client ack)', () => {
    const k = connect(fam);
    const data = payload(500);
    const up = (off: number) =>
      k.c({ seq: k.plus(CLIENT_ISN + 1, off), ack: RS_ISN + 1, flags: ACK | PSH, payload: data });
    const upToRs = (off: number, options: number[]) =>
      k.toRs({ seq: k.plus(CLIENT_ISN + 1 + off, k.delta), ack: RS_ISN + 1, flags: ACK | PSH, options, payload: data });
    expect(k.d.forward(up(0))).toEqual(upToRs(0, toa));
    expect(k.d.session().toaOpen).toBe(true);
    // A server ACK of nothing new (a window update) leaves TOA owed.
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 1, flags: ACK }));
    expect(k.d.forward(up(500))).toEqual(upToRs(500, toa));
    // The server acknowledges the first 500 bytes: its socket exists, TOA is done.
    expect(k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.plus(k.lbIsn, 501), flags: ACK }))).toEqual(
      k.toClient({ seq: RS_ISN + 1, ack: CLIENT_ISN + 501, flags: ACK }),
    );
    expect(k.d.session().toaOpen).toBe(false);
    const inserted = k.d.engine.counters[C_TOA_INSERTED];
    expect(k.d.forward(up(1000))).toEqual(upToRs(1000, []));
    expect(k.d.engine.counters[C_TOA_INSERTED]).toBe(inserted);
  });

  it('server data: ack −= delta; SACK edges −= delta (both edges, every block)', () => {
    const k = connect(fam);
    const blocksLb: [number, number][] = [
      [k.plus(k.lbIsn, 1001), k.plus(k.lbIsn, 2001)],
      [k.plus(k.lbIsn, 3001), k.plus(k.lbIsn, 4001)],
    ];
    const blocksClient: [number, number][] = blocksLb.map(([l, r]) => [k.plus(l, -k.delta), k.plus(r, -k.delta)]);
    const data = payload(300, 7);
    const out = k.d.forward(
      k.r({
        seq: RS_ISN + 1,
        ack: k.lbIsn + 1,
        flags: ACK | PSH,
        options: [1, 1, ...opt.sack(blocksLb)],
        payload: data,
      }),
    );
    expect(out).toEqual(
      k.toClient({
        seq: RS_ISN + 1,
        ack: CLIENT_ISN + 1,
        flags: ACK | PSH,
        options: [1, 1, ...opt.sack(blocksClient)],
        payload: data,
      }),
    );
  });

  it('client SACK blocks (RS sequence space) pass unchanged', () => {
    const k = connect(fam);
    const blocks: [number, number][] = [[RS_ISN + 1001, RS_ISN + 2001]];
    const out = k.d.forward(
      k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 501, flags: ACK, options: [1, 1, ...opt.sack(blocks)] }),
    );
    expect(out).toEqual(
      k.toRs({
        seq: k.plus(CLIENT_ISN + 1, k.delta),
        ack: RS_ISN + 501,
        flags: ACK,
        options: [1, 1, ...opt.sack(blocks)],
      }),
    );
  });

  it('a forged client TOA is replaced by ours on a TOA packet and blanked otherwise', () => {
    const k = connect(fam, 'synack');
    const forged = opt.toa(254, 1, fam === V4 ? '10.0.0.1' : 'fd00::1');
    const out1 = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, options: forged }));
    expect(parse(out1).options).toEqual(toa);
    const out2 = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 9, flags: ACK, options: forged }));
    expect(parse(out2).options).toEqual(new Array<number>(forged.length).fill(1));
    expect(k.d.engine.counters[C_CLIENT_TOA_REMOVED]).toBe(2);
  });

  it('no room: NOPs pruned first, then SACK; protected options kept in order', () => {
    const k = connect(fam, 'synack');
    // 40 bytes: NOP NOP TS(10) NOP NOP SACK 3 blocks (26) = 40
    const blocks: [number, number][] = [
      [RS_ISN + 100, RS_ISN + 200],
      [RS_ISN + 300, RS_ISN + 400],
      [RS_ISN + 500, RS_ISN + 600],
    ];
    const full = [1, 1, ...opt.ts(5, 6), 1, 1, ...opt.sack(blocks)];
    expect(full.length).toBe(40);
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, options: full }));
    const o = parse(out).options;
    expect(o.slice(0, toaLen)).toEqual(toa);
    // TS is never pruned; SACK goes (it alone cannot fit beside TOA and TS).
    const rest = o.slice(toaLen).filter((b, i, a) => !(b === 1 && a.slice(i).every((x) => x === 1)));
    expect(rest).toEqual(opt.ts(5, 6));
    expect(k.d.engine.counters[C_TOA_PRUNED]).toBe(1);
  });

  it('no room even after pruning: forwarded without TOA and counted', () => {
    const k = connect(fam, 'synack');
    // 36 bytes of an option that is never pruned (MPTCP, kind 30) + TS would not leave 8 bytes.
    const mptcp = [30, 36, ...new Array<number>(34).fill(0)];
    const options = [...mptcp, 1, 1, 1, 1];
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, options }));
    expect(out).toEqual(k.toRs({ seq: k.plus(CLIENT_ISN + 1, k.delta), ack: RS_ISN + 1, flags: ACK, options }));
    expect(k.d.engine.counters[C_TOA_NO_ROOM]).toBe(1);
  });

  it('a packet with TCP-AO gets no TOA (AO authenticates the options), counted', () => {
    const k = connect(fam, 'synack');
    const ao = [29, 16, 1, 2, ...new Array<number>(12).fill(0xaa)];
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, options: ao }));
    expect(parse(out).options).toEqual(ao);
    expect(k.d.engine.counters[C_TOA_NO_ROOM]).toBe(1);
  });

  it('a packet that would exceed the MTU with TOA goes without it (never fragments)', () => {
    const k = connect(fam);
    const hdr = fam === V4 ? 40 : 60;
    const data = payload(1500 - hdr - 4); // 4 bytes short of the MTU: TOA does not fit
    const out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, payload: data }));
    expect(out.length).toBe(1496);
    expect(parse(out).options).toEqual([]);
    expect(k.d.engine.counters[C_TOA_NO_ROOM]).toBe(1);
  });

  it('FIN both ways reaches TIME_WAIT; RST closes; packets keep being translated', () => {
    const k = connect(fam);
    let out = k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK }));
    expect(out).toEqual(
      k.toRs({ seq: k.plus(CLIENT_ISN + 1, k.delta), ack: RS_ISN + 1, flags: FIN | ACK, options: toa }),
    );
    expect(k.d.session().state).toBe('FIN_WAIT');
    out = k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 2, flags: FIN | ACK }));
    expect(out).toEqual(k.toClient({ seq: RS_ISN + 1, ack: CLIENT_ISN + 2, flags: FIN | ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    k.d.forward(k.c({ seq: CLIENT_ISN + 2, ack: RS_ISN + 2, flags: ACK }));
    expect(k.d.session().state).toBe('TIME_WAIT');
    const rst = k.d.forward(k.c({ seq: CLIENT_ISN + 2, flags: RST }));
    expect(rst).toEqual(k.toRs({ seq: k.plus(CLIENT_ISN + 2, k.delta), flags: RST }));
    expect(k.d.session().state).toBe('CLOSE');
  });

  it('a half-closed connection still sending data keeps its session through the server’s backoff', () => {
    // An echo or a download after the client's shutdown(SHUT_WR): the server's data is in flight
    // (here: lost beyond the LB) when the client's FIN arrives, and its retransmission, backing
    // off, comes long after FIN_WAIT's 7 s.
    const k = connect(fam);
    const data = payload(1000, 7);
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 1, flags: ACK, payload: data }));
    k.d.nowMs += 20_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK, payload: payload(100) }));
    expect(k.d.session().state).toBe('FIN_WAIT');
    // The FIN does not shorten what the server's data gave the session.
    expect(k.d.session().expiresInMs).toBe(70_000);
    k.d.nowMs += 30_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    const out = k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 102, flags: ACK, payload: data }));
    expect(out).toEqual(k.toClient({ seq: RS_ISN + 1, ack: CLIENT_ISN + 102, flags: ACK, payload: data }));
    expect(k.d.session().expiresInMs).toBe(90_000);
    // The client's bare ACKs do not bring the short timeout back while the server sends.
    k.d.forward(k.c({ seq: CLIENT_ISN + 102, ack: RS_ISN + 1001, flags: ACK }));
    expect(k.d.session().expiresInMs).toBe(90_000);
    // The server's FIN: LAST_ACK, with the timer its data gave it (the FIN may be lost too).
    k.d.forward(k.r({ seq: RS_ISN + 1001, ack: k.lbIsn + 102, flags: FIN | ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    expect(k.d.session().expiresInMs).toBe(90_000);
    // A duplicate ACK that does not cover the server's FIN leaves it there ...
    k.d.forward(k.c({ seq: CLIENT_ISN + 102, ack: RS_ISN + 1001, flags: ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    // ... the ACK of the FIN ends it: TIME_WAIT's short timeout.
    k.d.forward(k.c({ seq: CLIENT_ISN + 102, ack: RS_ISN + 1002, flags: ACK }));
    expect(k.d.session().state).toBe('TIME_WAIT');
    expect(k.d.session().expiresInMs).toBe(7_000);
  });

  it('LAST_ACK waits for both FINs to be acknowledged: a FIN lost beyond the LB is retransmitted into a live session', () => {
    // The server closes first with its last data; the client's FIN follows before the
    // server's last segment reached it (an application that closes without reading to the end).
    const k = connect(fam);
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 1, flags: FIN | ACK, payload: payload(500, 3) }));
    expect(k.d.session().state).toBe('CLOSE_WAIT');
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    // The server acknowledges the client's FIN; the client has not acknowledged the server's.
    k.d.forward(k.r({ seq: RS_ISN + 502, ack: k.lbIsn + 2, flags: ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    // 30 s of the server's backoff later its retransmission still finds the session.
    k.d.nowMs += 30_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    const again = payload(500, 3);
    const out = k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 2, flags: FIN | ACK, payload: again }));
    expect(out).toEqual(k.toClient({ seq: RS_ISN + 1, ack: CLIENT_ISN + 2, flags: FIN | ACK, payload: again }));
    k.d.forward(k.c({ seq: CLIENT_ISN + 2, ack: RS_ISN + 502, flags: ACK }));
    expect(k.d.session().state).toBe('TIME_WAIT');
  });

  it('a late ACK does not move the recorded ack back: the last ACK still ends LAST_ACK (client side)', () => {
    // Seen in the soak: the handshake's ACK, handed between workers, came after the close; a
    // session that recorded its ack lived out 90 s in LAST_ACK.
    const k = connect(fam);
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK, payload: payload(38) }));
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 39, flags: FIN | ACK, payload: payload(133) }));
    expect(k.d.session().state).toBe('CLOSE_WAIT');
    k.d.forward(k.c({ seq: CLIENT_ISN + 39, ack: RS_ISN + 135, flags: FIN | ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: ACK })); // the late one
    expect(k.d.session().state).toBe('LAST_ACK');
    expect(k.d.session().clientAck).toBe((RS_ISN + 135) >>> 0);
    k.d.forward(k.r({ seq: RS_ISN + 135, ack: k.lbIsn + 40, flags: ACK }));
    expect(k.d.session().state).toBe('TIME_WAIT');
  });

  it('a late ACK does not move the recorded ack back: the last ACK still ends LAST_ACK (server side)', () => {
    const k = connect(fam);
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK }));
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 2, flags: FIN | ACK }));
    expect(k.d.session().state).toBe('LAST_ACK');
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 1, flags: ACK })); // its SYN-ACK's ack, late
    expect(k.d.session().state).toBe('LAST_ACK');
    expect(k.d.session().rsAck).toBe((k.lbIsn + 2) >>> 0);
    k.d.forward(k.c({ seq: CLIENT_ISN + 2, ack: RS_ISN + 2, flags: ACK }));
    expect(k.d.session().state).toBe('TIME_WAIT');
  });

  it('a half-closed connection that has gone quiet ends when the timer of its last packets runs out', () => {
    const k = connect(fam);
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK }));
    k.d.forward(k.r({ seq: RS_ISN + 1, ack: k.lbIsn + 2, flags: ACK }));
    expect(k.d.session().expiresInMs).toBe(90_000); // the handshake's ESTABLISHED timeout
    k.d.nowMs += 91_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    expect([...k.d.engine.sessionIds()]).toEqual([]);
  });

  it('a FIN after a long quiet spell gets FIN_WAIT’s 7 s', () => {
    const k = connect(fam);
    k.d.nowMs += 88_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    k.d.forward(k.c({ seq: CLIENT_ISN + 1, ack: RS_ISN + 1, flags: FIN | ACK }));
    expect(k.d.session().expiresInMs).toBe(7_000);
    k.d.nowMs += 8_000;
    k.d.engine.advanceTimers(k.d.nowMs);
    expect([...k.d.engine.sessionIds()]).toEqual([]);
  });

  it('a non-SYN packet without a session is dropped', () => {
    const d = new Driver(makeEngine(labServices({ translateTimestamps: false })));
    expect(d.drop(tcp({ src: fam.client, dst: fam.vip, sport: 1, dport: 80, flags: ACK }))).toBe(DROP_NO_SESSION);
    expect(d.drop(tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: 2000, flags: ACK }))).toBe(DROP_NO_SESSION);
  });
});

describe('IPv4 header options', () => {
  it('an IPv4 header with options (IHL 6) is rewritten with its options kept and checksums right', () => {
    const d = new Driver(makeEngine(labServices({ translateTimestamps: false })));
    // Build a SYN, then give it a 4-byte IPv4 option (NOP NOP NOP EOL) and fix the header.
    const plain = tcp({ src: V4.client, dst: V4.vip, sport: 41000, dport: 80, seq: 5, flags: SYN });
    const withOpt = new Uint8Array(plain.length + 4);
    withOpt.set(plain.subarray(0, 20), 0);
    withOpt.set([1, 1, 1, 0], 20);
    withOpt.set(plain.subarray(20), 24);
    withOpt[0] = 0x46;
    const dv = new DataView(withOpt.buffer);
    dv.setUint16(2, withOpt.length);
    dv.setUint16(10, 0);
    dv.setUint16(10, refChecksum(withOpt.subarray(0, 24)));
    const out = d.forward(withOpt);
    const s = d.session();
    expect(out[0]).toBe(0x46);
    expect(Array.from(out.subarray(20, 24))).toEqual([1, 1, 1, 0]);
    const p = parse(out);
    expect([p.src, p.dst, p.sport, p.dport, p.seq]).toEqual([V4.lip, V4.rs1, s.lport, 8080, (5 + s.seqDelta) >>> 0]);
  });
});
