/**
 * The SYN proxy, through the engine, for IPv4 and IPv6: every packet of a proxied connection
 * both ways, compared field by field with what each side must see; checksums of every
 * forwarded and generated packet verified by a full independent computation.
 */

import { describe, expect, it } from 'vitest';
import {
  C_RST_SENT,
  C_SYNPROXY_ACCEPTED,
  C_SYNPROXY_AUTO_ON,
  C_SYNPROXY_HELD,
  C_SYNPROXY_SERVER_TIMEOUTS,
  C_SYNPROXY_SYN_RETRIES,
  C_SYNPROXY_SYNACKS,
} from '../../src/dataplane/counters.js';
import { SYNPROXY_AUTO_ON_HALF_OPEN, SYNPROXY_WSCALE } from '../../src/constants.js';
import {
  DROP_NO_SESSION,
  DROP_SYNPROXY_BAD_COOKIE,
  DROP_TABLE_FULL,
  VERDICT_DROP,
  VERDICT_FORWARD,
} from '../../src/nat/verdict.js';
import type { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { Driver, labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import {
  ACK,
  checksumsOk,
  FIN,
  icmp,
  opt,
  optionList,
  parse,
  RST,
  SYN,
  tcp,
  type TcpSpec,
} from '../helpers/packets.js';

const CPORT = 40001;
const CLIENT_ISN = 0xfffffff0; // wraps: 32-bit arithmetic everywhere
const RS_ISN = 0x12345678;
const CLI_TS = 0xfffff000;
const SRV_TS = 777;
const SYN_OPTS = [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(CLI_TS, 0), ...opt.nop(), ...opt.ws(8)];

type Family = typeof V4;

function u32(b: number[], at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** [TSval, TSecr] of a parsed option list, or undefined. */
function tsOf(options: number[]): [number, number] | undefined {
  const ts = optionList(options).find(([k]) => k === 8);
  return ts ? [u32(ts[1], 2), u32(ts[1], 6)] : undefined;
}

function emitted(e: Engine): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < e.emitCount; i++) {
    const p = e.emit.get(i);
    expect(checksumsOk(p), 'generated packet checksums').toEqual({ ip: true, l4: true });
    out.push(p);
  }
  e.clearEmitted();
  return out;
}

/** A proxied connection up to `stage`. */
function proxied(fam: Family, stage: 'synack' | 'syn' | 'established', opts: { rstOnExpire?: boolean } = {}) {
  const d = new Driver(makeEngine(labServices({ synProxy: 'on' }), opts));
  const c = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, ...t });
  const synAck = parse(d.forward(c({ seq: CLIENT_ISN, flags: SYN, options: SYN_OPTS })));
  const cookie = synAck.seq;
  const cookieTs = tsOf(synAck.options)![0];
  const st = { d, c, synAck, cookie, cookieTs, syn: undefined as ReturnType<typeof parse> | undefined };
  if (stage === 'synack') return { ...st, s: undefined, r: undefined };
  const syn = parse(
    d.forward(
      c({
        seq: CLIENT_ISN + 1,
        ack: cookie + 1,
        flags: ACK,
        options: [...opt.nop(), ...opt.nop(), ...opt.ts(CLI_TS + 5, cookieTs)],
      }),
    ),
  );
  const s = d.session();
  const r = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, ...t });
  if (stage === 'established') {
    const synTs = tsOf(syn.options)![0];
    d.forward(
      r({
        seq: RS_ISN,
        ack: syn.seq + 1,
        flags: SYN | ACK,
        options: [...opt.mss(1400), ...opt.sackPerm(), ...opt.ts(SRV_TS, synTs), ...opt.nop(), ...opt.ws(9)],
      }),
    );
  }
  return { ...st, syn, s, r };
}

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('SYN proxy %s', (_name, fam) => {
  const v4 = fam === V4;
  const toaLen = v4 ? 8 : 20;

  it('a SYN is answered with a cookie SYN-ACK and leaves no state', () => {
    const { d, synAck, cookieTs } = proxied(fam, 'synack');
    expect([synAck.src, synAck.dst, synAck.sport, synAck.dport]).toEqual([
      parse(tcp({ src: fam.vip, dst: fam.client, sport: 80, dport: CPORT, flags: 0 })).src,
      parse(tcp({ src: fam.vip, dst: fam.client, sport: 80, dport: CPORT, flags: 0 })).dst,
      80,
      CPORT,
    ]);
    expect(synAck.flags).toBe(SYN | ACK);
    expect(synAck.ack).toBe((CLIENT_ISN + 1) >>> 0);
    const opts = optionList(synAck.options).filter(([k]) => k !== 1);
    // MSS: the MTU less headers and TOA; SACK; the client's TSval echoed; our scale.
    expect(opts.map(([k]) => k)).toEqual([2, 4, 8, 3]);
    expect(opts[0]![1]).toEqual(opt.mss(1500 - (v4 ? 40 : 60) - toaLen));
    expect(opts[3]![1]).toEqual(opt.ws(SYNPROXY_WSCALE));
    expect(tsOf(synAck.options)![1]).toBe(CLI_TS);
    // The client's options in the TSval's low bits: scale 8, SACK.
    expect(cookieTs & 63).toBe(8 | 16);
    expect([...d.engine.sessionIds()].length).toBe(0);
    expect(d.engine.counters[C_SYNPROXY_SYNACKS]).toBe(1);
  });

  it('the ACK with a valid cookie opens the connection to the real server with the client options', () => {
    const { d, syn } = proxied(fam, 'syn');
    const s = d.session();
    expect(s.state).toBe('SYN_SENT');
    expect(s.proxied).toBe(true);
    expect(syn!.flags).toBe(SYN);
    expect(syn!.seq).toBe((CLIENT_ISN + s.seqDelta) >>> 0);
    expect(syn!.dport).toBe(8080);
    const opts = optionList(syn!.options).filter(([k]) => k !== 1);
    expect(opts.map(([k]) => k)).toEqual([2, 4, 8, 3]);
    expect(opts[0]![1]).toEqual(opt.mss(v4 ? 1460 : 1440));
    expect(opts[3]![1]).toEqual(opt.ws(8));
    // The real server sees the LB's clock: the client's TSval + the session's delta.
    expect(tsOf(syn!.options)).toEqual([(CLI_TS + 5 + s.tsDelta) >>> 0, 0]);
    expect(d.engine.counters[C_SYNPROXY_ACCEPTED]).toBe(1);
  });

  it('forged cookies, and RSTs without a session, make nothing', () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'on' })));
    const c = (t: Partial<TcpSpec> & { flags: number }) =>
      tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, ...t });
    const synAck = parse(d.forward(c({ seq: 100, flags: SYN, options: SYN_OPTS })));
    expect(d.drop(c({ seq: 101, ack: synAck.seq + 2, flags: ACK }))).toBe(DROP_SYNPROXY_BAD_COOKIE);
    expect(d.drop(c({ seq: 102, ack: synAck.seq + 1, flags: ACK }))).toBe(DROP_SYNPROXY_BAD_COOKIE);
    expect(d.drop(c({ seq: 101, ack: synAck.seq + 1, flags: RST | ACK }))).toBe(DROP_NO_SESSION);
    // Another client's tuple with this cookie.
    expect(
      d.drop(
        tcp({ src: fam.client, dst: fam.vip, sport: CPORT + 1, dport: 80, seq: 101, ack: synAck.seq + 1, flags: ACK }),
      ),
    ).toBe(DROP_SYNPROXY_BAD_COOKIE);
    expect([...d.engine.sessionIds()].length).toBe(0);
    // Two minutes later the right ACK is too old.
    d.nowMs = 200_000;
    expect(d.drop(c({ seq: 101, ack: synAck.seq + 1, flags: ACK }))).toBe(DROP_SYNPROXY_BAD_COOKIE);
  });

  it('a valid cookie that cannot make a session yet (table full) is dropped by reason; its retry succeeds once there is room', () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'on' }), { capacity: 1 }));
    const connectFrom = (sport: number) => {
      const c = (t: Partial<TcpSpec> & { flags: number }) =>
        tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, ...t });
      const synAck = parse(d.forward(c({ seq: 500, flags: SYN, options: SYN_OPTS })));
      return c({ seq: 501, ack: synAck.seq + 1, flags: ACK });
    };
    const first = connectFrom(CPORT);
    expect(parse(d.forward(first)).flags).toBe(SYN); // the one record: the SYN to the server
    const second = connectFrom(CPORT + 1);
    expect(d.drop(second)).toBe(DROP_TABLE_FULL);
    expect(d.engine.emitCount).toBe(0); // silence, not an RST: the client will retry
    expect(d.engine.counters[C_RST_SENT]).toBe(0);
    // The first connection ends (the server refuses it; the session closes and expires).
    const s = d.session();
    d.forward(
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq: 0, ack: s.seqDelta + 501, flags: RST | ACK }),
    );
    d.nowMs += 60_000;
    d.engine.advanceTimers(d.nowMs);
    d.engine.clearEmitted();
    expect(parse(d.forward(second)).flags).toBe(SYN); // the same cookie ACK, retransmitted
  });

  it("the server's SYN-ACK becomes the ACK of its handshake, with TOA; data held meanwhile follows it", () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'on' })));
    const c = (t: Partial<TcpSpec> & { flags: number }) =>
      tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, ...t });
    const synAck = parse(d.forward(c({ seq: CLIENT_ISN, flags: SYN, options: SYN_OPTS })));
    const cookieTs = tsOf(synAck.options)![0];
    const data1 = Uint8Array.from({ length: 100 }, (_, i) => i);
    const data2 = Uint8Array.from({ length: 50 }, (_, i) => 200 - i);
    const tsOpts = (val: number) => [...opt.nop(), ...opt.nop(), ...opt.ts(val, cookieTs)];
    // The handshake ACK carries data: held, and the packet becomes the SYN.
    const syn = parse(
      d.forward(
        c({ seq: CLIENT_ISN + 1, ack: synAck.seq + 1, flags: ACK, options: tsOpts(CLI_TS + 1), payload: data1 }),
      ),
    );
    expect(syn.flags).toBe(SYN);
    // More data before the server answers: held, nothing sent.
    const more = d.send(
      c({ seq: CLIENT_ISN + 101, ack: synAck.seq + 1, flags: ACK, options: tsOpts(CLI_TS + 2), payload: data2 }),
    );
    expect([more.verdict, more.reason]).toEqual([VERDICT_DROP, 0]);
    expect(d.engine.counters[C_SYNPROXY_HELD]).toBe(2);
    const s = d.session();
    const r = (t: Partial<TcpSpec> & { flags: number }) =>
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, ...t });
    const synTs = tsOf(syn.options)![0];
    const ack = parse(
      d.forward(
        r({
          seq: RS_ISN,
          ack: syn.seq + 1,
          flags: SYN | ACK,
          options: [...opt.mss(1400), ...opt.nop(), ...opt.nop(), ...opt.ts(SRV_TS, synTs), ...opt.nop(), ...opt.ws(9)],
        }),
      ),
    );
    expect([ack.dport, ack.flags, ack.seq, ack.ack]).toEqual([8080, ACK, syn.seq + 1, RS_ISN + 1]);
    expect(ack.options.slice(0, toaLen)).toEqual(opt.toa(254, CPORT, fam.client));
    expect(tsOf(ack.options)).toEqual([synTs, SRV_TS]);
    expect(d.session().state).toBe('ESTABLISHED');
    // The held segments, in order, in the server's spaces, TOA in each (ack = its ISN + 1).
    const [p1, p2, ...rest] = emitted(d.engine).map(parse);
    expect(rest).toEqual([]);
    for (const [p, seq, data, tsval] of [
      [p1!, CLIENT_ISN + 1, data1, CLI_TS + 1],
      [p2!, CLIENT_ISN + 101, data2, CLI_TS + 2],
    ] as const) {
      expect([p.dport, p.seq, p.ack]).toEqual([8080, (seq + s.seqDelta) >>> 0, RS_ISN + 1]);
      expect(p.payload).toEqual(data);
      expect(p.options.slice(0, toaLen)).toEqual(opt.toa(254, CPORT, fam.client));
      expect(tsOf(p.options)).toEqual([(tsval + s.tsDelta) >>> 0, SRV_TS]);
    }
  });

  it('established: both sequence spaces, SACK, timestamps and windows translated both ways; FINs', () => {
    const { d, c, r, s: s0, cookie, cookieTs, syn } = proxied(fam, 'established');
    const s = d.session();
    expect(s0!.lport).toBe(s.lport);
    const srvDelta = (cookie - RS_ISN) | 0;
    expect(s.srvDelta).toBe(srvDelta);
    const lbIsn = syn!.seq;
    // Server → client: seq into the cookie's space, ack back to the client's, the server's
    // timestamps into the clock the client was given, its window (scale 9) into scale 7.
    const out = parse(
      d.forward(
        r!({
          seq: RS_ISN + 1,
          ack: lbIsn + 1,
          flags: ACK,
          window: 1000,
          options: [
            ...opt.nop(),
            ...opt.nop(),
            ...opt.ts(SRV_TS + 10, (CLI_TS + 5 + s.tsDelta) >>> 0),
            ...opt.nop(),
            ...opt.nop(),
            ...opt.sack([[lbIsn + 1, lbIsn + 11]]),
          ],
          payload: new Uint8Array(10),
        }),
      ),
    );
    expect([out.sport, out.dport, out.seq, out.ack]).toEqual([80, CPORT, (cookie + 1) >>> 0, (CLIENT_ISN + 1) >>> 0]);
    expect(tsOf(out.options)).toEqual([(cookieTs + 10) >>> 0, (CLI_TS + 5) >>> 0]);
    expect(new DataView(out.l4.buffer).getUint16(14)).toBe(4000);
    const sack = optionList(out.options).find(([k]) => k === 5)![1];
    expect([u32(sack, 2), u32(sack, 6)]).toEqual([(CLIENT_ISN + 1) >>> 0, (CLIENT_ISN + 11) >>> 0]);
    // Client → server: ack and SACK blocks into the server's space, TSecr back to its clock.
    const inb = parse(
      d.forward(
        c({
          seq: CLIENT_ISN + 1,
          ack: cookie + 11,
          flags: ACK,
          options: [
            ...opt.nop(),
            ...opt.nop(),
            ...opt.ts(CLI_TS + 20, cookieTs + 10),
            ...opt.nop(),
            ...opt.nop(),
            ...opt.sack([[cookie + 21, cookie + 31]]),
          ],
        }),
      ),
    );
    expect([inb.seq, inb.ack]).toEqual([(lbIsn + 1) >>> 0, (RS_ISN + 11) >>> 0]);
    expect(tsOf(inb.options)).toEqual([(CLI_TS + 20 + s.tsDelta) >>> 0, SRV_TS + 10]);
    const sack2 = optionList(inb.options).find(([k]) => k === 5)![1];
    expect([u32(sack2, 2), u32(sack2, 6)]).toEqual([RS_ISN + 21, RS_ISN + 31]);
    // No TOA once the server has data acknowledged past its ISN + 1.
    expect(optionList(inb.options).some(([k]) => k === 254)).toBe(false);
    // FINs both ways, then the last ACK: TIME_WAIT.
    d.forward(c({ seq: CLIENT_ISN + 1, ack: cookie + 11, flags: FIN | ACK }));
    const fin = parse(d.forward(r!({ seq: RS_ISN + 11, ack: lbIsn + 2, flags: FIN | ACK })));
    expect([fin.seq, fin.ack]).toEqual([(cookie + 11) >>> 0, (CLIENT_ISN + 2) >>> 0]);
    d.forward(c({ seq: CLIENT_ISN + 2, ack: cookie + 12, flags: ACK }));
    expect(d.session().state).toBe('TIME_WAIT');
  });

  it("the server's SYN-ACK again gets the ACK again; a client ACK again sends the SYN again", () => {
    const { d, c, r, cookie, syn } = proxied(fam, 'syn');
    const again = parse(d.forward(c({ seq: CLIENT_ISN + 1, ack: cookie + 1, flags: ACK })));
    expect([again.flags, again.seq]).toEqual([SYN, syn!.seq]);
    expect(d.engine.counters[C_SYNPROXY_SYN_RETRIES]).toBe(1);
    const sa = r!({ seq: RS_ISN, ack: syn!.seq + 1, flags: SYN | ACK });
    const a1 = parse(d.forward(sa));
    const a2 = parse(d.forward(sa));
    expect([a2.flags, a2.seq, a2.ack]).toEqual([a1.flags, a1.seq, a1.ack]);
    // A SYN-ACK that does not answer the proxy's SYN is not taken.
    expect(d.send(r!({ seq: RS_ISN + 5, ack: syn!.seq + 1, flags: SYN | ACK })).verdict).toBe(VERDICT_DROP);
  });

  it('the first data right after the handshake ACK is held, not taken for a retransmission; the same data again is', () => {
    const { d, c, cookie, syn } = proxied(fam, 'syn');
    const data = c({ seq: CLIENT_ISN + 1, ack: cookie + 1, flags: ACK, payload: new Uint8Array(80).fill(9) });
    const first = d.send(data);
    expect([first.verdict, first.reason]).toEqual([VERDICT_DROP, 0]);
    expect(d.engine.counters[C_SYNPROXY_SYN_RETRIES]).toBe(0);
    expect(d.engine.counters[C_SYNPROXY_HELD]).toBe(1);
    // Sent again (the client's RTO passed): the SYN goes again.
    const again = parse(d.forward(data));
    expect([again.flags, again.seq]).toEqual([SYN, syn!.seq]);
    expect(d.engine.counters[C_SYNPROXY_SYN_RETRIES]).toBe(1);
  });

  it('a server that never answers: the SYN again after 1 s and 2 s, then RSTs', () => {
    const { d, cookie, syn } = proxied(fam, 'syn');
    const s = d.session();
    const ring = new PacketRing(1);
    const at = (ms: number) => d.engine.processBurst(ring, 0, ms);
    at(1100);
    const [s1] = emitted(d.engine).map(parse);
    expect([s1!.flags, s1!.seq]).toEqual([SYN, syn!.seq]);
    at(3200);
    expect(emitted(d.engine).map((p) => parse(p).flags)).toEqual([SYN]);
    at(7300);
    const rsts = emitted(d.engine).map(parse);
    expect(rsts.map((p) => [p.dport, p.flags, p.seq])).toEqual([
      [CPORT, RST, (cookie + 1) >>> 0],
      [8080, RST, (syn!.seq + 1) >>> 0],
    ]);
    expect([...d.engine.sessionIds()]).toEqual([]);
    expect(d.engine.counters[C_SYNPROXY_SERVER_TIMEOUTS]).toBe(1);
    expect(s.proxied).toBe(true);
  });

  it('a server refusing (RST) is told to the client with the sequence number it expects', () => {
    const { d, r, cookie, syn } = proxied(fam, 'syn');
    const rst = parse(d.forward(r!({ seq: 0, ack: syn!.seq + 1, flags: RST | ACK })));
    expect([rst.dport, rst.flags, rst.seq, rst.ack]).toEqual([
      CPORT,
      RST | ACK,
      (cookie + 1) >>> 0,
      (CLIENT_ISN + 1) >>> 0,
    ]);
    expect(d.session().state).toBe('CLOSE');
  });

  it("an ICMP error quotes each side's packet in that side's sequence spaces", () => {
    const { d, cookie, syn } = proxied(fam, 'established');
    const s = d.session();
    const quoted = tcp({
      src: fam.lip,
      dst: fam.rs1,
      sport: s.lport,
      dport: 8080,
      seq: syn!.seq + 1,
      ack: RS_ISN + 1,
      flags: ACK,
    });
    const err = v4
      ? icmp('198.18.1.1', fam.lip, 3, 4, 1400, quoted.slice(0, 20 + 20))
      : icmp('fd00:18:1::1', fam.lip, 2, 0, 1280, quoted.slice(0, 40 + 20));
    const out = parse(d.forward(err));
    const q = parse(out.l4.slice(8));
    expect([q.sport, q.dport, q.seq, q.ack]).toEqual([CPORT, 80, (CLIENT_ISN + 1) >>> 0, (cookie + 1) >>> 0]);
  });

  it('expiry RSTs carry what each side expects, in its own space', () => {
    const { d, c, r, cookie, syn } = proxied(fam, 'established', { rstOnExpire: true });
    d.forward(r!({ seq: RS_ISN + 1, ack: syn!.seq + 1, flags: ACK, payload: new Uint8Array(5) }));
    d.forward(c({ seq: CLIENT_ISN + 1, ack: cookie + 6, flags: ACK }));
    d.engine.processBurst(new PacketRing(1), 0, 100 * 1000);
    const rsts = emitted(d.engine).map(parse);
    expect(rsts.map((p) => [p.dport, p.seq])).toEqual([
      [CPORT, (cookie + 6) >>> 0],
      [8080, (syn!.seq + 1) >>> 0],
    ]);
  });
});

