/** UDP FULLNAT and ICMP/ICMPv6 translation, both families. */

import { describe, expect, it } from 'vitest';
import { C_ICMP_ECHO_REPLIED, C_ICMP_TRANSLATED } from '../../src/dataplane/counters.js';
import { DROP_ICMP_NO_SESSION, DROP_ICMP_UNSUPPORTED, DROP_NOT_LOCAL } from '../../src/nat/verdict.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, checksumsOk, fragmentInfo, fragmentsOf, icmp, parse, SYN, tcp, udp } from '../helpers/packets.js';

const CPORT = 33333;

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('UDP %s', (_n, fam) => {
  it('both directions rewritten; one session', () => {
    const d = new Driver(makeEngine());
    const q = new TextEncoder().encode('query');
    const out = d.forward(udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: q }));
    const s = d.session();
    expect(s.protocol).toBe('udp');
    expect(s.state).toBe('UDP');
    expect(out).toEqual(udp({ src: fam.lip, dst: fam.rs1, sport: s.lport, dport: 5353, payload: q }));
    const a = new TextEncoder().encode('answer!');
    const back = d.forward(udp({ src: fam.rs1, dst: fam.lip, sport: 5353, dport: s.lport, payload: a }));
    expect(back).toEqual(udp({ src: fam.vip, dst: fam.client, sport: 53, dport: CPORT, payload: a }));
    expect(s.expiresInMs).toBe(300_000);
  });

  if (fam === V4) {
    it('an IPv4 UDP checksum of 0 ("none") stays 0', () => {
      const d = new Driver(makeEngine());
      const out = d.forward(udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, noChecksum: true }));
      expect(new DataView(out.buffer).getUint16(26)).toBe(0);
    });
  }
});

