/**
 * A real server's session cap (maxConns / minConns, ipvsadm -x / -y) through the engine: new
 * sessions go to the other servers while it is at its cap, and come back once its sessions
 * fall under its floor; with no other server the packet is dropped as server_overloaded.
 * Validation of the fields in the file and for runtime edits.
 */

import { describe, expect, it } from 'vitest';
import { parseService } from '../../src/config/config.js';
import { DROP_REASON_NAMES } from '../../src/nat/verdict.js';
import {
  ConnCounts,
  IdRegistry,
  resolveServices,
  serviceWithDefaults,
  type RealServerSpec,
} from '../../src/service/service.js';
import { Driver, makeEngine, V4 } from '../helpers/engine.js';
import { parse, RST, SYN, tcp } from '../helpers/packets.js';

function engine(servers: RealServerSpec[]) {
  const spec = serviceWithDefaults({
    vip: V4.vip,
    port: 80,
    scheduler: 'rr',
    localAddresses: [V4.lip],
    realServers: servers,
  });
  return makeEngine([spec]);
}

const syn = (sport: number) => tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 1, flags: SYN });

describe('a real server at its session cap', () => {
  it('gets no new sessions until they fall under its floor; the others take them', () => {
    const d = new Driver(
      engine([
        { address: V4.rs1, port: 8080, weight: 1, maxConns: 2, minConns: 1 },
        { address: V4.rs2, port: 8080, weight: 1 },
      ]),
    );
    const to = (sport: number) => parse(d.forward(syn(sport))).dst;
    // rr: rs1, rs2, rs1 (now 2: its cap), then rs2 only.
    expect([40001, 40002, 40003, 40004, 40005].map(to)).toEqual([V4.rs1, V4.rs2, V4.rs1, V4.rs2, V4.rs2]);
    // One of rs1's sessions ends (client RST): 1 left, not under the floor (1) yet.
    d.forward(tcp({ src: V4.client, dst: V4.vip, sport: 40001, dport: 80, seq: 2, flags: RST }));
    d.nowMs = 4000;
    d.engine.advanceTimers(d.nowMs); // CLOSE's 3 s
    expect([40006, 40007].map(to)).toEqual([V4.rs2, V4.rs2]);
    d.forward(tcp({ src: V4.client, dst: V4.vip, sport: 40003, dport: 80, seq: 2, flags: RST }));
    d.nowMs = 8000;
    d.engine.advanceTimers(d.nowMs);
    expect([40008, 40009].map(to).sort()).toEqual([V4.rs1, V4.rs2].sort());
  });

  it('with no other server: dropped as server_overloaded (not no_real_server)', () => {
    const d = new Driver(engine([{ address: V4.rs1, port: 8080, weight: 1, maxConns: 1 }]));
    d.forward(syn(41001));
    expect(DROP_REASON_NAMES[d.drop(syn(41002))]).toBe('server_overloaded');
  });

  it('the cap counts the sessions of every forwarder of the LB (their counts in shared memory)', () => {
    const sabs = [new ConnCounts().sab, new ConnCounts().sab];
    const spec = serviceWithDefaults({
      vip: V4.vip,
      port: 80,
      scheduler: 'rr',
      localAddresses: [V4.lip],
      realServers: [{ address: V4.rs1, port: 8080, weight: 1, maxConns: 3 }],
    });
    const fwd = [0, 1].map(
      (worker) =>
        new Driver(makeEngine([spec], { workers: 2, worker, connCountsSab: sabs[worker], nodeConnCountsSabs: sabs })),
    );
    // Each forwarder makes sessions of the clients it owns (it hands the others' SYNs over).
    let port = 42000;
    const make = (w: number, want: number): { made: number; overloaded: boolean } => {
      let made = 0;
      while (made < want && port < 42200) {
        const r = fwd[w]!.send(syn(port++));
        if (r.verdict === 0) made++;
        else if (DROP_REASON_NAMES[r.reason] === 'server_overloaded') return { made, overloaded: true };
      }
      return { made, overloaded: false };
    };
    expect(make(0, 2)).toEqual({ made: 2, overloaded: false }); // more than half the cap on one
    expect(make(1, 2)).toEqual({ made: 1, overloaded: true }); // the third, then the cap
    expect(make(0, 1)).toEqual({ made: 0, overloaded: true });
  });
});

describe('maxConns and minConns in the config', () => {
  const spec = (rs: Record<string, unknown>) => ({
    vip: V4.vip,
    port: 80,
    localAddresses: [V4.lip],
    realServers: [{ address: V4.rs1, port: 8080, ...rs }],
  });
  const resolve = (rs: Record<string, unknown>) =>
    resolveServices([parseService(spec(rs), 'services[0]')], new IdRegistry())[0]!.realServers[0]!;

  it("parse; the floor defaults to three quarters of the cap (IPVS's)", () => {
    expect(resolve({ maxConns: 1000 })).toMatchObject({ maxConns: 1000, minConns: 750 });
    expect(resolve({ maxConns: 10, minConns: 2 })).toMatchObject({ maxConns: 10, minConns: 2 });
    expect(resolve({})).toMatchObject({ maxConns: 0, minConns: 0 });
  });

  it.each([
    [{ maxConns: 0 }, /realServers\[0\]\.maxConns: 0 is not a session count/],
    [{ maxConns: 1.5 }, /maxConns: 1\.5 is not a session count/],
    [{ minConns: 5 }, /realServers\[0\]\.minConns: minConns goes with maxConns/],
    [{ maxConns: 5, minConns: 6 }, /minConns: 6 is above maxConns 5/],
  ])('%j is refused', (rs, message) => {
    expect(() => resolve(rs)).toThrow(message);
  });
});