describe('SYN proxy auto', () => {
  it("switches on when a worker's half-open sessions pile up, and answers with cookies", () => {
    const d = new Driver(makeEngine(labServices(), { capacity: 8192 }));
    const ring = new PacketRing(256);
    let n = 0;
    while (n < SYNPROXY_AUTO_ON_HALF_OPEN) {
      for (let i = 0; i < 256; i++, n++)
        ring.put(
          i,
          tcp({ src: `198.18.${101 + (n >> 8)}.${n & 255}`, dst: V4.vip, sport: 2000, dport: 80, flags: SYN }),
        );
      d.engine.processBurst(ring, 256, 0);
      expect(Array.from(ring.verdicts.subarray(0, 256)).every((v) => v === VERDICT_FORWARD)).toBe(true);
    }
    expect(d.engine.counters[C_SYNPROXY_AUTO_ON]).toBe(0);
    d.engine.processBurst(ring, 0, 100); // timers: the worker looks at its half-open count
    expect(d.engine.counters[C_SYNPROXY_AUTO_ON]).toBe(1);
    const before = d.engine.sessionCount;
    const synAck = parse(d.forward(tcp({ src: '198.18.120.1', dst: V4.vip, sport: 3000, dport: 80, flags: SYN })));
    expect(synAck.flags).toBe(SYN | ACK);
    expect(d.engine.sessionCount).toBe(before);
  });
});
