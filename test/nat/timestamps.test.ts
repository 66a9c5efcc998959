/**
 * Timestamp translation of plain (not proxied) sessions, IPv4 and IPv6: the real server sees
 * the LB's per-tuple clock, the client its own values back; an option at an odd offset too.
 */

import { describe, expect, it } from 'vitest';
import { IsnGenerator } from '../../src/nat/seq.js';
import { Driver, labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, opt, optionList, parse, SYN, tcp, type TcpSpec } from '../helpers/packets.js';

function tsOf(options: number[]): [number, number] {
  const b = optionList(options).find(([k]) => k === 8)![1];
  const dv = new DataView(Uint8Array.from(b).buffer);
  return [dv.getUint32(2), dv.getUint32(6)];
}

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('timestamps %s', (_n, fam) => {
  const c = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.client, dst: fam.vip, sport: 41000, dport: 80, ...t });
  /** The real server's segments to the session's local port. */
  const server = (lport: number) => (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: lport, ...t });

  it('TSval toward the server, TSecr back; the client sees its own values', () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'off' })));
    const syn = parse(
      d.forward(c({ seq: 1, flags: SYN, options: [...opt.nop(), ...opt.nop(), ...opt.ts(0xfffffff0, 0)] })),
    );
    const s = d.session();
    expect(s.tsDelta).not.toBe(0);
    expect(tsOf(syn.options)).toEqual([(0xfffffff0 + s.tsDelta) >>> 0, 0]);
    const r = server(s.lport);
    const sa = parse(
      d.forward(
        r({
          seq: 50,
          ack: syn.seq + 1,
          flags: SYN | ACK,
          options: [...opt.nop(), ...opt.nop(), ...opt.ts(900, tsOf(syn.options)[0])],
        }),
      ),
    );
    expect(tsOf(sa.options)).toEqual([900, 0xfffffff0]);
    // At an odd offset ([NOP, TS, NOP]); the driver verifies every checksum in full.
    const ack = parse(
      d.forward(c({ seq: 2, ack: 51, flags: ACK, options: [...opt.nop(), ...opt.ts(0xfffffff5, 900), ...opt.nop()] })),
    );
    const toaLen = fam === V4 ? 8 : 20;
    expect(tsOf(ack.options.slice(toaLen))).toEqual([(0xfffffff5 + s.tsDelta) >>> 0, 900]);
  });

  it('established segments in every option layout: NOP NOP TS (read without a scan), TS first, odd offset, with SACK', () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'off' })));
    const syn = parse(
      d.forward(c({ seq: 1, flags: SYN, options: [...opt.mss(1400), ...opt.nop(), ...opt.nop(), ...opt.ts(5000, 0)] })),
    );
    const s = d.session();
    const r = server(s.lport);
    d.forward(
      r({
        seq: 50,
        ack: syn.seq + 1,
        flags: SYN | ACK,
        options: [...opt.nop(), ...opt.nop(), ...opt.ts(900, tsOf(syn.options)[0])],
      }),
    );
    d.forward(c({ seq: 2, ack: 51, flags: ACK })); // TOA goes here
    const layouts: [string, (ts: number[]) => number[]][] = [
      ['NOP NOP TS', (ts) => [...opt.nop(), ...opt.nop(), ...ts]],
      ['TS NOP NOP', (ts) => [...ts, ...opt.nop(), ...opt.nop()]],
      ['NOP TS NOP', (ts) => [...opt.nop(), ...ts, ...opt.nop()]],
      [
        'NOP NOP TS + SACK',
        (ts) => [...opt.nop(), ...opt.nop(), ...ts, ...opt.nop(), ...opt.nop(), ...opt.sack([[10, 20]])],
      ],
    ];
    for (const [name, layout] of layouts) {
      // Every checksum is verified in full by the driver.
      // ack past the server's ISN + 1: no TOA, the options stay where they are.
      const up = parse(d.forward(c({ seq: 2, ack: 60, flags: ACK, options: layout(opt.ts(5001, 901)) })));
      expect(tsOf(up.options), name).toEqual([(5001 + s.tsDelta) >>> 0, 901]);
      expect(up.options.length, name).toBe(layout(opt.ts(0, 0)).length);
      const down = parse(
        d.forward(
          r({
            seq: 51,
            ack: (2 + s.seqDelta) >>> 0,
            flags: ACK,
            options: layout(opt.ts(902, (5001 + s.tsDelta) >>> 0)),
          }),
        ),
      );
      expect(tsOf(down.options), name).toEqual([902, 5001]);
    }
  });

  it('translateTimestamps: false passes them as they are', () => {
    const d = new Driver(makeEngine(labServices({ synProxy: 'off', translateTimestamps: false })));
    const syn = parse(d.forward(c({ seq: 1, flags: SYN, options: [...opt.nop(), ...opt.nop(), ...opt.ts(1234, 0)] })));
    expect(d.session().tsDelta).toBe(0);
    expect(tsOf(syn.options)).toEqual([1234, 0]);
  });
});

it("the LB's clock for a tuple only moves ahead, whichever client uses it", () => {
  const g = new IsnGenerator([1, 2, 3, 4]);
  const key = Int32Array.from([0x0406, (8080 << 16) | 2000, 0x0a000001, 0x0a000002]);
  g.generate(key, 3, 1000);
  const first = g.tsClock(1000);
  g.generate(Int32Array.from([0x0406, (8080 << 16) | 2001, 0x0a000001, 0x0a000002]), 3, 1000);
  g.generate(key, 3, 61_000);
  expect((g.tsClock(61_000) - first) | 0).toBe(60_000);
});
