/**
 * Persistence (ipvsadm -p): a client's (prefix's) new connections go to the real server its
 * earlier ones went to, in every forwarding mode and across workers; the template lives while
 * sessions run and `timeoutSec` after the last; a drained or removed server stops attracting.
 */

import { describe, expect, it } from 'vitest';
import { PERSIST_GROUPS_MAX, SERVICES_MAX } from '../../src/constants.js';
import { TemplateTable } from '../../src/conn/templates.js';
import { C_PERSISTENCE_HITS, C_PERSISTENCE_TEMPLATES } from '../../src/dataplane/counters.js';
import { templateRows } from '../../src/control/conns.js';
import { Engine } from '../../src/dataplane/engine.js';
import { parseService } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { Driver, V4, V6 } from '../helpers/engine.js';
import { parse, RST, SYN, tcp } from '../helpers/packets.js';

type Family = typeof V4;
const RS3 = { [V4.rs1]: '198.18.1.13', [V6.rs1]: 'fd00:18:1::13' };

function spec(fam: Family, extra: Partial<ServiceSpec> = {}): ServiceSpec[] {
  const mode = extra.mode ?? 'fullnat';
  const port = mode === 'tunnel' ? 80 : 8080;
  return [
    serviceWithDefaults({
      vip: fam.vip,
      port: 80,
      scheduler: 'rr',
      realServers: [fam.rs1, fam.rs2, RS3[fam.rs1]!].map((address) => ({ address, port, weight: 1 })),
      localAddresses: mode === 'nat' ? [] : [fam.lip],
      persistence: { timeoutSec: 60, netmask: 24, prefix6: 64 },
      ...extra,
    }),
  ];
}

function engine(specs: ServiceSpec[], table?: TemplateTable, ids = new IdRegistry(), worker = 0, workers = 1): Engine {
  return new Engine(
    { worker, workers, capacity: 1024, seed: 7, nowMs: 0, ...(table ? { templatesSab: table.sab } : {}) },
    resolveServices(specs, ids),
  );
}

/** The real server a SYN from `client`:`sport` is sent to (FULLNAT, NAT: the destination;
 * TUNNEL: the outer destination). */
function serverOf(d: Driver, fam: Family, client: string, sport: number): string {
  return parse(d.forward(tcp({ src: client, dst: fam.vip, sport, dport: 80, seq: 1, flags: SYN }))).dst;
}

