/**
 * One-packet scheduling (ServiceSpec.onePacket, ipvsadm -o): each UDP datagram of a service
 * is scheduled on its own, so one client socket's datagrams spread over the servers. FULLNAT
 * keeps a session per datagram that only the server's reply finds, and the reply ends it
 * (or the wait for it: idleTimeout, default ONE_PACKET_REPLY_SEC); NAT one per client socket
 * and server, kept by its replies for that wait; TUNNEL and DR keep none.
 * Persistence still holds a client to its server; nothing is published to HA peers.
 */

import { describe, expect, it } from 'vitest';
import { ONE_PACKET_REPLY_SEC } from '../../src/constants.js';
import { C_SESSIONS_CREATED, C_SESSIONS_EXPIRED, DROPS_BASE } from '../../src/dataplane/counters.js';
import { Engine } from '../../src/dataplane/engine.js';
import { HaControl } from '../../src/ha/role.js';
import { SyncRing, EVENT_WORDS } from '../../src/ha/session_sync.js';
import { DROP_NO_SESSION, VERDICT_LINK } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { ConfigError } from '../../src/config/errors.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { norm, parse, udp } from '../helpers/packets.js';

type Family = typeof V4 | typeof V6;
const third = (fam: Family): string => (fam === V4 ? '198.18.1.13' : 'fd00:18:1::13');

/** A one-packet UDP service of port 53 over three servers (rr) on port 5353. */
function dns(fam: Family, extra: Partial<ServiceSpec> = {}): ServiceSpec {
  return serviceWithDefaults({
    protocol: 'udp',
    vip: fam.vip,
    port: 53,
    scheduler: 'rr',
    onePacket: true,
    realServers: [fam.rs1, fam.rs2, third(fam)].map((address) => ({ address, port: 5353, weight: 1 })),
    localAddresses: [fam.lip],
    ...extra,
  });
}

const query = (fam: Family, i: number, src: string = fam.client) =>
  udp({ src, dst: fam.vip, sport: 5000, dport: 53, payload: new Uint8Array([i]) });

