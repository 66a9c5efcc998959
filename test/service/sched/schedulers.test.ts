import { describe, expect, it } from 'vitest';
import { REAL_SERVERS_MAX } from '../../../src/constants.js';
import { createScheduler, type Scheduler, type ServerPool } from '../../../src/service/sched/index.js';
import { available, SCHEDULER_NAMES } from '../../../src/service/sched/scheduler.js';
import { WeightedRandomTwos } from '../../../src/service/sched/twos.js';
import { Maglev } from '../../../src/service/sched/maglev.js';
import {
  ConnCounts,
  IdRegistry,
  resolveServices,
  serviceWithDefaults,
  ServiceTable,
} from '../../../src/service/service.js';

function pool(
  weights: number[],
  maxConns: number[] = [],
  minConns: number[] = [],
): ServerPool & { weights: Int32Array; active: Int32Array; inactive: Int32Array } {
  const active = new Int32Array(REAL_SERVERS_MAX);
  const inactive = new Int32Array(REAL_SERVERS_MAX);
  return {
    count: weights.length,
    weights: Int32Array.from(weights),
    ids: Int32Array.from(weights, (_, i) => i),
    keys: weights.map((_, i) => `198.18.1.${10 + i}|8080`),
    active,
    inactive,
    node: [{ active, inactive }],
    maxConns: Int32Array.from(weights, (_, i) => maxConns[i] ?? 0),
    minConns: Int32Array.from(weights, (_, i) => minConns[i] ?? 0),
    overloaded: new Uint8Array(weights.length),
  };
}

function tally(n: number, k: number, pick: (i: number) => number): number[] {
  const t = new Array<number>(k).fill(0);
  for (let i = 0; i < n; i++) {
    const p = pick(i);
    if (p >= 0) t[p]!++;
  }
  return t;
}

const OPTS = { maglevTableSize: 65537 };
const hashOf = (i: number) => Math.imul(i + 1, 0x9e3779b1);

