/** Per-service TOA variants: vendor kinds, TOA in the SYN, timestamp stripping, TOA off. */

import { describe, expect, it } from 'vitest';
import { C_TS_STRIPPED } from '../../src/dataplane/counters.js';
import { serviceWithDefaults } from '../../src/service/service.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, opt, optionList, parse, SYN, tcp } from '../helpers/packets.js';

function svc(fam: typeof V4, toa: object, extra: object = {}) {
  return [
    serviceWithDefaults({
      vip: fam.vip,
      port: 443,
      realServers: [{ address: fam.rs1, port: 8443, weight: 1 }],
      localAddresses: [fam.lip],
      toa: { enabled: true, kind: 254, kindV6: 254, inSyn: false, ...toa },
      ...extra,
    }),
  ];
}

const SYN_OPTS = [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(111, 0), ...opt.nop(), ...opt.ws(7)];

function handshake(d: Driver, fam: typeof V4) {
  const syn = d.forward(
    tcp({ src: fam.client, dst: fam.vip, sport: 40001, dport: 443, seq: 10, flags: SYN, options: SYN_OPTS }),
  );
  const s = d.session();
  d.forward(
    tcp({
      src: fam.rs1,
      dst: fam.lip,
      sport: 8443,
      dport: s.lport,
      seq: 77,
      ack: (11 + s.seqDelta) >>> 0,
      flags: SYN | ACK,
    }),
  );
  const ack = d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40001, dport: 443, seq: 11, ack: 78, flags: ACK }));
  return { syn: parse(syn), ack: parse(ack) };
}

describe('TOA options per service', () => {
  it('kind 200 (vendor) for IPv4', () => {
    const d = new Driver(makeEngine(svc(V4, { kind: 200 })));
    expect(handshake(d, V4).ack.options).toEqual(opt.toa(200, 40001, V4.client));
  });

  it('kind 253 for IPv6 (Alibaba v2 layout), length 20', () => {
    const d = new Driver(makeEngine(svc(V6, { kindV6: 253 })));
    const o = handshake(d, V6).ack.options;
    expect(o).toEqual(opt.toa(253, 40001, V6.client));
    expect(o[1]).toBe(20);
  });

  it('TOA in the SYN when asked (saved-SYN readers), ahead of the client options', () => {
    for (const fam of [V4, V6]) {
      const d = new Driver(makeEngine(svc(fam, { inSyn: true })));
      const o = handshake(d, fam).syn.options;
      const list = optionList(o);
      expect(list[0]).toEqual([254, opt.toa(254, 40001, fam.client)]);
      // Every client option survives (v6: 20 + 20 = 40 bytes, exactly full).
      expect(list.filter(([k]) => k !== 1).map(([k]) => k)).toEqual([254, 2, 4, 8, 3]);
      expect(o.length).toBeLessThanOrEqual(40);
    }
  });

  it('timestamps stripped from the SYN only (NOPs in place)', () => {
    const d = new Driver(makeEngine(svc(V4, {}, { stripTimestamps: true })));
    const { syn } = handshake(d, V4);
    expect(optionList(syn.options).map(([k]) => k)).toEqual([2, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3]);
    expect(d.engine.counters[C_TS_STRIPPED]).toBe(1);
  });

  it('TOA disabled: nothing inserted, client TOA still removed', () => {
    const d = new Driver(makeEngine(svc(V4, { enabled: false })));
    const syn = d.forward(tcp({ src: V4.client, dst: V4.vip, sport: 40001, dport: 443, seq: 10, flags: SYN }));
    void syn;
    const s = d.session();
    d.forward(
      tcp({
        src: V4.rs1,
        dst: V4.lip,
        sport: 8443,
        dport: s.lport,
        seq: 77,
        ack: (11 + s.seqDelta) >>> 0,
        flags: SYN | ACK,
        options: opt.mss(1460),
      }),
    );
    const forged = opt.toa(254, 9, '10.1.1.1');
    const ack = parse(
      d.forward(
        tcp({ src: V4.client, dst: V4.vip, sport: 40001, dport: 443, seq: 11, ack: 78, flags: ACK, options: forged }),
      ),
    );
    expect(ack.options).toEqual(new Array<number>(8).fill(1));
  });
});