const live = (d: Driver): number => [...d.engine.sessionIds()].length;

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('one-packet scheduling %s', (_n, fam) => {
  it('FULLNAT: one socket’s datagrams go round the servers; each reply comes back and ends its session', () => {
    const d = new Driver(makeEngine([dns(fam)]));
    const outs = [0, 1, 2, 3, 4, 5].map((i) => parse(d.forward(query(fam, i))));
    expect(outs.map((o) => o.dst)).toEqual(
      [fam.rs1, fam.rs2, third(fam), fam.rs1, fam.rs2, third(fam)].map((a) => norm(a)),
    );
    // Each datagram has a local port of its own: the replies tell the datagrams apart.
    expect(new Set(outs.map((o) => o.sport)).size).toBe(6);
    expect(live(d)).toBe(6);
    // Answered out of order; each answer reaches the client's socket from the VIP.
    for (const i of [3, 0, 5, 1, 4, 2]) {
      const o = outs[i]!;
      const back = parse(
        d.forward(udp({ src: o.dst, dst: fam.lip, sport: 5353, dport: o.sport, payload: new Uint8Array([i, 1]) })),
      );
      expect({ src: back.src, sport: back.sport, dst: back.dst, dport: back.dport }).toEqual({
        src: norm(fam.vip),
        sport: 53,
        dst: norm(fam.client),
        dport: 5000,
      });
    }
    expect(live(d)).toBe(0);
    expect(d.engine.counters[C_SESSIONS_CREATED]).toBe(6);
    expect(d.engine.counters[C_SESSIONS_EXPIRED]).toBe(6);
    // A second answer to one datagram finds no session.
    const o = outs[0]!;
    expect(d.drop(udp({ src: o.dst, dst: fam.lip, sport: 5353, dport: o.sport, payload: new Uint8Array(2) }))).toBe(
      DROP_NO_SESSION,
    );
    expect(d.engine.counters[DROPS_BASE + DROP_NO_SESSION]).toBe(1);
  });

  it('FULLNAT: an unanswered datagram’s session lasts the wait for its reply (default, then idleTimeout)', () => {
    for (const [extra, sec] of [
      [{}, ONE_PACKET_REPLY_SEC],
      [{ idleTimeout: 2 }, 2],
    ] as const) {
      const d = new Driver(makeEngine([dns(fam, extra)]));
      d.forward(query(fam, 0));
      d.engine.advanceTimers(sec * 1000 - 200);
      expect(live(d)).toBe(1);
      d.engine.advanceTimers(sec * 1000 + 200);
      expect(live(d)).toBe(0);
    }
  });

  it("NAT: one socket's datagrams go round the servers on a session per server, which its replies keep", () => {
    const spec = dns(fam, { mode: 'nat', localAddresses: [] });
    const d = new Driver(makeEngine([spec]));
    const outs = [0, 1, 2, 3, 4, 5].map((i) => parse(d.forward(query(fam, i))));
    expect(outs.map((o) => o.dst)).toEqual(
      [fam.rs1, fam.rs2, third(fam), fam.rs1, fam.rs2, third(fam)].map((a) => norm(a)),
    );
    // The client's own address and port: one reply mapping per server, shared by its datagrams.
    expect(outs.every((o) => o.src === norm(fam.client) && o.sport === 5000)).toBe(true);
    expect(live(d)).toBe(3);
    for (const i of [3, 0, 5, 1, 4, 2]) {
      const back = parse(
        d.forward(udp({ src: outs[i]!.dst, dst: fam.client, sport: 5353, dport: 5000, payload: new Uint8Array([i]) })),
      );
      expect([back.src, back.sport, back.dst, back.dport]).toEqual([norm(fam.vip), 53, norm(fam.client), 5000]);
    }
    // The replies keep the sessions for the wait, then they go.
    expect(live(d)).toBe(3);
    d.engine.advanceTimers(ONE_PACKET_REPLY_SEC * 1000 + 200);
    expect(live(d)).toBe(0);
  });

  it('TUNNEL and DR: each datagram to the next server, no session kept', () => {
    const t = new Driver(
      makeEngine([dns(fam, { mode: 'tunnel', realServers: dns(fam).realServers.map((r) => ({ ...r, port: 53 })) })]),
    );
    const outer = [0, 1, 2].map((i) => parse(t.forward(query(fam, i))).dst);
    expect(outer).toEqual([fam.rs1, fam.rs2, third(fam)].map((a) => norm(a)));
    expect(live(t)).toBe(0);

    const [svc] = resolveServices(
      [
        dns(fam, {
          mode: 'dr',
          localAddresses: [],
          realServers: dns(fam).realServers.map((r) => ({ ...r, port: 53 })),
        }),
      ],
      new IdRegistry(),
    );
    const annotated = {
      ...svc!,
      linkMac: '02:00:00:00:00:0a',
      realServers: svc!.realServers.map((r, i) => ({ ...r, mac: `02:00:00:00:00:2${i}` })),
    };
    const d = new Driver(new Engine({ capacity: 64, seed: 1, nowMs: 0 }, [annotated]));
    const macs = [0, 1, 2, 3].map((i) => {
      const r = d.send(query(fam, i));
      expect(r.verdict).toBe(VERDICT_LINK);
      return r.out[5];
    });
    expect(macs).toEqual([0x20, 0x21, 0x22, 0x20]);
    expect(live(d)).toBe(0);
    expect(d.engine.counters[C_SESSIONS_EXPIRED]).toBe(4);
  });

  it("with persistence a client's datagrams stay on its server; other clients' go round", () => {
    const d = new Driver(makeEngine([dns(fam, { persistence: { timeoutSec: 60, netmask: 32, prefix6: 128 } })]));
    const mine = [0, 1, 2].map((i) => parse(d.forward(query(fam, i))).dst);
    expect(new Set(mine).size).toBe(1);
    const other = fam === V4 ? '198.18.101.9' : 'fd00:18:65::9';
    expect(parse(d.forward(query(fam, 9, other))).dst).not.toBe(mine[0]);
  });

  it('not published to HA peers, even with syncAfterMs 0', () => {
    const control = new HaControl();
    control.set(true, true);
    const ring = new SyncRing(64);
    const engine = makeEngine([dns(fam)], {
      ha: { nodeId: 1, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 30 },
    });
    const d = new Driver(engine);
    const o = parse(d.forward(query(fam, 0)));
    d.nowMs = 1000;
    d.forward(query(fam, 1));
    d.forward(udp({ src: o.dst, dst: fam.lip, sport: 5353, dport: o.sport, payload: new Uint8Array(1) }));
    engine.advanceTimers(2000);
    expect(ring.drain(new Int32Array(64 * EVENT_WORDS), 64)).toBe(0);
  });
});

describe('one-packet scheduling: config', () => {
  it('a TCP service of onePacket is refused with the reason', () => {
    const spec = dns(V4, { protocol: 'tcp' });
    expect(() => resolveServices([spec], new IdRegistry())).toThrow(ConfigError);
    expect(() => resolveServices([spec], new IdRegistry())).toThrow(
      /services\[0\]\.onePacket: one-packet scheduling is for UDP datagrams: a TCP connection is one flow/,
    );
  });
});
