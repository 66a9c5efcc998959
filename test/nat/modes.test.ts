/**
 * The forwarding modes besides FULLNAT, through the engine, IPv4 and IPv6: NAT (only the
 * destination changes; replies come back through the LB) and TUNNEL (the client's packet
 * inside IP-in-IP; no reply passes). Expected packets are built independently by the test
 * builder and compared byte for byte.
 */

import { describe, expect, it } from 'vitest';
import { C_DROPPED, C_SESSIONS_SLOPPY, C_TOA_INSERTED, C_TUNNEL_MTU_LEARNED } from '../../src/dataplane/counters.js';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import {
  DROP_NAT_TUPLE_TAKEN,
  DROP_NOT_LOCAL,
  DROP_NO_SESSION,
  DROP_TUNNEL_TOO_BIG,
  DROP_DR_NO_NEIGHBOUR,
  DROP_ICMP_UNSUPPORTED,
  VERDICT_DROP,
  VERDICT_FORWARD,
  VERDICT_LINK,
  VERDICT_REDIRECT,
} from '../../src/nat/verdict.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseService } from '../../src/config/config.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import {
  ACK,
  checksumsOk,
  FIN,
  icmp,
  opt,
  parse,
  PSH,
  refChecksum,
  RST,
  SYN,
  tcp,
  udp,
  type TcpSpec,
} from '../helpers/packets.js';

type Family = typeof V4;
const CPORT = 40000;
const SYN_OPTS = [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(111, 0), ...opt.nop(), ...opt.ws(7)];
const payload = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);

function services(fam: Family, mode: 'nat' | 'tunnel', extra: Partial<ServiceSpec> = {}): ServiceSpec[] {
  // TUNNEL cannot change the port: its real servers listen on the service port.
  const one = (protocol: 'tcp' | 'udp', port: number, more: Partial<ServiceSpec> = {}): ServiceSpec =>
    serviceWithDefaults({
      protocol,
      vip: fam.vip,
      port,
      scheduler: 'rr',
      mode,
      realServers: [{ address: fam.rs1, port: mode === 'tunnel' ? port : 8080, weight: 1 }],
      ...(mode === 'tunnel' ? { localAddresses: [fam.lip] } : {}),
      ...more,
    });
  return [one('tcp', 80, extra), one('tcp', 81), one('udp', 53)];
}

const c = (fam: Family, t: Partial<TcpSpec> & { flags: number }) =>
  tcp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 80, ...t });

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('NAT %s', (_name, fam) => {
  const toRs = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.client, dst: fam.rs1, sport: CPORT, dport: 8080, ...t });
  const r = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.rs1, dst: fam.client, sport: 8080, dport: CPORT, ...t });
  const toClient = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.vip, dst: fam.client, sport: 80, dport: CPORT, ...t });

  it('rewrites only the destination, and replies only the source; sequence numbers untouched', () => {
    const d = new Driver(makeEngine(services(fam, 'nat')));
    expect(d.forward(c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS }))).toEqual(
      toRs({ seq: 1000, flags: SYN, options: SYN_OPTS }),
    );
    const s = d.session();
    expect(s).toMatchObject({ mode: 'nat', laddr: fam.client, lport: CPORT, seqDelta: 0 });
    expect(d.forward(r({ seq: 5000, ack: 1001, flags: SYN | ACK, options: SYN_OPTS }))).toEqual(
      toClient({ seq: 5000, ack: 1001, flags: SYN | ACK, options: SYN_OPTS }),
    );
    const data = payload(300);
    expect(d.forward(c(fam, { seq: 1001, ack: 5001, flags: ACK | PSH, payload: data }))).toEqual(
      toRs({ seq: 1001, ack: 5001, flags: ACK | PSH, payload: data }),
    );
    expect(d.forward(r({ seq: 5001, ack: 1301, flags: ACK, payload: data }))).toEqual(
      toClient({ seq: 5001, ack: 1301, flags: ACK, payload: data }),
    );
    expect(d.session().state).toBe('ESTABLISHED');
    d.forward(c(fam, { seq: 1301, ack: 5301, flags: FIN | ACK }));
    d.forward(r({ seq: 5301, ack: 1302, flags: FIN | ACK }));
    d.forward(c(fam, { seq: 1302, ack: 5302, flags: ACK }));
    expect(d.session().state).toBe('TIME_WAIT');
    expect(d.engine.counters[C_TOA_INSERTED]).toBe(0);
  });

  it('inserts TOA when the service turns it on (the real server sees the client anyway)', () => {
    const d = new Driver(
      makeEngine(services(fam, 'nat', { toa: { enabled: true, kind: 254, kindV6: 254, inSyn: false } })),
    );
    d.forward(c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS }));
    d.forward(r({ seq: 5000, ack: 1001, flags: SYN | ACK, options: SYN_OPTS }));
    const out = parse(d.forward(c(fam, { seq: 1001, ack: 5001, flags: ACK })));
    expect(out.options).toEqual(opt.toa(254, CPORT, fam.client));
    expect(d.engine.counters[C_TOA_INSERTED]).toBe(1);
  });

  it('UDP both ways', () => {
    const d = new Driver(makeEngine(services(fam, 'nat')));
    const q = payload(40);
    expect(d.forward(udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: q }))).toEqual(
      udp({ src: fam.client, dst: fam.rs1, sport: CPORT, dport: 8080, payload: q }),
    );
    expect(d.forward(udp({ src: fam.rs1, dst: fam.client, sport: 8080, dport: CPORT, payload: q }))).toEqual(
      udp({ src: fam.vip, dst: fam.client, sport: 53, dport: CPORT, payload: q }),
    );
  });

  it('a reply of no session is not relayed; the same client port to two VIP ports of one server is refused', () => {
    const d = new Driver(makeEngine(services(fam, 'nat')));
    expect(d.drop(r({ seq: 1, ack: 1, flags: ACK }))).toBe(DROP_NOT_LOCAL);
    d.forward(c(fam, { seq: 1000, flags: SYN }));
    // Port 81 goes to the same real server: the reply tuple RIP:8080 → client:40000 is taken.
    expect(d.drop(c(fam, { dport: 81, seq: 2000, flags: SYN }))).toBe(DROP_NAT_TUPLE_TAKEN);
    expect(d.drop(c(fam, { seq: 1001, ack: 1, flags: ACK, sport: CPORT + 1 }))).toBe(DROP_NO_SESSION);
  });

  it.each([2, 3, 4])('a reply reaches the worker that made the session (%i workers)', (workers) => {
    const specs = resolveServices(services(fam, 'nat'), new IdRegistry());
    const engines = Array.from(
      { length: workers },
      (_, w) => new Engine({ worker: w, workers, capacity: 64, seed: 1 }, specs),
    );
    const ring = new PacketRing(1);
    const run = (w: number, p: Uint8Array): number => {
      ring.put(0, p);
      engines[w]!.processBurst(ring, 1, 0);
      return ring.verdicts[0] === VERDICT_REDIRECT ? ring.aux[0]! : w;
    };
    for (let i = 0; i < 50; i++) {
      const sport = 1024 + i * 977;
      const owner = run(0, c(fam, { sport, seq: 1, flags: SYN }));
      expect(run(owner, c(fam, { sport, seq: 1, flags: SYN }))).toBe(owner);
      const reply = tcp({ src: fam.rs1, dst: fam.client, sport: 8080, dport: sport, seq: 9, ack: 2, flags: SYN | ACK });
      expect(run((owner + 1) % workers, reply)).toBe(owner);
      expect(run(owner, reply)).toBe(owner);
      expect(ring.verdicts[0]).toBe(VERDICT_FORWARD);
    }
  });
});

