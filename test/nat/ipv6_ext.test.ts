/**
 * IPv6 packets with extension headers in front of their upper layer (packet/ipv6_ext.ts).
 * Hop-by-Hop and Destination Options headers are looked past and forwarded as they came: each
 * packet is sent to one engine with the headers and, without them, to a twin engine (same
 * ISN key, same seed), and the two outputs must be the same packet but for the headers, byte
 * for byte. The others are dropped with a reason.
 */

import { describe, expect, it } from 'vitest';
import { C_ICMP_ECHO_REPLIED, C_ICMP_TRANSLATED } from '../../src/dataplane/counters.js';
import type { Engine } from '../../src/dataplane/engine.js';
import {
  DROP_BAD_ICMP,
  DROP_BAD_IPV6_HEADER,
  DROP_ICMP_UNSUPPORTED,
  DROP_IPV6_EXT_HEADER,
  DROP_TRUNCATED,
  DROP_UNSUPPORTED_PROTOCOL,
} from '../../src/nat/verdict.js';
import { serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { Driver, labServices, makeEngine, shareSecrets, V6 } from '../helpers/engine.js';
import {
  ACK,
  checksumsOk,
  DEST_OPTIONS,
  extHeaderBytes,
  HOP_BY_HOP,
  FIN,
  icmp,
  opt,
  parse,
  PSH,
  SYN,
  tcp,
  udp,
  withExtHeaders,
  type ExtHeader,
  type TcpSpec,
} from '../helpers/packets.js';

const CPORT = 41000;
const HBH = HOP_BY_HOP;
const DST = DEST_OPTIONS;
type Header = ExtHeader;

/** Two engines that make the same sessions: one sees the headers, its twin does not. */
class Twins {
  readonly ext: Driver;
  readonly plain: Driver;

  constructor(specs: ServiceSpec[] = labServices()) {
    this.ext = new Driver(makeEngine(specs));
    this.plain = new Driver(makeEngine(specs));
    shareSecrets(this.plain.engine, this.ext.engine);
  }

  /** `p` with `headers` through one, without through the other: the same packet, which the
   * LB wrote itself (no headers of the packet it answers). */
  written(p: Uint8Array, ...headers: Header[]): Uint8Array {
    const out = this.ext.forward(withExtHeaders(p, ...headers));
    const want = this.plain.forward(p);
    expect(out).toEqual(want);
    expect(extHeaderBytes(out)).toEqual([]);
    return want;
  }

  /** `p` with `headers` through one, without through the other: the same packet but for them. */
  same(p: Uint8Array, ...headers: Header[]): Uint8Array {
    const out = this.ext.forward(withExtHeaders(p, ...headers));
    const want = this.plain.forward(p);
    expect(out).toEqual(withExtHeaders(want, ...headers));
    return want;
  }

  get engine(): Engine {
    return this.ext.engine;
  }
}

const fromClient = (t: Partial<TcpSpec> & { flags: number }) =>
  tcp({ src: V6.client, dst: V6.vip, sport: CPORT, dport: 80, ...t });

describe('IPv6 extension headers', () => {
  it('a FULLNAT connection whose packets carry Hop-by-Hop and Destination Options headers both ways: they pass as they came, TOA goes in as without them', () => {
    const t = new Twins();
    const syn = t.same(fromClient({ seq: 1000, flags: SYN, options: opt.mss(1440) }), HBH, DST);
    const s = t.plain.session();
    const synAck = tcp({
      src: V6.rs1,
      dst: V6.lip,
      sport: 8080,
      dport: s.lport,
      seq: 7000,
      ack: (1001 + s.seqDelta) >>> 0,
      flags: SYN | ACK,
      options: opt.mss(1440),
    });
    expect(parse(t.same(synAck, DST)).dst).toBe(parse(fromClient({ flags: ACK })).src);
    // The first data segment: TOA is due (the server has acknowledged no client byte yet).
    const data = new Uint8Array(300).fill(7);
    const first = t.same(fromClient({ seq: 1001, ack: 7001, flags: ACK | PSH, payload: data }), HBH);
    expect(parse(first).options).toEqual(opt.toa(254, CPORT, V6.client));
    expect(parse(withExtHeaders(first, HBH)).options).toEqual(opt.toa(254, CPORT, V6.client));
    const back = tcp({
      src: V6.rs1,
      dst: V6.lip,
      sport: 8080,
      dport: s.lport,
      seq: 7001,
      ack: (1301 + s.seqDelta) >>> 0,
      flags: ACK | PSH | FIN,
      payload: data,
    });
    t.same(back, DST, DST);
    t.same(fromClient({ seq: 1301, ack: 7302, flags: ACK | FIN }), DST);
    expect(parse(syn).dst).toBe(parse(synAck).src);
  });

  it('the SYN proxy: what it writes goes without the headers, what it forwards keeps them', () => {
    const t = new Twins(labServices({ synProxy: 'on' }));
    const synAck = parse(t.written(fromClient({ seq: 1000, flags: SYN, options: opt.mss(1440) }), HBH, DST));
    expect(synAck.flags).toBe(SYN | ACK);
    const syn = parse(t.written(fromClient({ seq: 1001, ack: synAck.seq + 1, flags: ACK }), HBH));
    expect(syn.flags).toBe(SYN);
    const s = t.plain.session();
    const server = { src: V6.rs1, dst: V6.lip, sport: 8080, dport: s.lport };
    // The server's SYN-ACK becomes the proxy's ACK to it.
    const ack = parse(t.written(tcp({ ...server, seq: 9000, ack: syn.seq + 1, flags: SYN | ACK }), DST));
    expect(ack.flags).toBe(ACK);
    const data = new Uint8Array(100).fill(9);
    const first = t.same(fromClient({ seq: 1001, ack: synAck.seq + 1, flags: ACK | PSH, payload: data }), HBH, DST);
    expect(parse(first).options).toEqual(opt.toa(254, CPORT, V6.client));
    t.same(tcp({ ...server, seq: 9001, ack: parse(first).seq + 100, flags: ACK | PSH, payload: data }), DST);
  });

  it('UDP both ways, and the NAT and TUNNEL modes', () => {
    const t = new Twins();
    const q = t.same(udp({ src: V6.client, dst: V6.vip, sport: CPORT, dport: 53, payload: new Uint8Array(40) }), DST);
    const lport = parse(q).sport;
    t.same(udp({ src: V6.rs1, dst: V6.lip, sport: 5353, dport: lport, payload: new Uint8Array(90) }), HBH, DST);

    const nat = new Twins([
      serviceWithDefaults({
        vip: V6.vip,
        port: 80,
        mode: 'nat',
        realServers: [{ address: V6.rs1, port: 8080, weight: 1 }],
      }),
    ]);
    nat.same(fromClient({ seq: 1000, flags: SYN }), HBH);
    nat.same(tcp({ src: V6.rs1, dst: V6.client, sport: 8080, dport: CPORT, seq: 1, ack: 1001, flags: SYN | ACK }), DST);

    // TUNNEL: the client's packet, its headers included, inside the outer header.
    const tunnel = new Driver(
      makeEngine([
        serviceWithDefaults({
          vip: V6.vip,
          port: 80,
          mode: 'tunnel',
          localAddresses: [V6.lip],
          realServers: [{ address: V6.rs1, port: 80, weight: 1 }],
        }),
      ]),
    );
    const inner = withExtHeaders(fromClient({ seq: 1000, flags: SYN }), HBH, DST);
    const out = tunnel.forward(inner);
    expect(parse(out).proto).toBe(41);
    expect(out.subarray(40)).toEqual(inner);
    expect(checksumsOk(out.subarray(40))).toEqual({ ip: true, l4: true });
  });

  it('an echo request with options headers is answered without them', () => {
    const d = new Driver(makeEngine());
    const body = new TextEncoder().encode('ping with options');
    const out = d.forward(withExtHeaders(icmp(V6.client, V6.vip, 128, 0, 0x00070001, body), HBH, DST));
    expect(extHeaderBytes(out)).toEqual([]);
    expect(out[6]).toBe(58);
    const want = icmp(V6.vip, V6.client, 129, 0, 0x00070001, body);
    expect(parse(out).l4).toEqual(parse(want).l4);
    expect([parse(out).src, parse(out).dst]).toEqual([parse(want).src, parse(want).dst]);
    expect(out.length).toBe(want.length);
    expect(d.engine.counters[C_ICMP_ECHO_REPLIED]).toBe(1);
  });

  it('an ICMPv6 error quoting a packet with options headers is translated, the quote behind its own headers', () => {
    const t = new Twins();
    t.same(fromClient({ seq: 1000, flags: SYN }), DST);
    const s = t.plain.session();
    const quoted = (q: Uint8Array) => withExtHeaders(q, DST);
    const sent = tcp({
      src: V6.lip,
      dst: V6.rs1,
      sport: s.lport,
      dport: 8080,
      seq: (1001 + s.seqDelta) >>> 0,
      ack: 5001,
      flags: ACK,
    });
    const router = 'fd00:18:1::fe';
    // Packet too big, as a router on the real servers' side says it about the LB's packet.
    const out = t.ext.forward(withExtHeaders(icmp(router, V6.lip, 2, 0, 1400, quoted(sent)), HBH));
    const p = parse(out);
    expect(extHeaderBytes(out)).toEqual(extHeaderBytes(withExtHeaders(icmp(router, V6.lip, 2, 0, 0, sent), HBH)));
    const clientSide = parse(fromClient({ flags: ACK }));
    expect([p.src, p.dst]).toEqual([clientSide.dst, clientSide.src]);
    expect(p.l4.slice(8)).toEqual(quoted(fromClient({ seq: 1001, ack: 5001, flags: ACK })));
    expect(t.engine.counters[C_ICMP_TRANSLATED]).toBe(1);
    // A quote whose options header runs past the error's end has no ports to read; one
    // behind a Routing header is not looked into.
    expect(t.ext.drop(icmp(router, V6.lip, 2, 0, 1400, quoted(sent).slice(0, 44)))).toBe(DROP_BAD_ICMP);
    const routed = withExtHeaders(sent, { type: 43, units: 1 });
    expect(t.ext.drop(icmp(router, V6.lip, 2, 0, 1400, routed))).toBe(DROP_ICMP_UNSUPPORTED);
  });

  it.each([
    ['a Routing header (segments left 0)', [{ type: 43, units: 1 }], DROP_IPV6_EXT_HEADER],
    ['a Routing header behind options', [HBH, { type: 43, units: 3, segmentsLeft: 1 }], DROP_IPV6_EXT_HEADER],
    ['AH', [{ type: 51, units: 3 }], DROP_IPV6_EXT_HEADER],
    ['four options headers', [HBH, DST, DST, DST], DROP_IPV6_EXT_HEADER],
    ['Hop-by-Hop not first', [DST, HBH], DROP_BAD_IPV6_HEADER],
  ] as const)('dropped: %s', (_n, headers, reason) => {
    const d = new Driver(makeEngine());
    expect(d.drop(withExtHeaders(fromClient({ seq: 1, flags: SYN }), ...headers))).toBe(reason);
    expect([...d.engine.sessionIds()]).toEqual([]);
  });

  it('dropped: an options header past the end, an upper layer tunvs lacks behind options', () => {
    const d = new Driver(makeEngine());
    const syn = withExtHeaders(fromClient({ seq: 1, flags: SYN }), { type: 60, units: 4 });
    // The payload length says the header ends inside the packet, the header says it does not.
    const cut = syn.slice(0, 40 + 16);
    new DataView(cut.buffer).setUint16(4, 16);
    expect(d.drop(cut)).toBe(DROP_TRUNCATED);
    const gre = withExtHeaders(fromClient({ seq: 1, flags: SYN }), DST);
    gre[40] = 47;
    expect(d.drop(gre)).toBe(DROP_UNSUPPORTED_PROTOCOL);
    const icmp4 = withExtHeaders(fromClient({ seq: 1, flags: SYN }), HBH);
    icmp4[40] = 1;
    expect(d.drop(icmp4)).toBe(DROP_UNSUPPORTED_PROTOCOL);
    // ESP (50) and GRE (47) right after the fixed header: one an extension header, one not.
    const esp = fromClient({ seq: 1, flags: SYN });
    esp[6] = 50;
    expect(d.drop(esp)).toBe(DROP_IPV6_EXT_HEADER);
    esp[6] = 47;
    expect(d.drop(esp)).toBe(DROP_UNSUPPORTED_PROTOCOL);
  });
});
