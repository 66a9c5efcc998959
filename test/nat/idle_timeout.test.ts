/**
 * A service's idleTimeout (DPVS's per-service conn-timeout): how long an idle connection
 * (ESTABLISHED) or UDP flow of that service is kept, in place of timeouts.established /
 * timeouts.udp — on every path that sets a session's timer (FULLNAT, TUNNEL, a closing
 * connection still carrying data, the SYN proxy) and for an HA peer's copy. Other services
 * and states keep the global timeouts.
 */

import { describe, expect, it } from 'vitest';
import { parseService } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';
import { EVENT_WORDS, SyncRing } from '../../src/ha/session_sync.js';
import { HaControl } from '../../src/ha/role.js';
import { Driver, labServices, makeEngine, V4 } from '../helpers/engine.js';
import { ACK, FIN, parse, PSH, SYN, tcp, udp } from '../helpers/packets.js';

/** The lab's services, the v4 TCP one and the v4 UDP one with idle timeouts of their own. */
function specs(tcpIdle: number | undefined, udpIdle?: number) {
  const s = labServices();
  if (tcpIdle !== undefined) s[0] = { ...s[0]!, idleTimeout: tcpIdle };
  if (udpIdle !== undefined) s[2] = { ...s[2]!, idleTimeout: udpIdle };
  return s;
}

const C = (sport: number, seq: number, ack: number, flags: number, payload?: Uint8Array) =>
  tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq, ack, flags, ...(payload ? { payload } : {}) });

/** A FULLNAT connection from `sport` established on `d`; returns the LB's local port. */
function establish(d: Driver, sport: number): number {
  const syn = parse(d.forward(C(sport, 100, 0, SYN)));
  d.forward(
    tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: syn.sport, seq: 500, ack: syn.seq + 1, flags: SYN | ACK }),
  );
  d.forward(C(sport, 101, 501, ACK));
  return syn.sport;
}