describe.each([
  ['IPv4', V4, 3, 4, 0, 8, 11],
  ['IPv6', V6, 2, 0, 128, 128, 3],
] as const)('ICMP %s', (_n, fam, tooBigType, tooBigCode, echoReq, _x, timeExceeded) => {
  const v4 = fam === V4;
  const echoType = v4 ? 8 : 128;
  void echoReq;

  function established() {
    const d = new Driver(makeEngine());
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, seq: 1000, flags: SYN }));
    const s = d.session();
    d.forward(
      tcp({
        src: fam.rs1,
        dst: fam.lip,
        sport: 8080,
        dport: s.lport,
        seq: 5000,
        ack: (1001 + s.seqDelta) >>> 0,
        flags: SYN | ACK,
      }),
    );
    return { d, s };
  }

  it('packet-too-big from the real-server side reaches the client with the quote translated', () => {
    const { d, s } = established();
    // Quoted: what we sent to the RS (LIP:lport → RIP:8080, seq in RS space).
    const quoted = tcp({
      src: fam.lip,
      dst: fam.rs1,
      sport: s.lport,
      dport: 8080,
      seq: (1001 + s.seqDelta) >>> 0,
      ack: 5001,
      flags: ACK,
    });
    const router = v4 ? '198.18.1.254' : 'fd00:18:1::fe';
    const out = d.forward(icmp(router, fam.lip, tooBigType, tooBigCode, 1400, quoted));
    const p = parse(out);
    expect(p.src).toBe(parse(tcp({ src: fam.vip, dst: fam.client, sport: 1, dport: 1, flags: ACK })).src);
    expect(p.dst).toBe(parse(tcp({ src: fam.client, dst: fam.vip, sport: 1, dport: 1, flags: ACK })).src);
    // The quote becomes client → VIP with the client's own seq, checksums valid.
    const wantQuote = tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, seq: 1001, ack: 5001, flags: ACK });
    expect(p.l4.slice(8)).toEqual(wantQuote);
    expect(new DataView(p.l4.buffer).getUint32(4)).toBe(1400);
    expect(d.engine.counters[C_ICMP_TRANSLATED]).toBe(1);
  });

  it('time-exceeded from the client side reaches the real server with ack back in LB space', () => {
    const { d, s } = established();
    const quoted = tcp({ src: fam.vip, dst: fam.client, sport: 80, dport: CPORT, seq: 5001, ack: 1001, flags: ACK });
    const router = v4 ? '198.18.100.254' : 'fd00:18:64::fe';
    const out = d.forward(icmp(router, fam.vip, timeExceeded, 0, 0, quoted));
    const p = parse(out);
    const wantQuote = tcp({
      src: fam.rs1,
      dst: fam.lip,
      sport: 8080,
      dport: s.lport,
      seq: 5001,
      ack: (1001 + s.seqDelta) >>> 0,
      flags: ACK,
    });
    expect(p.l4.slice(8)).toEqual(wantQuote);
    const rsSide = parse(tcp({ src: fam.lip, dst: fam.rs1, sport: 1, dport: 1, flags: ACK }));
    expect([p.src, p.dst]).toEqual([rsSide.src, rsSide.dst]);
  });

  it('a quote truncated after the ports (8 bytes of TCP) is still translated', () => {
    const { d, s } = established();
    const full = tcp({
      src: fam.lip,
      dst: fam.rs1,
      sport: s.lport,
      dport: 8080,
      seq: (1001 + s.seqDelta) >>> 0,
      flags: ACK,
    });
    const quoted = full.slice(0, (v4 ? 20 : 40) + 8);
    const out = d.forward(icmp(v4 ? '198.18.1.254' : 'fd00:18:1::fe', fam.lip, tooBigType, tooBigCode, 1400, quoted));
    const q = parse(out).l4.slice(8);
    const dv = new DataView(q.buffer);
    const l4 = v4 ? 20 : 40;
    expect([dv.getUint16(l4), dv.getUint16(l4 + 2), dv.getUint32(l4 + 4)]).toEqual([CPORT, 80, 1001]);
  });

  it('an error quoting a fragment: the first is translated (IPv6: past its fragment header), a later one dropped', () => {
    const d = new Driver(makeEngine());
    d.forward(udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53 }));
    const s = d.session();
    // What the LB sent the real server: a datagram too large for the MTU, in fragments.
    const frags = fragmentsOf(
      udp({ src: fam.lip, dst: fam.rs1, sport: s.lport, dport: 5353, payload: new Uint8Array(3000) }),
      1448,
      0x4242,
    );
    const router = v4 ? '198.18.1.254' : 'fd00:18:1::fe';
    const first = frags[0]!.slice(0, 200);
    const p = parse(d.forward(icmp(router, fam.lip, tooBigType, tooBigCode, 1400, first)));
    const toClient = parse(udp({ src: fam.vip, dst: fam.client, sport: 1, dport: 1 }));
    expect([p.src, p.dst]).toEqual([toClient.src, toClient.dst]);
    const quote = p.l4.slice(8);
    const qv = new DataView(quote.buffer);
    const l4 = v4 ? 20 : 48;
    expect(fragmentInfo(quote)).toMatchObject({ id: 0x4242, offset: 0, more: true });
    expect([qv.getUint16(l4), qv.getUint16(l4 + 2)]).toEqual([CPORT, 53]);
    const clientSide = parse(udp({ src: fam.client, dst: fam.vip, sport: 1, dport: 1 }));
    expect(parse(quote)).toMatchObject({ src: clientSide.src, dst: clientSide.dst });
    if (v4) expect(checksumsOk(quote).ip).toBe(true);
    // The second fragment has no ports: nothing to find its session by (IPVS ignores these too).
    const later = icmp(router, fam.lip, tooBigType, tooBigCode, 1400, frags[1]!.slice(0, 200));
    expect(d.drop(later)).toBe(DROP_ICMP_UNSUPPORTED);
    expect(d.engine.counters[C_ICMP_TRANSLATED]).toBe(1);
  });

  it('an error about no known session is dropped', () => {
    const d = new Driver(makeEngine());
    const quoted = tcp({ src: fam.lip, dst: fam.rs1, sport: 5555, dport: 8080, flags: ACK });
    expect(d.drop(icmp(fam.rs1, fam.lip, tooBigType, tooBigCode, 1400, quoted))).toBe(DROP_ICMP_NO_SESSION);
  });

  it('echo request to the VIP is answered; to an unknown address dropped; other types dropped', () => {
    const d = new Driver(makeEngine());
    const body = new TextEncoder().encode('ping!');
    const out = d.forward(icmp(fam.client, fam.vip, echoType, 0, 0x00010002, body));
    const want = icmp(fam.vip, fam.client, echoType + (v4 ? -8 : 1), 0, 0x00010002, body);
    expect(parse(out).l4).toEqual(parse(want).l4);
    expect([parse(out).src, parse(out).dst]).toEqual([parse(want).src, parse(want).dst]);
    expect(d.engine.counters[C_ICMP_ECHO_REPLIED]).toBe(1);
    const other = v4 ? '198.18.9.9' : 'fd00:18:9::9';
    expect(d.drop(icmp(fam.client, other, echoType, 0, 1, body))).toBe(DROP_NOT_LOCAL);
    expect(d.drop(icmp(fam.client, fam.vip, v4 ? 5 : 137, 0, 0, body))).toBe(DROP_ICMP_UNSUPPORTED);
  });
});