describe('schedulers', () => {
  it('rr cycles through servers with weight > 0', () => {
    const s = createScheduler('rr', pool([1, 0, 5]), OPTS);
    expect([s.pick(0), s.pick(0), s.pick(0), s.pick(0)]).toEqual([0, 2, 0, 2]);
  });

  it('wrr gives each server exactly its weight per cycle, interleaved', () => {
    const s = createScheduler('wrr', pool([5, 1, 1]), OPTS);
    const seq = Array.from({ length: 7 }, () => s.pick(0));
    expect(tally(7, 3, (i) => seq[i]!)).toEqual([5, 1, 1]);
    expect(seq).toEqual([0, 0, 1, 0, 2, 0, 0]);
    const s2 = createScheduler('wrr', pool([3, 2, 1]), OPTS);
    expect(tally(6000, 3, () => s2.pick(0))).toEqual([3000, 2000, 1000]);
  });

  it('lc picks the least loaded (active counts 256× inactive); wlc divides by weight', () => {
    const p = pool([1, 1, 2]);
    p.active.set([3, 1, 2]);
    expect(createScheduler('lc', p, OPTS).pick(0)).toBe(1);
    p.inactive[1] = 300; // 1×256 + 300 = 556 > 512 (server 2 has 2 active)
    expect(createScheduler('lc', p, OPTS).pick(0)).toBe(2);
    // wlc: loads 768/1, 556/1, 512/2 → server 2
    expect(createScheduler('wlc', p, OPTS).pick(0)).toBe(2);
    p.weights[2] = 0;
    expect(createScheduler('wlc', p, OPTS).pick(0)).toBe(1);
  });

  it('sed: (active + 1) / weight, inactive sessions uncounted; an idle heavy server before an idle light one', () => {
    const p = pool([1, 3]);
    const s = createScheduler('sed', p, OPTS);
    expect(s.pick(0)).toBe(1); // 1/1 against 1/3 (wlc: 0 against 0, the first)
    expect(createScheduler('wlc', p, OPTS).pick(0)).toBe(0);
    p.active.set([0, 2]); // 1/1 against 3/3: a tie, the first
    expect(s.pick(0)).toBe(0);
    p.active.set([1, 2]); // 2/1 against 3/3
    expect(s.pick(0)).toBe(1);
    p.inactive[1] = 1000; // inactive sessions do not count
    expect(s.pick(0)).toBe(1);
  });

  it('nq: the first idle server on the LB (every forwarder counted), else as sed', () => {
    const p = pool([1, 3, 1]);
    const other = { active: new Int32Array(REAL_SERVERS_MAX), inactive: new Int32Array(REAL_SERVERS_MAX) };
    const q = createScheduler('nq', { ...p, node: [...p.node, other] }, OPTS);
    expect(q.pick(0)).toBe(0); // all idle: the first (sed would take the heavy one)
    p.active[0] = 1;
    expect(q.pick(0)).toBe(1);
    other.active[1] = 1; // busy on another forwarder: not idle
    expect(q.pick(0)).toBe(2);
    other.active[2] = 1; // none idle: sed on this forwarder's counts, 2/1 · 1/3 · 1/1
    expect(q.pick(0)).toBe(1);
  });

  it('fo: the heaviest available server takes all; the spares by weight when it is down or capped', () => {
    const p = pool([2, 5, 5, 3], [0, 0, 1, 0]);
    const s = createScheduler('fo', p, OPTS);
    expect(tally(20, 4, () => s.pick(0))).toEqual([0, 20, 0, 0]); // a tie: the first
    p.weights[1] = 0; // down
    expect(s.pick(0)).toBe(2);
    p.active[2] = 1; // at its cap
    expect(s.pick(0)).toBe(3);
    p.weights[3] = 0;
    expect(s.pick(0)).toBe(0);
  });

  it('ovf: the heaviest server until its active sessions on the LB exceed its weight, then the next; none after', () => {
    const p = pool([2, 3, 1]);
    const other = { active: new Int32Array(REAL_SERVERS_MAX), inactive: new Int32Array(REAL_SERVERS_MAX) };
    const s = createScheduler('ovf', { ...p, node: [...p.node, other] }, OPTS);
    expect(s.pick(0)).toBe(1);
    p.active[1] = 2;
    other.active[1] = 1; // 3: at its weight, not past it
    expect(s.pick(0)).toBe(1);
    other.active[1] = 2; // 4 > 3, counted over both forwarders
    expect(s.pick(0)).toBe(0);
    p.inactive[0] = 100; // inactive sessions do not count
    expect(s.pick(0)).toBe(0);
    p.active.set([3, 4, 2]);
    expect(s.pick(0)).toBe(-1);
  });

  it('twos: draws follow the weights on an even load; the less loaded of the two draws wins', () => {
    const p = pool([1, 3]);
    const s: Scheduler = new WeightedRandomTwos(p, 12345);
    const even = tally(40000, 2, () => s.pick(0));
    // Two draws, the first kept on a tie (equal loads): server 1 with 3/4 of the draws.
    expect(even[1]! / even[0]!).toBeGreaterThan(2.7);
    expect(even[1]! / even[0]!).toBeLessThan(3.3);
    p.active[1] = 10; // loaded: it wins only when both draws are it, (3/4)² of the time
    const loaded = tally(40000, 2, () => s.pick(0));
    expect(loaded[1]! / 40000).toBeGreaterThan(0.53);
    expect(loaded[1]! / 40000).toBeLessThan(0.6);
    p.weights[1] = 0;
    expect(tally(100, 2, () => s.pick(0))).toEqual([100, 0]);
    const q = pool([1, 1, 1]);
    const spread: Scheduler = new WeightedRandomTwos(q, 7);
    // Each pick makes a session: two choices keep the spread tight.
    for (let i = 0; i < 3000; i++) q.active[spread.pick(0)]!++;
    expect(Math.max(...q.active.subarray(0, 3)) - Math.min(...q.active.subarray(0, 3))).toBeLessThan(30);
  });

  it('sh maps a client to the same server and follows weights', () => {
    const s = createScheduler('sh', pool([1, 3]), OPTS);
    expect(s.pick(12345)).toBe(s.pick(12345));
    const t = tally(40000, 2, (i) => s.pick(hashOf(i)));
    expect(t[1]! / t[0]!).toBeGreaterThan(2.7);
    expect(t[1]! / t[0]!).toBeLessThan(3.3);
  });

  it('every scheduler returns −1 when all weights are 0', () => {
    for (const name of SCHEDULER_NAMES) {
      expect(createScheduler(name, pool([0, 0]), OPTS).pick(1), name).toBe(-1);
    }
  });

  it('maglev: balanced, weighted, and minimal disruption when a server leaves', () => {
    const p = pool([1, 1, 1, 1, 1]);
    const m = new Maglev(p, 65537);
    const before = Int32Array.from(m.table);
    const share = tally(65537, 5, (i) => before[i]!);
    for (const n of share) expect(Math.abs(n - 65537 / 5) / (65537 / 5)).toBeLessThan(0.02);
    // Server 2 leaves (drain): its slots move, others mostly stay.
    p.weights[2] = 0;
    m.update();
    let moved = 0;
    for (let i = 0; i < 65537; i++) {
      expect(m.table[i]).not.toBe(2);
      if (before[i] !== 2 && m.table[i] !== before[i]) moved++;
    }
    const movedFraction = moved / 65537;
    console.log(`maglev: a server leaving 5 moved ${(movedFraction * 100).toFixed(2)}% of the other slots`);
    expect(movedFraction).toBeLessThan(0.05);
    // Weights: 1:2:3 shares.
    const w = new Maglev(pool([1, 2, 3]), 65537);
    const ws = tally(65537, 3, (i) => w.table[i]!);
    expect(ws[1]! / ws[0]!).toBeCloseTo(2, 1);
    expect(ws[2]! / ws[0]!).toBeCloseTo(3, 1);
  });

  it('maglev tables are what earlier versions built (nodes of a cluster mid-upgrade agree)', () => {
    // The fold of the table for 10 servers at weights 1, 2, 3, ... as the build with a
    // division per probe made it (the faster one of docs/engine.md walks the same permutations).
    const m = new Maglev(pool(Array.from({ length: 10 }, (_, i) => 1 + (i % 3))), 65537);
    let h = 0;
    for (let i = 0; i < 65537; i++) h = (Math.imul(h, 31) + m.table[i]!) | 0;
    expect(h).toBe(1056507141);
  });

  it('maglev tables are identical on two LBs with the same pool (failover keeps affinity)', () => {
    const a = new Maglev(pool([1, 2, 1]), 251);
    const b = new Maglev(pool([1, 2, 1]), 251);
    expect(a.table).toEqual(b.table);
  });
});