/** The outer header TUNNEL puts in front of `inner`: checked field by field. */
/** `out` is `inner` in the tunnel to rs1: IP-in-IP, or with `gre` bytes of GRE header (4, or
 * 8 with its checksum) between. */
/** `out` is `inner` in the tunnel to rs1: IP-in-IP, or with `gre` bytes of GRE header, or
 * (`gue`) UDP and GUE headers to that port, the UDP checksum present (`gue.csum`) or 0. */
function expectTunnelled(
  out: Uint8Array,
  inner: Uint8Array,
  fam: Family,
  gre = 0,
  gue?: { port: number; csum: boolean },
): void {
  const v4 = fam === V4;
  const ipLen = v4 ? 20 : 40;
  const outerLen = ipLen + (gue ? 12 : gre);
  expect(out.length).toBe(inner.length + outerLen);
  expect(out.subarray(outerLen)).toEqual(inner);
  const o = parse(out);
  expect(o).toMatchObject({ src: parse(tcp({ src: fam.lip, dst: fam.rs1, sport: 1, dport: 1, flags: ACK })).src });
  expect(o.dst).toBe(parse(tcp({ src: fam.rs1, dst: fam.rs1, sport: 1, dport: 1, flags: ACK })).dst);
  expect(o.proto).toBe(gue ? 17 : gre > 0 ? 47 : v4 ? 4 : 41);
  if (gue) {
    // UDP from the dynamic range to the service's port, its length, its checksum or 0; then
    // GUE version 0, no control flag, no extension fields, the inner protocol, no flags.
    const dv = new DataView(out.buffer, out.byteOffset + ipLen);
    expect(dv.getUint16(0)).toBeGreaterThanOrEqual(49152);
    expect(dv.getUint16(2)).toBe(gue.port);
    expect(dv.getUint16(4)).toBe(12 + inner.length);
    if (!gue.csum) expect(dv.getUint16(6)).toBe(0);
    else expect(dv.getUint16(6)).not.toBe(0);
    expect(dv.getUint32(8)).toBe((v4 ? 4 : 41) << 16);
  } else if (gre > 0) {
    // Flags (C with the checksum; no key, no sequence, version 0), then the EtherType.
    const dv = new DataView(out.buffer, out.byteOffset + ipLen);
    expect([dv.getUint16(0), dv.getUint16(2)]).toEqual([gre === 8 ? 0x8000 : 0, v4 ? 0x0800 : 0x86dd]);
    if (gre === 8) expect(dv.getUint16(6)).toBe(0);
  }
  expect(checksumsOk(out)).toEqual({ ip: true, l4: true });
  if (v4) {
    expect(out[1]).toBe(inner[1]); // TOS
    expect(out[6]! & 0x40).toBe(inner[6]! & 0x40); // DF
  } else {
    expect(out.subarray(0, 4)).toEqual(inner.subarray(0, 4)); // traffic class, flow label
  }
}

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('TUNNEL %s', (_name, fam) => {
  const v4 = fam === V4;

  it('sends the client packet whole inside IP-in-IP; the session follows the client alone', () => {
    const d = new Driver(makeEngine(services(fam, 'tunnel')));
    const syn = c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS });
    expectTunnelled(d.forward(syn), syn, fam);
    expect(d.session()).toMatchObject({ mode: 'tunnel', state: 'SYN_RECV', laddr: fam.client, lport: CPORT });
    const ack = c(fam, { seq: 1001, ack: 5001, flags: ACK, payload: payload(1000) });
    expectTunnelled(d.forward(ack), ack, fam);
    expect(d.session().state).toBe('ESTABLISHED');
    d.forward(c(fam, { seq: 2001, ack: 5001, flags: FIN | ACK }));
    expect(d.session().state).toBe('FIN_WAIT');
    d.forward(c(fam, { seq: 2002, ack: 5001, flags: RST }));
    expect(d.session().state).toBe('CLOSE');
    // The server answers the client directly: a reply that reached the LB is not relayed.
    expect(d.drop(tcp({ src: fam.rs1, dst: fam.client, sport: 8080, dport: CPORT, flags: ACK }))).toBe(DROP_NOT_LOCAL);
  });

  it("after the client's FIN: timed as ESTABLISHED while the server's data still comes, short once only its FIN does", () => {
    const d = new Driver(makeEngine(services(fam, 'tunnel')));
    d.forward(c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS }));
    d.forward(c(fam, { seq: 1001, ack: 5001, flags: ACK }));
    d.forward(c(fam, { seq: 1001, ack: 5001, flags: FIN | ACK }));
    expect(d.session()).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 7_000 });
    // The server goes on sending (the client only shut down its side): its acks move on.
    d.forward(c(fam, { seq: 1002, ack: 6001, flags: ACK }));
    expect(d.session().expiresInMs).toBe(90_000);
    // A duplicate ack (the server's next segment lost) does not cut that timer ...
    d.nowMs += 10_000;
    d.forward(c(fam, { seq: 1002, ack: 6001, flags: ACK }));
    expect(d.session().expiresInMs).toBe(80_000);
    // ... and 60 s of the server's backoff later the client's ack still finds its session.
    d.nowMs += 60_000;
    d.engine.advanceTimers(d.nowMs);
    expectTunnelled(
      d.forward(c(fam, { seq: 1002, ack: 7001, flags: ACK })),
      c(fam, { seq: 1002, ack: 7001, flags: ACK }),
      fam,
    );
    expect(d.session().expiresInMs).toBe(90_000);

    // A close with nothing after the client's FIN but the server's: the short timeout.
    const e = new Driver(makeEngine(services(fam, 'tunnel')));
    e.forward(c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS }));
    e.forward(c(fam, { seq: 1001, ack: 5001, flags: ACK }));
    e.forward(c(fam, { seq: 1001, ack: 5001, flags: FIN | ACK }));
    e.forward(c(fam, { seq: 1002, ack: 5002, flags: ACK })); // the ack of the server's FIN
    expect(e.session()).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 7_000 });

    // A segment from before the FIN that comes late (its ack older) does not move the recorded
    // ack back: the ack of the server's FIN still reads as a close, not as the server's data.
    const f = new Driver(makeEngine(services(fam, 'tunnel')));
    f.forward(c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS }));
    f.forward(c(fam, { seq: 1001, ack: 4001, flags: ACK }));
    f.forward(c(fam, { seq: 1001, ack: 5001, flags: FIN | ACK }));
    f.forward(c(fam, { seq: 1001, ack: 4001, flags: ACK })); // the handshake's ACK, late
    f.forward(c(fam, { seq: 1002, ack: 5002, flags: ACK }));
    expect(f.session()).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 7_000 });
  });

  it('UDP too', () => {
    const d = new Driver(makeEngine(services(fam, 'tunnel')));
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: payload(100) });
    expectTunnelled(d.forward(q), q, fam);
    expect(d.session().state).toBe('UDP');
  });

  it('a packet that would pass the MTU with the outer header gets "too big" back (IPv4: only with DF)', () => {
    const d = new Driver(makeEngine(services(fam, 'tunnel')));
    d.forward(c(fam, { seq: 1000, flags: SYN }));
    const big = c(fam, { seq: 1001, ack: 1, flags: ACK, payload: payload(1500 - (v4 ? 40 : 60)) });
    expect(big.length).toBe(1500);
    expect(d.drop(big)).toBe(DROP_TUNNEL_TOO_BIG);
    expect(d.engine.emitCount).toBe(1);
    const err = d.engine.emit.get(0);
    expect(checksumsOk(err)).toEqual({ ip: true, l4: true });
    const e = parse(err);
    expect(e).toMatchObject({ src: parse(big).dst, dst: parse(big).src, proto: v4 ? 1 : 58 });
    const dv = new DataView(e.l4.buffer, e.l4.byteOffset);
    expect([e.l4[0], e.l4[1]]).toEqual(v4 ? [3, 4] : [2, 0]);
    expect(v4 ? dv.getUint16(6) : dv.getUint32(4)).toBe(v4 ? 1480 : 1460);
    expect(e.l4.subarray(8, 8 + 40)).toEqual(big.subarray(0, 40)); // the quote starts with its header
    expect(err.length).toBeLessThanOrEqual(v4 ? 576 : 1280);
    d.engine.clearEmitted();
    if (v4) {
      // Without DF the outer header has none either: the kernel fragments it on the way.
      const noDf = Uint8Array.from(big);
      noDf[6] = 0;
      const dv4 = new DataView(noDf.buffer);
      dv4.setUint16(10, 0);
      dv4.setUint16(10, refChecksum(noDf.subarray(0, 20)));
      const out = d.forward(noDf);
      expectTunnelled(out, noDf, fam);
      expect(out.length).toBe(1520);
    }
  });

  it.each([
    ['GRE', 4, { type: 'gre' }],
    ['GRE with its checksum', 8, { type: 'gre', checksum: true }],
  ] as const)('%s (tunnel.type gre): the GRE header between; too big 4 or 8 bytes sooner', (_what, gre, tunnel) => {
    const d = new Driver(makeEngine(services(fam, 'tunnel', { tunnel })));
    const syn = c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS });
    expectTunnelled(d.forward(syn), syn, fam, gre);
    const data = c(fam, { seq: 1001, ack: 5001, flags: ACK | PSH, payload: payload(777) });
    expectTunnelled(d.forward(data), data, fam, gre);
    const q = udp({ src: fam.client, dst: fam.vip, sport: CPORT, dport: 53, payload: payload(99) });
    expectTunnelled(new Driver(makeEngine(services(fam, 'tunnel', { tunnel }))).forward(q), q, fam); // another service: IPIP
    // The largest packet that fits: the MTU less the outer header and the GRE header.
    const fits = 1500 - (v4 ? 20 : 40) - gre;
    const header = v4 ? 40 : 60;
    const ok = c(fam, { seq: 1778, ack: 5001, flags: ACK, payload: payload(fits - header) });
    expectTunnelled(d.forward(ok), ok, fam, gre);
    const big = c(fam, { seq: 1778, ack: 5001, flags: ACK, payload: payload(fits - header + 1) });
    expect(d.drop(big)).toBe(DROP_TUNNEL_TOO_BIG);
    const e = parse(d.engine.emit.get(0));
    expect(
      v4
        ? new DataView(e.l4.buffer, e.l4.byteOffset).getUint16(6)
        : new DataView(e.l4.buffer, e.l4.byteOffset).getUint32(4),
    ).toBe(fits);
  });

  it.each([
    ['GUE without the checksum', { type: 'gue', port: 5555 }],
    ['GUE with the checksum', { type: 'gue', port: 6080, checksum: true }],
  ] as const)('%s (tunnel.type gue): UDP and GUE headers between, one source port per flow', (_what, tunnel) => {
    const d = new Driver(makeEngine(services(fam, 'tunnel', { tunnel })));
    // IPv6 has the UDP checksum whatever the service says (a zero one is dropped there).
    const gue = { port: tunnel.port, csum: !v4 || 'checksum' in tunnel };
    const syn = c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS });
    const first = d.forward(syn);
    expectTunnelled(first, syn, fam, 0, gue);
    const sport = (x: Uint8Array): number => new DataView(x.buffer, x.byteOffset).getUint16(v4 ? 20 : 40);
    // An odd length: the checksum pads the last byte.
    const data = c(fam, { seq: 1001, ack: 5001, flags: ACK | PSH, payload: payload(777) });
    const second = d.forward(data);
    expectTunnelled(second, data, fam, 0, gue);
    expect(sport(second)).toBe(sport(first));
    // Other clients' flows spread over the source ports.
    const ports = new Set<number>();
    for (let k = 0; k < 32; k++) {
      const other = c(fam, { seq: 1000, flags: SYN, sport: 20000 + k });
      const out = d.forward(other);
      expectTunnelled(out, other, fam, 0, gue);
      ports.add(sport(out));
    }
    expect(ports.size).toBeGreaterThan(24);
    // The largest packet that fits: the MTU less the outer IP, UDP and GUE headers.
    const fits = 1500 - (v4 ? 20 : 40) - 12;
    const header = v4 ? 40 : 60;
    const ok = c(fam, { seq: 1778, ack: 5001, flags: ACK, payload: payload(fits - header) });
    expectTunnelled(d.forward(ok), ok, fam, 0, gue);
    const big = c(fam, { seq: 1778, ack: 5001, flags: ACK, payload: payload(fits - header + 1) });
    expect(d.drop(big)).toBe(DROP_TUNNEL_TOO_BIG);
  });

  it('a tunnel type is for TUNNEL services, a checksum for GRE or GUE, a port for GUE', () => {
    const bad =
      (extra: Partial<ServiceSpec>, mode: 'tunnel' | 'nat' = 'tunnel') =>
      () =>
        resolveServices(services(fam, mode, extra), new IdRegistry());
    expect(bad({ tunnel: { type: 'gre' } }, 'nat')).toThrow(
      /services\[0\]\.tunnel: tunnel is for TUNNEL services, not nat/,
    );
    expect(bad({ tunnel: { type: 'ipip', checksum: true } })).toThrow(
      /services\[0\]\.tunnel\.checksum: IP-in-IP has no checksum/,
    );
    const base = {
      vip: fam.vip,
      port: 80,
      mode: 'tunnel',
      localAddresses: [fam.lip],
      realServers: [{ address: fam.rs1, port: 80 }],
    };
    expect(bad({ tunnel: { type: 'gue' } })).toThrow(/services\[0\]\.tunnel\.port: GUE needs the UDP port/);
    expect(bad({ tunnel: { type: 'gre', port: 5555 } })).toThrow(/services\[0\]\.tunnel\.port: a tunnel port is GUE's/);
    expect(() => parseService({ ...base, tunnel: { type: 'gue', port: 70000 } }, 's')).toThrow(/s\.tunnel\.port/);
    expect(() => parseService({ ...base, tunnel: { type: 'fou' } }, 's')).toThrow(/s\.tunnel\.type/);
    expect(parseService({ ...base, tunnel: { type: 'gue', port: 5555 } }, 's').tunnel).toEqual({
      type: 'gue',
      port: 5555,
    });
    expect(parseService({ ...base, tunnel: { type: 'gre', checksum: true } }, 's').tunnel).toEqual({
      type: 'gre',
      checksum: true,
    });
  });

  it('a "too big" about the tunnel\'s own packet lowers that server\'s tunnel MTU, for that encapsulation, until it runs out', () => {
    // Port 80 over GUE, 81 (and 53) over IP-in-IP: all to rs1 from the same tunnel source.
    const d = new Driver(makeEngine(services(fam, 'tunnel', { tunnel: { type: 'gue', port: 6080 } })));
    const ip = v4 ? 20 : 40;
    const header = v4 ? 40 : 60;
    const to = (dport: number, bytes: number, sport = CPORT) =>
      c(fam, { seq: 1001, ack: 5001, flags: ACK, sport, dport, payload: payload(bytes - header) });
    const outer81 = d.forward(c(fam, { seq: 1000, flags: SYN, dport: 81 }));
    const outer80 = d.forward(c(fam, { seq: 1000, flags: SYN, dport: 80 }));
    // What a router on the way to rs1 (here the LB's own kernel) sends the tunnel source.
    const tooBig = (outer: Uint8Array, mtu: number, from?: Uint8Array) => {
      const quote = outer.slice(0, v4 ? 28 : 48);
      if (from) quote.set(from.subarray(v4 ? 12 : 8, v4 ? 16 : 24), v4 ? 12 : 8); // another source
      return v4 ? icmp(fam.rs2, fam.lip, 3, 4, mtu, quote) : icmp(fam.rs2, fam.lip, 2, 0, mtu, quote);
    };
    const e = d.engine;
    expect(d.send(tooBig(outer81, 1400)).verdict).toBe(VERDICT_DROP);
    expect([e.counters[C_TUNNEL_MTU_LEARNED], e.counters[C_DROPPED]]).toEqual([1, 0]);
    // IP-in-IP to rs1: 1400 with the outer header; the client is told 1400 less it.
    expectTunnelled(d.forward(to(81, 1400 - ip)), to(81, 1400 - ip), fam);
    expect(d.drop(to(81, 1400 - ip + 1))).toBe(DROP_TUNNEL_TOO_BIG);
    const told = parse(e.emit.get(0));
    const dv = new DataView(told.l4.buffer, told.l4.byteOffset);
    expect(v4 ? dv.getUint16(6) : dv.getUint32(4)).toBe(1400 - ip);
    e.clearEmitted();
    // GUE to the same server is another path: untouched, until an error quotes a GUE packet.
    const gue = { port: 6080, csum: !v4 };
    expectTunnelled(d.forward(to(80, 1500 - ip - 12)), to(80, 1500 - ip - 12), fam, 0, gue);
    expect(d.send(tooBig(outer80, 1450)).verdict).toBe(VERDICT_DROP);
    expect(d.drop(to(80, 1450 - ip - 12 + 1))).toBe(DROP_TUNNEL_TOO_BIG);
    e.clearEmitted();
    // A larger MTU does not raise it; a smaller one lowers it, not below the family's least.
    d.send(tooBig(outer81, 1480));
    expect(d.drop(to(81, 1400 - ip + 1))).toBe(DROP_TUNNEL_TOO_BIG);
    e.clearEmitted();
    d.send(tooBig(outer81, 300));
    const least = v4 ? 552 : 1280;
    expectTunnelled(d.forward(to(81, least - ip)), to(81, least - ip), fam);
    expect(d.drop(to(81, least - ip + 1))).toBe(DROP_TUNNEL_TOO_BIG);
    e.clearEmitted();
    expect(e.counters[C_TUNNEL_MTU_LEARNED]).toBe(3);
    // An error about a packet from another source is no tunnel's: the session path drops it.
    const forged = tcp({ src: fam.rs2, dst: fam.rs1, sport: 1, dport: 1, flags: ACK });
    expect(d.drop(tooBig(outer81, 600, forged))).toBe(DROP_ICMP_UNSUPPORTED);
    // Ten minutes on (new connections: the old ones have expired), the device's MTU again.
    d.nowMs += 600_001;
    for (const port of [80, 81]) d.forward(c(fam, { seq: 1000, flags: SYN, sport: CPORT + 1, dport: port }));
    expectTunnelled(d.forward(to(81, 1500 - ip, CPORT + 1)), to(81, 1500 - ip, CPORT + 1), fam);
    const again = to(80, 1500 - ip - 12, CPORT + 1);
    expectTunnelled(d.forward(again), again, fam, 0, gue);
  });

  it('an ICMP error about what the server sent the client goes to the server, in the tunnel', () => {
    const d = new Driver(makeEngine(services(fam, 'tunnel')));
    d.forward(c(fam, { seq: 1000, flags: SYN }));
    const sent = tcp({
      src: fam.vip,
      dst: fam.client,
      sport: 80,
      dport: CPORT,
      seq: 5000,
      ack: 1001,
      flags: ACK,
      payload: payload(100),
    });
    const router = fam.rs2;
    const err = v4
      ? icmp(router, fam.vip, 3, 4, 1400, sent.subarray(0, 28))
      : icmp(router, fam.vip, 2, 0, 1400, sent.subarray(0, 48));
    expectTunnelled(d.forward(err), err, fam);
  });
});

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('DR %s', (_name, fam) => {
  const LINK_MAC = '02:00:00:00:00:0a';
  const RS_MAC = '02:00:00:00:00:21';
  /** A DR service as the forwarders get it: with the link's MAC and, unless `noMac`, the
   * server's (control/link.ts annotates them). */
  function drEngine(noMac = false, headroom = 0): Engine {
    const [svc] = resolveServices(
      [
        serviceWithDefaults({
          vip: fam.vip,
          port: 80,
          mode: 'dr',
          realServers: [{ address: fam.rs1, port: 80, weight: 1 }],
        }),
      ],
      new IdRegistry(),
    );
    const annotated = {
      ...svc!,
      linkMac: LINK_MAC,
      realServers: svc!.realServers.map((r) => (noMac ? r : { ...r, mac: RS_MAC })),
    };
    return new Engine({ capacity: 64, seed: 1, nowMs: 0, headroom }, [annotated]);
  }
  const macBytes = (m: string) => m.split(':').map((x) => parseInt(x, 16));

  it('sends the packet unchanged in an Ethernet frame to the server; verdict LINK; the client alone moves the state', () => {
    const d = new Driver(drEngine());
    const syn = c(fam, { seq: 1000, flags: SYN, options: SYN_OPTS });
    const r = d.send(syn);
    expect(r.verdict).toBe(VERDICT_LINK);
    expect([...r.out.subarray(0, 6)]).toEqual(macBytes(RS_MAC));
    expect([...r.out.subarray(6, 12)]).toEqual(macBytes(LINK_MAC));
    expect([r.out[12], r.out[13]]).toEqual(fam === V4 ? [0x08, 0x00] : [0x86, 0xdd]);
    expect(r.out.subarray(14)).toEqual(syn);
    expect(d.session()).toMatchObject({ mode: 'dr', state: 'SYN_RECV', laddr: fam.client });
    expect(d.send(c(fam, { seq: 1001, ack: 1, flags: ACK })).verdict).toBe(VERDICT_LINK);
    expect(d.session().state).toBe('ESTABLISHED');
  });

  it("without the server's MAC the packet is dropped and counted (tunvs run resolves it)", () => {
    const d = new Driver(drEngine(true));
    expect(d.drop(c(fam, { seq: 1000, flags: SYN }))).toBe(DROP_DR_NO_NEIGHBOUR);
  });

  it('keeps the offloads: the virtio_net_hdr of a GSO packet is shifted to count from the frame', () => {
    const e = drEngine(false, 10);
    const ring = new PacketRing(1, 2048, undefined, 10);
    const pkt = c(fam, { seq: 1000, flags: SYN });
    const vnet = new Uint8Array(10);
    const v = new DataView(vnet.buffer);
    vnet[0] = 1; // NEEDS_CSUM
    vnet[1] = fam === V4 ? 1 : 4; // GSO TCPV4 / TCPV6
    v.setUint16(2, (fam === V4 ? 20 : 40) + 20, true); // hdr_len
    v.setUint16(4, 1448, true);
    v.setUint16(6, fam === V4 ? 20 : 40, true); // csum_start
    v.setUint16(8, 16, true);
    ring.put(0, pkt, vnet);
    e.processBurst(ring, 1, 0);
    expect([ring.verdicts[0], ring.aux[0]]).toEqual([VERDICT_LINK, 0]);
    const ov = new DataView(ring.bytes.buffer, ring.bytes.byteOffset);
    expect(ov.getUint16(2, true)).toBe((fam === V4 ? 20 : 40) + 20 + 14);
    expect(ov.getUint16(6, true)).toBe((fam === V4 ? 20 : 40) + 14);
    expect(ring.get(0).subarray(14)).toEqual(pkt);
  });
});