const neighbour = (fam: Family): string => (fam === V4 ? '198.18.100.8' : 'fd00:18:64::8');
const otherNet = (fam: Family): string => (fam === V4 ? '198.18.101.7' : 'fd00:18:65::7');

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('persistence %s', (_n, fam) => {
  it.each(['fullnat', 'nat', 'tunnel'] as const)(
    '%s: a client prefix sticks to one server; rr spreads the rest',
    (mode) => {
      const d = new Driver(engine(spec(fam, { mode })));
      const first = serverOf(d, fam, fam.client, 40000);
      for (let p = 1; p < 10; p++) expect(serverOf(d, fam, fam.client, 40000 + p)).toBe(first);
      expect(serverOf(d, fam, neighbour(fam), 41000)).toBe(first); // same /24 (/64)
      const other = serverOf(d, fam, otherNet(fam), 42000);
      expect(other).not.toBe(first); // rr moved on
      expect(d.engine.counters[C_PERSISTENCE_TEMPLATES]).toBe(2);
      expect(d.engine.counters[C_PERSISTENCE_HITS]).toBe(10);
      const t = d.engine.templates.list(0);
      expect(t.map((x) => x.sessions).sort((a, b) => a - b)).toEqual([1, 11]);
    },
  );

  it('the template outlives its last session by the timeout, then the client is scheduled afresh; no RST for it', () => {
    const e = new Engine(
      { capacity: 1024, seed: 7, nowMs: 0, rstOnExpire: true, timeouts: { close: 1 } },
      resolveServices(spec(fam), new IdRegistry()),
    );
    const d = new Driver(e);
    const first = serverOf(d, fam, fam.client, 40000);
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40000, dport: 80, seq: 2, flags: RST }));
    d.nowMs = 2000;
    e.advanceTimers(d.nowMs); // the session is gone (CLOSE: 1 s)
    expect([...e.sessionIds()]).toEqual([]);
    expect(e.templates.list(d.nowMs)[0]).toMatchObject({ sessions: 0 });
    expect(e.templates.list(d.nowMs)[0]!.expiresInMs).toBeGreaterThan(58_000);
    d.nowMs = 40_000;
    expect(serverOf(d, fam, fam.client, 40001)).toBe(first); // within 60 s of the session's end
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40001, dport: 80, seq: 2, flags: RST }));
    d.nowMs = 42_000;
    e.advanceTimers(d.nowMs);
    d.nowMs = 103_000; // 61 s after that one ended
    e.advanceTimers(d.nowMs);
    expect(e.templates.list(d.nowMs)).toEqual([]);
    expect(e.emitCount).toBe(0); // a template is no session: nothing to reset
    serverOf(d, fam, otherNet(fam), 42000); // rr takes a turn elsewhere
    expect(serverOf(d, fam, fam.client, 40002)).not.toBe(first);
  });

  it('a drained or removed server stops attracting the client; the template follows the new one', () => {
    const ids = new IdRegistry();
    const d = new Driver(engine(spec(fam), undefined, ids));
    const first = serverOf(d, fam, fam.client, 40000);
    const servers = spec(fam)[0]!.realServers;
    const drained = servers.map((r) => ({
      ...r,
      weight: parse(tcp({ src: r.address, dst: r.address, sport: 1, dport: 1, flags: SYN })).dst === first ? 0 : 1,
    }));
    d.engine.applyServices(resolveServices(spec(fam, { realServers: drained }), ids));
    const second = serverOf(d, fam, fam.client, 40001);
    expect(second).not.toBe(first);
    expect(serverOf(d, fam, fam.client, 40002)).toBe(second);
    // Removed from the service altogether: the same.
    const without = servers.filter(
      (r) => parse(tcp({ src: r.address, dst: r.address, sport: 1, dport: 1, flags: SYN })).dst !== second,
    );
    d.engine.applyServices(resolveServices(spec(fam, { realServers: without }), ids));
    const third = serverOf(d, fam, fam.client, 40003);
    expect(third).not.toBe(second);
    expect(serverOf(d, fam, fam.client, 40004)).toBe(third);
  });
});

it('HA: a dead template this node published keeps its slot until the sweep has seen it (its Redis field is deleted by its key)', () => {
  const t = new TemplateTable(2);
  const key = (client: number) => Int32Array.from([(4 << 16) | 0, client, 0, 0, 0]);
  const a = t.put(key(1), 0, 0);
  t.acquire(a, 0, 1);
  expect(t.duePublish(a, 0)).toBe(true); // published: this node must delete it
  t.release(a, 0); // dead at 1 s
  const b = t.put(key(2), 0, 0);
  t.acquire(b, 0, 100); // live all along
  expect(b).not.toBe(a);
  // 5 s later the first is dead but still named in Redis: a new client finds no slot…
  expect(t.put(key(3), 0, 5000)).toBe(-1);
  // …until the sweep hands it over for its delete.
  const gone: number[][] = [];
  t.sweepPublished(0, 2, 5000, (slot) => gone.push([...t.keyOf(slot, new Int32Array(5))]));
  expect(gone).toEqual([[...key(1)]]);
  expect(t.put(key(3), 0, 5000)).toBe(a);
  // Swept once: not again; an unpublished dead template is reused at once.
  gone.length = 0;
  t.sweepPublished(0, 2, 9000, (slot) => gone.push([slot]));
  expect(gone).toEqual([]);
});

it("HA: a peer's template installed over a key this node published still has this node's field deleted when it dies", () => {
  const t = new TemplateTable(8);
  const key = Int32Array.from([(4 << 16) | 0, 7, 0, 0, 0]);
  const a = t.put(key, 0, 0);
  t.acquire(a, 0, 1);
  t.duePublish(a, 0);
  t.release(a, 0); // dead at 1 s, not swept yet
  expect(t.install(key, 1, 4000, 1, 2000)).toBe(true); // the peer's: another server, until 4 s
  const gone: number[] = [];
  t.sweepPublished(0, 8, 3000, (slot) => gone.push(slot));
  expect(gone).toEqual([]); // live (the peer's copy)
  t.sweepPublished(0, 8, 5000, (slot) => gone.push(slot));
  expect(gone).toEqual([a]);
});