describe('session caps (maxConns, minConns: ipvsadm -x, -y)', () => {
  it('a server at its cap is skipped until its sessions fall under its floor (hysteresis, as IPVS)', () => {
    const p = pool([1, 1], [4, 0], [2, 0]);
    const s = createScheduler('rr', p, OPTS);
    p.active[0] = 3;
    p.inactive[0] = 1; // 4: at the cap
    expect([s.pick(0), s.pick(0), s.pick(0)]).toEqual([1, 1, 1]);
    expect(available(p, 0)).toBe(false);
    p.inactive[0] = 0; // 3: under the cap, not under the floor
    expect(available(p, 0)).toBe(false);
    p.active[0] = 1; // 1: under the floor (2)
    expect(available(p, 0)).toBe(true);
    expect([s.pick(0), s.pick(0)].sort()).toEqual([0, 1]);
    p.active[0] = 3; // back up, under the cap: it takes sessions again
    expect(available(p, 0)).toBe(true);
  });

  it.each(SCHEDULER_NAMES.filter((n) => n !== 'sh' && n !== 'mh'))(
    '%s: the others take the load; none left: −1',
    (name) => {
      const p = pool([1, 1, 1], [2, 2, 0]);
      const s = createScheduler(name, p, OPTS);
      p.active[0] = 2;
      p.inactive[1] = 5;
      expect(tally(30, 3, () => s.pick(0))).toEqual([0, 0, 30]);
      p.weights[2] = 0;
      expect(s.pick(0)).toBe(-1);
    },
  );

  it.each(['sh', 'mh'] as const)(
    "%s with fallback: an overloaded server's clients get others, by weight; the rest keep theirs",
    (name) => {
      const p = pool([1, 1, 2], [1, 0, 0], [1, 0, 0]);
      const s = createScheduler(name, p, { ...OPTS, fallback: true });
      const before = Array.from({ length: 3000 }, (_, i) => s.pick(hashOf(i)));
      p.active[0] = 1; // at its cap
      const after = Array.from({ length: 3000 }, (_, i) => s.pick(hashOf(i)));
      const moved = after.filter((x, i) => before[i] === 0);
      expect(after.filter((x, i) => before[i] !== 0)).toEqual(before.filter((x) => x !== 0));
      expect(moved).not.toContain(0);
      expect(moved).not.toContain(-1);
      // Spread over the others by their weights (1 : 2), not all onto one.
      const toTwo = moved.filter((x) => x === 2).length / moved.length;
      expect(toTwo).toBeGreaterThan(0.55);
      expect(toTwo).toBeLessThan(0.8);
      // Every server capped: none.
      p.maxConns.set([1, 1, 1]);
      p.active.set([1, 1, 1]);
      expect(s.pick(hashOf(1))).toBe(-1);
    },
  );

  it.each(['sh', 'mh'] as const)("%s: an overloaded server's clients get none (their affinity is kept)", (name) => {
    const p = pool([1, 1], [1, 0], [1, 0]);
    const s = createScheduler(name, p, OPTS);
    const before = Array.from({ length: 200 }, (_, i) => s.pick(hashOf(i)));
    p.active[0] = 1;
    const after = Array.from({ length: 200 }, (_, i) => s.pick(hashOf(i)));
    expect(after).toEqual(before.map((x) => (x === 0 ? -1 : x)));
    expect(before.filter((x) => x === 0).length).toBeGreaterThan(50);
    s.update(); // a table rebuilt meanwhile still has the server (caps are not weights)
    p.active[0] = 0;
    expect(Array.from({ length: 200 }, (_, i) => s.pick(hashOf(i)))).toEqual(before);
  });
});