describe.each([
  ['NAT', 'nat', V4],
  ['NAT', 'nat', V6],
  ['TUNNEL', 'tunnel', V4],
  ['TUNNEL', 'tunnel', V6],
] as const)('sloppy TCP, %s %#', (_name, mode, fam) => {
  // Two LBs of one pool (a cluster's nodes, or one LB before and after a restart).
  const engine = (sloppy: boolean, seed: number) =>
    makeEngine(
      [
        serviceWithDefaults({
          vip: fam.vip,
          port: 80,
          scheduler: 'mh',
          mode,
          sloppy,
          realServers: [fam.rs1, fam.rs2].map((address) => ({
            address,
            port: mode === 'tunnel' ? 80 : 8080,
            weight: 1,
          })),
          ...(mode === 'tunnel' ? { localAddresses: [fam.lip] } : {}),
        }),
      ],
      { seed },
    );
  // Eight clients: the pool's both servers get some, so a server picked differently shows.
  const client = (i: number) => (fam === V4 ? `198.18.100.${10 + i}` : `fd00:18:64::${10 + i}`);
  const from = (i: number, t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: client(i), dst: fam.vip, sport: CPORT, dport: 80, ...t });
  /** The real server a packet went to: NAT's destination, TUNNEL's outer destination. */
  const server = (out: Uint8Array) => parse(out).dst;

  it("a mid-connection ACK without a session makes one, to the server the connection's SYN went to", () => {
    const a = new Driver(engine(true, 1));
    const b = new Driver(engine(true, 2));
    const picked = [...Array(8).keys()].map((i) => server(a.forward(from(i, { seq: 1000, flags: SYN }))));
    expect(new Set(picked).size).toBe(2);
    [...Array(8).keys()].forEach((i) => {
      const out = b.forward(from(i, { seq: 1001, ack: 5001, flags: ACK | PSH, payload: payload(10) }));
      expect(server(out)).toBe(picked[i]);
    });
    expect(b.engine.counters[C_SESSIONS_SLOPPY]).toBe(8);
    const all = [...b.engine.sessionIds()].map((r) => b.engine.describe(r));
    expect(all.every((x) => x.mode === mode && x.state === 'ESTABLISHED')).toBe(true);
    const s = all[0]!;
    if (mode === 'nat') {
      // The server's reply finds it (NAT's replies pass the LB).
      const reply = tcp({ src: s.rip, dst: s.client, sport: 8080, dport: s.cport, seq: 5001, ack: 1011, flags: ACK });
      expect(parse(b.forward(reply)).src).toBe(parse(from(0, { flags: SYN })).dst); // the VIP
    }
    // A FIN is a packet in the middle too, and moves the new session on.
    const fin = new Driver(engine(true, 3));
    fin.forward(from(0, { seq: 1011, ack: 5001, flags: FIN | ACK }));
    expect(fin.session().state).toBe('FIN_WAIT');
  });

  it('not without sloppy, and never from an RST or a bare packet without ACK', () => {
    const off = new Driver(engine(false, 1));
    expect(off.drop(from(0, { seq: 1001, ack: 5001, flags: ACK }))).toBe(DROP_NO_SESSION);
    const on = new Driver(engine(true, 1));
    expect(on.drop(from(0, { seq: 1001, ack: 5001, flags: RST | ACK }))).toBe(DROP_NO_SESSION);
    expect(on.drop(from(0, { seq: 1001, flags: FIN }))).toBe(DROP_NO_SESSION);
    expect(on.engine.sessionCount).toBe(0);
    expect(on.engine.counters[C_SESSIONS_SLOPPY]).toBe(0);
  });
});

