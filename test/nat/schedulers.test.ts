/**
 * IPVS's schedulers that read the session counts against a bar (ovf: the weight; nq: idle),
 * through the engine: the counts they read are the engine's own, moved by the handshake
 * (a session counts as active once ESTABLISHED) and by its end. fo through a health change.
 * sh and mh with hashPort: one address's connections spread. The config takes every
 * scheduler by its IPVS name.
 */

import { describe, expect, it } from 'vitest';
import { parseService } from '../../src/config/config.js';
import { SCHEDULER_NAMES } from '../../src/service/sched/scheduler.js';
import { Engine } from '../../src/dataplane/engine.js';
import type { SchedulerName } from '../../src/service/sched/scheduler.js';
import {
  IdRegistry,
  resolveServices,
  serviceWithDefaults,
  type RealServerSpec,
  type ServiceSpec,
} from '../../src/service/service.js';
import { Driver, V4 } from '../helpers/engine.js';
import { ACK, parse, RST, SYN, tcp } from '../helpers/packets.js';

const spec = (scheduler: SchedulerName, servers: RealServerSpec[], more: Partial<ServiceSpec> = {}) =>
  serviceWithDefaults({ vip: V4.vip, port: 80, scheduler, localAddresses: [V4.lip], realServers: servers, ...more });

function driver(
  scheduler: SchedulerName,
  servers: RealServerSpec[],
  ids = new IdRegistry(),
  more: Partial<ServiceSpec> = {},
): Driver {
  return new Driver(
    new Engine({ capacity: 4096, seed: 12345, nowMs: 0 }, resolveServices([spec(scheduler, servers, more)], ids)),
  );
}

/** A client's connection through the handshake: returns the real server it went to. */
function connect(d: Driver, sport: number, establish = true): string {
  const out = parse(d.forward(tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 100, flags: SYN })));
  if (!establish) return out.dst;
  d.forward(
    tcp({
      src: out.dst,
      dst: out.src,
      sport: 8080,
      dport: out.sport,
      seq: 9,
      ack: (out.seq + 1) >>> 0,
      flags: SYN | ACK,
    }),
  );
  d.forward(tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 101, ack: 10, flags: ACK }));
  return out.dst;
}

const close = (d: Driver, sport: number) =>
  d.forward(tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq: 101, flags: RST }));

describe('schedulers through the engine', () => {
  it('ovf: the heaviest server until its established sessions exceed its weight; half-open ones do not count', () => {
    const d = driver('ovf', [
      { address: V4.rs1, port: 8080, weight: 1 },
      { address: V4.rs2, port: 8080, weight: 2 },
    ]);
    // Half-open sessions are inactive: rs2 keeps taking them.
    expect([50001, 50002, 50003, 50004].map((p) => connect(d, p, false))).toEqual(Array(4).fill(V4.rs2));
    for (const p of [50001, 50002, 50003, 50004]) close(d, p);
    // Established: rs2 takes 3 (0, 1, 2 active: not past 2), then rs1 2, then none.
    const to = [40001, 40002, 40003, 40004, 40005].map((p) => connect(d, p));
    expect(to).toEqual([V4.rs2, V4.rs2, V4.rs2, V4.rs1, V4.rs1]);
    expect(d.drop(tcp({ src: V4.client, dst: V4.vip, sport: 40006, dport: 80, seq: 1, flags: SYN }))).toBeGreaterThan(
      0,
    );
    close(d, 40002); // rs2 back at its weight: it takes the next
    expect(connect(d, 40007)).toBe(V4.rs2);
  });

  it('nq: idle servers first, in order; then the shortest expected delay', () => {
    const d = driver('nq', [
      { address: V4.rs1, port: 8080, weight: 1 },
      { address: V4.rs2, port: 8080, weight: 3 },
    ]);
    expect([40001, 40002].map((p) => connect(d, p))).toEqual([V4.rs1, V4.rs2]);
    // None idle: (1+1)/1 against (1+1)/3, 3/3, 4/3, 5/3, then 6/3 (a tie: the first).
    const next = [40003, 40004, 40005, 40006, 40007].map((p) => connect(d, p));
    expect(next).toEqual([V4.rs2, V4.rs2, V4.rs2, V4.rs2, V4.rs1]);
  });

  it('fo: every session to the heaviest; a spare while it is down; the heaviest again when it is back', () => {
    const servers = [
      { address: V4.rs1, port: 8080, weight: 10 },
      { address: V4.rs2, port: 8080, weight: 5 },
    ];
    const ids = new IdRegistry();
    const d = driver('fo', servers, ids);
    const push = (w: number) =>
      d.engine.applyServices(resolveServices([spec('fo', [{ ...servers[0]!, weight: w }, servers[1]!])], ids));
    expect([40001, 40002].map((p) => connect(d, p))).toEqual([V4.rs1, V4.rs1]);
    push(0); // down (a health check sets weight 0)
    expect([40003, 40004].map((p) => connect(d, p))).toEqual([V4.rs2, V4.rs2]);
    push(10);
    expect(connect(d, 40005)).toBe(V4.rs1);
    expect(d.engine.sessionCount).toBe(5); // the spare keeps the sessions it took
  });
});

describe('sh and mh with hashPort (sh-port, mh-port)', () => {
  const servers = [V4.rs1, V4.rs2, '198.18.1.13'].map((address) => ({ address, port: 8080, weight: 1 }));

  it.each(['sh', 'mh'] as const)(
    "%s: one address's connections spread over the servers; each connection's port keeps its server",
    (sched) => {
      const to = (d: Driver) => Array.from({ length: 90 }, (_, i) => connect(d, 41000 + i, false));
      const plain = to(driver(sched, servers));
      expect(new Set(plain).size).toBe(1); // the address alone: one server for all
      const spread = to(driver(sched, servers, new IdRegistry(), { hashPort: true }));
      for (const rs of servers) expect(spread.filter((x) => x === rs.address).length).toBeGreaterThan(15);
      // Another LB (a node of the cluster, or this one after a restart) picks alike.
      expect(to(driver(sched, servers, new IdRegistry(), { hashPort: true }))).toEqual(spread);
    },
  );

  it('is refused with a scheduler that does not hash the client', () => {
    expect(() => resolveServices([spec('wlc', servers, { hashPort: true })], new IdRegistry())).toThrow(
      /services\[0\]\.hashPort: hashPort is for the schedulers that hash the client, sh and mh \(IPVS's sh-port, mh-port\), not wlc/,
    );
    expect(() => resolveServices([spec('rr', servers, { hashFallback: true })], new IdRegistry())).toThrow(
      /hashFallback is for .* sh-fallback/,
    );
  });
});

describe('the config', () => {
  it.each(SCHEDULER_NAMES)('takes scheduler %s', (scheduler) => {
    const s = parseService(
      { vip: V4.vip, port: 80, scheduler, localAddresses: [V4.lip], realServers: [{ address: V4.rs1, port: 8080 }] },
      'services[0]',
    );
    expect(s.scheduler).toBe(scheduler);
  });

  it('refuses a scheduler it lacks, naming those it has', () => {
    expect(() =>
      parseService(
        {
          vip: V4.vip,
          port: 80,
          scheduler: 'lblc',
          localAddresses: [V4.lip],
          realServers: [{ address: V4.rs1, port: 8080 }],
        },
        'services[0]',
      ),
    ).toThrow(/rr, wrr, lc, wlc, sed, nq, twos, fo, ovf, sh, mh/);
  });
});