describe('schedulers across pushes of the services (reloads, health changes)', () => {
  const spec = (weights: number[], maglevTableSize = 251) =>
    serviceWithDefaults({
      vip: '198.18.0.100',
      port: 80,
      scheduler: 'mh',
      maglevTableSize,
      realServers: weights.map((weight, i) => ({ address: `198.18.1.${11 + i}`, port: 8080, weight })),
      localAddresses: ['198.18.2.1'],
    });
  const push = (t: ServiceTable, ids: IdRegistry, weights: number[], size?: number) =>
    t.apply(resolveServices([spec(weights, size)], ids), 0, 1, 0);

  it('a push that changes nothing of a pool leaves its scheduler be; new weights rebuild it; a new table size makes a new one', () => {
    const ids = new IdRegistry();
    const t = new ServiceTable(new ConnCounts());
    push(t, ids, [1, 1, 1]);
    const mh = t.schedulers[0] as Maglev;
    mh.table[0] = -7; // a mark a rebuild would overwrite
    push(t, ids, [1, 1, 1]); // another service's server went down, say
    expect(t.schedulers[0]).toBe(mh);
    expect(mh.table[0]).toBe(-7);
    push(t, ids, [1, 0, 1]);
    expect(t.schedulers[0]).toBe(mh);
    expect(mh.table[0]).not.toBe(-7);
    expect(new Set(mh.table)).toEqual(new Set([0, 2]));
    push(t, ids, [1, 0, 1], 257);
    expect((t.schedulers[0] as Maglev).tableSize).toBe(257);
  });
});