it('TUNNEL IPv4 without DF: each worker gives the outer packets identifications of its own (the kernel fragments them on the way)', () => {
  // Both workers' outer packets go from one tunnel source to one server: the same
  // identification from two workers at once would have the server mix up their fragments.
  const workers = 2;
  const specs = resolveServices(services(V4, 'tunnel'), new IdRegistry());
  const seen = new Map<number, number>();
  for (let w = 0; w < workers; w++) {
    const engine = new Engine({ worker: w, workers, capacity: 4096, seed: 1 }, specs);
    const ring = new PacketRing(1);
    let sent = 0;
    for (let cport = 20000; sent < 300; cport++) {
      const noDf = tcp({ src: V4.client, dst: V4.vip, sport: cport, dport: 80, seq: 1, flags: SYN });
      noDf[6] = 0;
      const dv = new DataView(noDf.buffer);
      dv.setUint16(10, 0);
      dv.setUint16(10, refChecksum(noDf.subarray(0, 20)));
      ring.put(0, noDf);
      engine.processBurst(ring, 1, 0);
      if (ring.verdicts[0] === VERDICT_REDIRECT) continue; // the other worker's
      expect(ring.verdicts[0]).toBe(VERDICT_FORWARD);
      const out = ring.get(0);
      expect(out[6]! & 0x40).toBe(0);
      const id = (out[4]! << 8) | out[5]!;
      expect(id % workers, `worker ${w}'s identification ${id}`).toBe(w);
      expect(seen.has(id), `identification ${id} given twice`).toBe(false);
      seen.set(id, w);
      sent++;
    }
  }
});