it('workers share one table: a client whose connections land on different workers keeps one server', () => {
  const table = new TemplateTable(1024);
  const ids = new IdRegistry();
  const specs = spec(V4);
  const workers = [0, 1, 2].map((w) => new Driver(engine(specs, table, ids, w, 3)));
  const seen = new Set<string>();
  let owners = new Set<number>();
  for (let p = 0; p < 30; p++) {
    const pkt = tcp({ src: V4.client, dst: V4.vip, sport: 30000 + p * 7, dport: 80, seq: 1, flags: SYN });
    for (const [w, d] of workers.entries()) {
      const r = d.send(pkt);
      if (r.verdict === 0) {
        seen.add(parse(r.out).dst);
        owners = owners.add(w);
      }
    }
  }
  expect(owners.size).toBe(3);
  expect(seen.size).toBe(1);
  // A reload (the same ids) keeps the templates: they are the LB's, not the workers'.
  for (const d of workers) d.engine.applyServices(resolveServices(specs, ids));
  expect(table.list(0)[0]).toMatchObject({ sessions: 30 });
});

describe('persistence configuration', () => {
  const base = { vip: V4.vip, port: 80, realServers: [{ address: V4.rs1, port: 8080 }], localAddresses: [V4.lip] };
  it('defaults to ipvsadm -p: 300 s, per client address; netmask as a length or a.b.c.d', () => {
    expect(parseService({ ...base, persistence: {} }, 's').persistence).toEqual({
      timeoutSec: 300,
      netmask: 32,
      prefix6: 128,
    });
    expect(parseService({ ...base, persistence: { netmask: '255.255.255.0', prefix6: 64 } }, 's').persistence).toEqual({
      timeoutSec: 300,
      netmask: 24,
      prefix6: 64,
    });
  });
  it.each([
    [{ netmask: '255.0.255.0' }, 's.persistence.netmask', 'TUNVS_ERR_CONFIG_ADDRESS'],
    [{ netmask: 33 }, 's.persistence.netmask', 'TUNVS_ERR_CONFIG_RANGE'],
    [{ prefix6: 129 }, 's.persistence.prefix6', 'TUNVS_ERR_CONFIG_RANGE'],
    [{ timeoutSec: 0 }, 's.persistence.timeoutSec', 'TUNVS_ERR_CONFIG_RANGE'],
    [{ timeout: 5 }, 's.persistence.timeout', 'TUNVS_ERR_CONFIG_UNKNOWN'],
  ])('refuses %j', (persistence, path, code) => {
    let err: unknown;
    try {
      parseService({ ...base, persistence }, 's');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ path, code });
  });
});