describe('a service idleTimeout', () => {
  it('keeps an idle ESTABLISHED connection of its service that long; other services keep timeouts.established', () => {
    const d = new Driver(makeEngine(specs(900), { timeouts: { established: 90 } }));
    establish(d, 40000);
    expect(d.session()).toMatchObject({ state: 'ESTABLISHED', expiresInMs: 900_000 });
    d.nowMs = 600_000;
    d.forward(C(40000, 101, 501, ACK | PSH, new Uint8Array(10))); // data restarts it
    expect(d.session().expiresInMs).toBe(900_000);
    d.engine.advanceTimers(d.nowMs + 899_000);
    expect(d.engine.sessionCount).toBe(1);
    d.engine.advanceTimers(d.nowMs + 900_100);
    expect(d.engine.sessionCount).toBe(0);

    const other = new Driver(makeEngine(specs(undefined), { timeouts: { established: 90 } }));
    establish(other, 40001);
    expect(other.session().expiresInMs).toBe(90_000);
  });

  it("a closing connection keeps the timer it had, and data in it restarts the service's", () => {
    const d = new Driver(makeEngine(specs(600)));
    const lport = establish(d, 40002);
    d.forward(C(40002, 101, 501, ACK | FIN)); // the client half-closes
    expect(d.session()).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 600_000 }); // never shortened
    d.nowMs = 100_000;
    // The server goes on sending (its shutdown comes later): timed as an idle connection.
    d.forward(
      tcp({
        src: V4.rs1,
        dst: V4.lip,
        sport: 8080,
        dport: lport,
        seq: 501,
        ack: 0,
        flags: ACK | PSH,
        payload: new Uint8Array(5),
      }),
    );
    expect(d.session().expiresInMs).toBe(600_000);
  });

  it('a UDP service: a flow idle that long, in place of timeouts.udp', () => {
    const d = new Driver(makeEngine(specs(undefined, 20), { timeouts: { udp: 300 } }));
    d.forward(udp({ src: V4.client, dst: V4.vip, sport: 5000, dport: 53 }));
    expect(d.session()).toMatchObject({ state: 'UDP', expiresInMs: 20_000 });
    d.nowMs = 10_000;
    d.forward(udp({ src: V4.rs1, dst: V4.lip, sport: 5353, dport: d.session().lport }));
    expect(d.session().expiresInMs).toBe(20_000);
  });

  it('TUNNEL (the client side only) and the SYN proxy follow it too', () => {
    const tunnel = serviceWithDefaults({
      vip: V4.vip,
      port: 80,
      mode: 'tunnel',
      scheduler: 'rr',
      localAddresses: [V4.lip],
      realServers: [{ address: V4.rs1, port: 80, weight: 1 }],
      idleTimeout: 1200,
    });
    const t = new Driver(makeEngine([tunnel]));
    t.forward(C(40003, 100, 0, SYN));
    t.forward(C(40003, 101, 501, ACK));
    expect(t.session()).toMatchObject({ state: 'ESTABLISHED', expiresInMs: 1_200_000 });

    const p = new Driver(makeEngine(labServices({ synProxy: 'on', idleTimeout: 700 })));
    const synAck = parse(p.forward(C(40004, 100, 0, SYN))); // the LB's cookie
    const toRs = parse(p.forward(C(40004, 101, synAck.seq + 1, ACK)));
    p.forward(
      tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: toRs.sport, seq: 900, ack: toRs.seq + 1, flags: SYN | ACK }),
    );
    expect(p.session()).toMatchObject({ state: 'ESTABLISHED', expiresInMs: 700_000 });
  });

  /** A pair (refreshSec 30) whose services have `idle`: a connection established on A, its
   * copy installed on B; returns both and the drain of A's ring. */
  function pairWith(idle: number) {
    const node = (id: number, master: boolean) => {
      const control = new HaControl();
      control.set(master, master);
      const ring = new SyncRing(64);
      const engine = makeEngine(specs(idle), {
        ha: { nodeId: id, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 30 },
      });
      return { engine, ring, control };
    };
    const a = node(1, true);
    const b = node(2, false);
    const da = new Driver(a.engine);
    establish(da, 40005);
    da.nowMs = 200;
    a.engine.advanceTimers(da.nowMs);
    const drain = () => {
      const events = new Int32Array(64 * EVENT_WORDS);
      return { events, n: a.ring.drain(events, 64) };
    };
    const { events, n } = drain();
    expect(b.engine.installSynced(events, n).installed).toBe(1);
    return { a, b, da, drain };
  }

  it("an HA peer's copy of an idle connection lives as long as on the node that published it", () => {
    const { b } = pairWith(900);
    expect(new Driver(b.engine).session()).toMatchObject({ state: 'ESTABLISHED', expiresInMs: 900_000 });
  });

  it('a copy lives at least two refresh intervals: the peer cannot see a busy short-timeout connection', () => {
    // idleTimeout 10 s under refreshSec 30 s: the publisher keeps the busy connection alive
    // but republishes it only every 30 s; a copy that died after 10 s would be gone at failover.
    const { a, b, da, drain } = pairWith(10);
    expect(new Driver(b.engine).session()).toMatchObject({ state: 'ESTABLISHED', expiresInMs: 60_000 });
    // Its end still reaches the peer at once.
    da.nowMs = 20_000;
    a.engine.advanceTimers(da.nowMs); // idle 10 s on A: expired there
    expect(a.engine.sessionCount).toBe(0);
    const { events, n } = drain();
    expect(b.engine.installSynced(events, n).deleted).toBe(1);
    expect(b.engine.sessionCount).toBe(0);
  });

  it("a copy that becomes the node's own (a promotion adopts it) is timed as its own: idle from then on, not a copy's minute", async () => {
    const { b } = pairWith(10);
    const db = new Driver(b.engine);
    db.nowMs = 5_000;
    b.engine.advanceTimers(db.nowMs);
    expect(db.session().expiresInMs).toBe(55_000); // a copy: two refresh intervals
    // B is master: it sees the connection's packets now, so an idle connection of this
    // service ends 10 s after its last one, here as on A (a live one's next packet comes
    // within that, and restarts the timer).
    b.control.set(true, true);
    expect(await b.engine.adoptSynced(0)).toBe(1);
    expect(db.session()).toMatchObject({ owner: 0, expiresInMs: 10_000 });
    db.nowMs += 10_100;
    b.engine.advanceTimers(db.nowMs);
    expect(b.engine.sessionCount).toBe(0);
  });

  it('is whole seconds 1..86400, in the file and through resolveServices (runtime edits)', () => {
    const base = {
      vip: V4.vip,
      port: 80,
      localAddresses: [V4.lip],
      realServers: [{ address: V4.rs1, port: 8080, weight: 1 }],
    };
    expect(parseService({ ...base, idleTimeout: 900 }, 's').idleTimeout).toBe(900);
    for (const bad of [0, 1.5, 86_401, '900']) {
      expect(() => parseService({ ...base, idleTimeout: bad }, 's')).toThrow(ConfigError);
      expect(() =>
        resolveServices([serviceWithDefaults({ ...base, idleTimeout: bad as number })], new IdRegistry()),
      ).toThrow(/services\[0\]\.idleTimeout: .* is not a timeout: use whole seconds 1\.\.86400/);
    }
  });
});