describe('rstOnExpire', () => {
  it('resets an expired NAT session both ways; a TUNNEL session, whose server it never saw, gets none', () => {
    for (const mode of ['nat', 'tunnel'] as const) {
      const d = new Driver(makeEngine(services(V4, mode), { rstOnExpire: true, timeouts: { established: 1 } }));
      const port = mode === 'tunnel' ? 80 : 8080;
      d.forward(c(V4, { seq: 1000, flags: SYN }));
      if (mode === 'nat')
        d.forward(
          tcp({ src: V4.rs1, dst: V4.client, sport: port, dport: CPORT, seq: 5000, ack: 1001, flags: SYN | ACK }),
        );
      d.forward(c(V4, { seq: 1001, ack: 5001, flags: ACK }));
      expect(d.session().state).toBe('ESTABLISHED');
      d.engine.advanceTimers(5000);
      expect([...d.engine.sessionIds()]).toEqual([]);
      if (mode === 'tunnel') {
        expect(d.engine.emitCount).toBe(0);
        continue;
      }
      expect(d.engine.emitCount).toBe(2);
      const sent = [0, 1].map((i) => parse(d.engine.emit.get(i)));
      expect(sent).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ src: V4.vip, dst: V4.client, sport: 80, dport: CPORT, seq: 5001, flags: RST }),
          expect.objectContaining({ src: V4.client, dst: V4.rs1, sport: CPORT, dport: 8080, seq: 1001, flags: RST }),
        ]),
      );
    }
  });
});