describe('persistence groups (a persistent firewall-mark service over several VIP:ports)', () => {
  const servers = (port: number) => [V4.rs1, V4.rs2, RS3[V4.rs1]!].map((address) => ({ address, port, weight: 1 }));
  const member = (vip: string, port: number, rport: number, group?: string): ServiceSpec =>
    serviceWithDefaults({
      vip,
      port,
      scheduler: 'rr',
      realServers: servers(rport),
      localAddresses: [V4.lip],
      persistence: { timeoutSec: 600, netmask: 32, prefix6: 128, ...(group ? { group } : {}) },
    });
  const shop = (group?: string) => [
    member(V4.vip, 80, 8080, group),
    member(V4.vip, 443, 8443, group),
    member('198.18.0.101', 443, 8443, group),
  ];
  const to = (d: Driver, client: string, vip: string, port: number, sport: number) => {
    const o = parse(d.forward(tcp({ src: client, dst: vip, sport, dport: port, seq: 1, flags: SYN })));
    return `${o.dst}:${o.dport}`;
  };

  it("a client's connections to every VIP:port of the group go to one server address, each on its service's port", () => {
    const d = new Driver(engine(shop('shop')));
    // Another client takes rr's first turn of the 443 services: without the group, ours would
    // go to a server the 80 one did not pick.
    to(d, otherNet(V4), V4.vip, 443, 41000);
    to(d, otherNet(V4), '198.18.0.101', 443, 41001);
    const first = to(d, V4.client, V4.vip, 80, 40000);
    const address = first.split(':')[0]!;
    expect(to(d, V4.client, V4.vip, 443, 40001)).toBe(`${address}:8443`);
    expect(to(d, V4.client, '198.18.0.101', 443, 40002)).toBe(`${address}:8443`);
    // One template for the client (and one for the other), shared by the three services.
    expect(d.engine.templates.list(0).length).toBe(2);
    // Without a group each service keeps its own: rr moved the 443 ones on.
    const alone = new Driver(engine(shop()));
    to(alone, otherNet(V4), V4.vip, 443, 41000);
    to(alone, otherNet(V4), '198.18.0.101', 443, 41001);
    const a = to(alone, V4.client, V4.vip, 80, 40000).split(':')[0];
    expect(to(alone, V4.client, V4.vip, 443, 40001).split(':')[0]).not.toBe(a);
  });

  it("a server drained in one service of the group is not used there; the client's template moves", () => {
    const specs = shop('shop');
    const ids = new IdRegistry();
    const d = new Driver(engine(specs, undefined, ids));
    const address = to(d, V4.client, V4.vip, 80, 40000).split(':')[0]!;
    specs[1]!.realServers = specs[1]!.realServers.map((r) => (r.address === address ? { ...r, weight: 0 } : r));
    d.engine.applyServices(resolveServices(specs, ids));
    const moved = to(d, V4.client, V4.vip, 443, 40001).split(':')[0]!;
    expect(moved).not.toBe(address);
    expect(to(d, V4.client, V4.vip, 80, 40002).split(':')[0]).toBe(moved);
  });

  it("tunvs conns lists a group's template under its first service, with the server the client has", () => {
    const specs = shop('shop');
    const ids = new IdRegistry();
    const resolved = resolveServices(specs, ids);
    const d = new Driver(new Engine({ capacity: 1024, seed: 7, nowMs: 0 }, resolved));
    to(d, otherNet(V4), V4.vip, 443, 41000); // rr of the 443 service moves on
    const server = to(d, V4.client, V4.vip, 443, 40001); // its template: keyed by the 80 service
    const rows = templateRows(d.engine.templates.list(0), resolved);
    const mine = rows.find((r) => r.client === V4.client)!;
    expect(`${mine.vip}:${mine.vport}`).toBe(`${V4.vip}:80`);
    expect(`${mine.rip}:${mine.rport}`).toBe(server);
    // The 80 service removed: the group's next service names it, and the client keeps its
    // server (the template is the group's, not the 80 service's).
    const rest = resolveServices(specs.slice(1), ids);
    d.engine.applyServices(rest);
    const now = templateRows(d.engine.templates.list(0), rest).find((r) => r.client === V4.client)!;
    expect(`${now.vip}:${now.vport}`).toBe(`${V4.vip}:443`);
    expect(now.serviceId).toBe(rest[0]!.id);
    expect(to(d, V4.client, '198.18.0.101', 443, 40002)).toBe(server);
  });

  it('the services of a group must share one persistence', () => {
    const specs = shop('shop');
    specs[2]!.persistence = { ...specs[2]!.persistence!, timeoutSec: 300 };
    expect(() => resolveServices(specs, new IdRegistry())).toThrow(
      /services\[2\]\.persistence\.timeoutSec: 300: the services of persistence group "shop" share one persistence, and services\[0\] has 600/,
    );
    const base = { vip: V4.vip, port: 80, realServers: [{ address: V4.rs1, port: 8080 }], localAddresses: [V4.lip] };
    expect(() => parseService({ ...base, persistence: { group: 'a b' } }, 's')).toThrow(/s\.persistence\.group/);
  });

  it('a group keeps its key across reloads, as a service its id; past PERSIST_GROUPS_MAX names since start, a restart renumbers', () => {
    const ids = new IdRegistry();
    const one = (group: string) => resolveServices([member(V4.vip, 80, 8080, group)], ids)[0]!.persistKey;
    const shopKey = one('shop');
    expect(shopKey).toBeGreaterThanOrEqual(SERVICES_MAX);
    for (let g = 1; g < PERSIST_GROUPS_MAX; g++) one(`g${g}`);
    expect(one('shop')).toBe(shopKey);
    expect(() => one('one-too-many')).toThrow(
      `services[0].persistence.group: more than ${PERSIST_GROUPS_MAX} persistence groups since start; restart tunvs to renumber`,
    );
    expect(resolveServices([member(V4.vip, 80, 8080)], ids)[0]!.persistKey).toBe(0); // no group: the service's id
  });
});