describe('mode configuration', () => {
  const spec = (o: Record<string, unknown>) => ({
    vip: V4.vip,
    port: 80,
    realServers: [{ address: V4.rs1, port: 8080 }],
    ...o,
  });
  const fails = (o: Record<string, unknown>, path: string, code = 'TUNVS_ERR_CONFIG_MODE') => {
    let err: unknown;
    try {
      resolveServices([parseService(spec(o), 'services[0]')], new IdRegistry());
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code, path });
  };

  it('defaults follow the mode: TOA, timestamp translation and the SYN proxy are FULLNAT features', () => {
    expect(parseService(spec({ localAddresses: [V4.lip] }), 's')).toMatchObject({
      mode: 'fullnat',
      synProxy: 'auto',
      translateTimestamps: true,
      toa: { enabled: true },
    });
    expect(parseService(spec({ mode: 'nat' }), 's')).toMatchObject({
      mode: 'nat',
      synProxy: 'off',
      translateTimestamps: false,
      toa: { enabled: false },
      localAddresses: [],
    });
    expect(parseService(spec({ mode: 'tunnel', localAddresses: [V4.lip] }), 's')).toMatchObject({
      mode: 'tunnel',
      toa: { enabled: false },
    });
  });

  it('refuses what a mode cannot do, naming the field', () => {
    fails({ mode: 'nat', localAddresses: [V4.lip] }, 'services[0].localAddresses');
    fails({ mode: 'nat', synProxy: 'on' }, 'services[0].synProxy');
    fails({ mode: 'nat', translateTimestamps: true }, 'services[0].translateTimestamps');
    fails({ mode: 'tunnel' }, 'services[0].localAddresses', 'TUNVS_ERR_CONFIG_MISSING');
    fails({ mode: 'tunnel', localAddresses: [V4.lip] }, 'services[0].realServers[0].port');
    const tunnel80 = { mode: 'tunnel', localAddresses: [V4.lip], realServers: [{ address: V4.rs1, port: 80 }] };
    fails({ ...tunnel80, toa: { enabled: true } }, 'services[0].toa.enabled');
    fails({ ...tunnel80, stripTimestamps: true }, 'services[0].stripTimestamps');
    fails({ localAddresses: [V4.lip], mode: 'route' }, 'services[0].mode', 'TUNVS_ERR_CONFIG_UNKNOWN');
    fails({ mode: 'dr', localAddresses: [V4.lip] }, 'services[0].localAddresses');
    fails({ mode: 'dr' }, 'services[0].realServers[0].port');
    // Sloppy TCP: only where the server is all there is to know, and known from the client.
    fails({ localAddresses: [V4.lip], scheduler: 'mh', sloppy: true }, 'services[0].sloppy');
    fails({ mode: 'nat', sloppy: true }, 'services[0].sloppy'); // wrr
    fails({ mode: 'nat', protocol: 'udp', scheduler: 'sh', sloppy: true }, 'services[0].sloppy');
    fails({ mode: 'nat', sloppy: 'yes' }, 'services[0].sloppy', 'TUNVS_ERR_CONFIG_TYPE');
    expect(parseService(spec({ mode: 'nat', scheduler: 'sh', sloppy: true }), 's').sloppy).toBe(true);
  });

  it('a real server of the other family is refused in NAT too', () => {
    fails(
      { mode: 'nat', realServers: [{ address: V6.rs1, port: 8080 }] },
      'services[0].realServers[0].address',
      'TUNVS_ERR_CONFIG_FAMILY',
    );
  });
});
