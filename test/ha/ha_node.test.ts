/**
 * HA nodes through a real Redis on loopback (and, last, Redis Sentinel with a primary and a
 * replica): real engines, real HaNodes (publisher, follower, registry), no threads or TUN.
 *
 *   cluster   three nodes, each with local addresses of its own, share their sessions; a flow
 *             whose client packets move to another node (ECMP rehash) continues there with
 *             the same bytes; only the owner publishes; a fourth node loads every peer before
 *             it is ready; a session goes back to the node that holds its local address when
 *             that node returns, or when its alive key had lapsed (a Redis connection held).
 *   pair      the same code with roles: the standby installs, a promotion adopts and
 *             republishes under the new master's own keys, the old master comes back as
 *             standby, loads them and drops its own hash (superseded); the same at failback.
 *   sentinel  the primary is killed: Sentinel promotes the replica, both nodes reconnect by
 *             themselves, nothing stops forwarding, events lost meanwhile are repaired by the
 *             resync, and the sync lag is back under a second.
 */

import { Redis } from 'ioredis';
import { connect as tcpConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HaConfig, HaRedis } from '../../src/config/config.js';
import type { Logger } from '../../src/control/log.js';
import {
  C_SYNC_ADOPTED,
  C_SYNC_HANDED_OVER,
  C_SYNC_STAND_DOWN,
  GLOBAL_COUNTER_NAMES,
} from '../../src/dataplane/counters.js';
import { clientShard } from '../../src/dataplane/shard.js';
import { parseAddress } from '../../src/service/addr.js';
import { SESSION_SHARDS } from '../../src/constants.js';
import { Engine } from '../../src/dataplane/engine.js';
import { engineLink } from '../../src/ha/engine_link.js';
import { adopterOf } from '../../src/ha/announce.js';
import { formatHaStatus } from '../../src/control/stats.js';
import { HaNode, type HaNodeOptions } from '../../src/ha/node.js';
import { Publisher } from '../../src/ha/publisher.js';
import { nodeKeys } from '../../src/ha/redis.js';
import { HaControl } from '../../src/ha/role.js';
import { SYNC_FORMAT, SyncRing } from '../../src/ha/session_sync.js';
import { recordWords } from '../../src/ha/sync_format.js';
import { startLocalRedis, startLocalSentinel, type LocalRedis } from '../../src/lab/local_redis.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';
import { Driver, V4, V6 } from '../helpers/engine.js';
import { ACK, parse, PSH, RST, SYN, tcp } from '../helpers/packets.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_FORWARD, VERDICT_REDIRECT } from '../../src/nat/verdict.js';

/** What the nodes logged, level and message (a test reads its own, after emptying it). */
const logged: string[] = [];
const quiet: Logger = {
  log: (l, m, f) => {
    logged.push(`${l} ${m}`);
    if (process.env.HA_DEBUG) console.log(Date.now() % 100000, l, m, JSON.stringify(f ?? {}));
  },
};

interface TestNode {
  id: number;
  /** Its first worker's engine (the only one unless started with more workers). */
  engine: Engine;
  /** Every worker's engine. */
  engines: Engine[];
  driver: Driver;
  node: HaNode;
  lip4: string;
  lip6: string;
}

/** Node `id` of cluster `cluster`: services like the lab's, local addresses of its own. */
function startNode(
  id: number,
  cluster: string,
  redis: HaRedis,
  mode: 'pair' | 'cluster',
  role = 'backup',
  persistence?: { timeoutSec: number },
  opts: HaNodeOptions = {},
  ringSlots = 4096,
  workers = 1,
  syncAfterMs = 0,
): TestNode {
  const lip4 = `198.18.2.${id}`;
  const lip6 = `fd00:18:2:0:0:0:0:${id}`; // as the packet parser prints it
  const control = new HaControl();
  const specs = [
    serviceWithDefaults({
      vip: V4.vip,
      port: 80,
      scheduler: 'rr',
      realServers: [{ address: V4.rs1, port: 8080, weight: 1 }],
      localAddresses: [lip4],
      ...(persistence ? { persistence: { ...persistence, netmask: 32, prefix6: 128 } } : {}),
    }),
    serviceWithDefaults({
      vip: V6.vip,
      port: 80,
      scheduler: 'rr',
      realServers: [{ address: V6.rs1, port: 8080, weight: 1 }],
      localAddresses: [lip6],
    }),
  ];
  const engines = Array.from(
    { length: workers },
    (_, worker) =>
      new Engine(
        {
          worker,
          workers,
          capacity: 4096,
          seed: 99 + id,
          nowMs: 0,
          timeouts: { established: 600 },
          ha: {
            nodeId: id,
            controlSab: control.sab,
            syncRingSab: new SyncRing(ringSlots).sab,
            syncAfterMs,
            refreshSec: 600,
          },
        },
        resolveServices(specs, new IdRegistry()),
      ),
  );
  const engine = engines[0]!;
  const cfg: HaConfig = {
    mode,
    nodeId: id,
    name: `lb-${id}`,
    redis,
    cluster,
    syncAfterMs,
    refreshSec: 600,
    drainMs: 0,
    routeHealth: 'off',
    initialRole: role === 'master' ? 'master' : 'backup',
  };
  const laddrs = () => [`${lip4}/32`, `${lip6}/128`];
  const node = new HaNode(cfg, engines.map(engineLink), quiet, control, { laddrs, ...opts });
  node.start();
  for (const e of engines) e.advanceTimers(0); // the engines read the node's role words (a forwarder at each tick)
  return { id, engine, engines, driver: new Driver(engine), node, lip4, lip6 };
}

/** A client connection through node `n`, handshake done, published at the next sync tick.
 * Returns the client-side packet maker and the session as node `n` sees it. */
function connect(n: TestNode, fam: typeof V4 | typeof V6, sport: number) {
  const lip = fam === V4 ? n.lip4 : n.lip6;
  const C = (seq: number, ack: number, flags: number, payload?: Uint8Array) =>
    tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq, ack, flags, ...(payload ? { payload } : {}) });
  const syn = parse(n.driver.forward(C(1000, 0, SYN)));
  expect(syn.src).toBe(lip);
  n.driver.forward(
    tcp({ src: fam.rs1, dst: lip, sport: 8080, dport: syn.sport, seq: 7000, ack: syn.seq + 1, flags: SYN | ACK }),
  );
  n.driver.forward(C(1001, 7001, ACK));
  n.driver.nowMs += 200;
  n.engine.advanceTimers(n.driver.nowMs); // published by the sync timer (syncAfterMs 0)
  return { C, lport: syn.sport };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A TCP proxy to Redis on loopback whose traffic can be held (freeze: neither side reads;
 * thaw: on again): a node cut off from Redis while its process runs on. */
async function freezableProxy(to: number): Promise<{
  port: number;
  freeze: () => void;
  thaw: () => void;
  close: () => Promise<void>;
}> {
  const socks = new Set<Socket>();
  let frozen = false;
  const server = createServer((a) => {
    const b = tcpConnect({ host: '127.0.0.1', port: to });
    for (const [s, t] of [
      [a, b],
      [b, a],
    ] as const) {
      socks.add(s);
      s.pipe(t);
      s.on('error', () => t.destroy());
      s.on('close', () => {
        socks.delete(s);
        t.destroy();
      });
      if (frozen) s.pause();
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    freeze: () => {
      frozen = true;
      for (const s of socks) s.pause();
    },
    thaw: () => {
      frozen = false;
      for (const s of socks) s.resume();
    },
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** `pkt` through node `n` as its forwarders take it: to the first, handed over to its owner
 * if another worker owns it; the packet written and the worker that wrote it. */
function forwardVia(n: TestNode, pkt: Uint8Array): { out: Uint8Array; worker: number } {
  const ring = new PacketRing(1);
  ring.put(0, pkt);
  n.engines[0]!.processBurst(ring, 1, n.driver.nowMs);
  let worker = 0;
  if (ring.verdicts[0] === VERDICT_REDIRECT) {
    worker = ring.aux[0]!;
    ring.put(0, pkt);
    n.engines[worker]!.processBurst(ring, 1, n.driver.nowMs);
  }
  expect(ring.verdicts[0], `verdict ${ring.verdicts[0]} reason ${ring.aux[0]}`).toBe(VERDICT_FORWARD);
  return { out: ring.get(0).slice(), worker };
}

/** connect() through a node of several workers (forwardVia), from `client`. */
function connectVia(n: TestNode, fam: typeof V4 | typeof V6, sport: number, client = fam.client) {
  const lip = fam === V4 ? n.lip4 : n.lip6;
  const C = (seq: number, ack: number, flags: number, payload?: Uint8Array) =>
    tcp({ src: client, dst: fam.vip, sport, dport: 80, seq, ack, flags, ...(payload ? { payload } : {}) });
  const syn = parse(forwardVia(n, C(1000, 0, SYN)).out);
  forwardVia(
    n,
    tcp({ src: fam.rs1, dst: lip, sport: 8080, dport: syn.sport, seq: 7000, ack: syn.seq + 1, flags: SYN | ACK }),
  );
  forwardVia(n, C(1001, 7001, ACK));
  n.driver.nowMs += 200;
  for (const e of n.engines) e.advanceTimers(n.driver.nowMs); // published by the sync timer
  return { C, lport: syn.sport, rs: fam.rs1 };
}

const owners = (n: TestNode): number[] => [...n.engine.sessionIds()].map((r) => n.engine.describe(r).owner).sort();

describe('HA nodes through Redis', () => {
  let server: LocalRedis;
  let redis: Redis;
  const nodes: TestNode[] = [];
  beforeAll(async () => {
    server = await startLocalRedis();
    redis = new Redis(server.port, '127.0.0.1');
  });
  afterAll(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.node.stop()));
    redis?.disconnect();
    await server?.stop();
  });
  const where = (): HaRedis => ({ url: `redis://127.0.0.1:${server.port}` });

  it('the publisher counts a resync underway as one to come (node.ts keeps a peer adopted meanwhile in Redis until the next)', async () => {
    const n = startNode(9, 'underway', where(), 'cluster');
    nodes.push(n);
    const link = engineLink(n.engine);
    let open: () => void = () => {};
    const gate = new Promise<void>((r) => (open = r));
    const slow = { ...link, snapshot: async () => (await gate, link.snapshot()) };
    const pub = new Publisher(
      nodeKeys('underway', 9),
      9,
      [slow],
      () => {},
      () => {},
    );
    expect(pub.resyncsUnderway).toBe(0);
    const tick = pub.tick(redis); // needResync at first: a resync, its snapshot held at the gate
    await new Promise((r) => setTimeout(r, 50));
    expect([pub.stats.resyncs, pub.resyncsUnderway]).toEqual([0, 1]); // adopted now: after resync 1
    open();
    await tick;
    expect([pub.stats.resyncs, pub.resyncsUnderway]).toEqual([1, 1]);
  });

  it('a cluster shares every node’s sessions; a rehashed flow goes on with the same bytes', async () => {
    const c = [1, 2, 3].map((id) => startNode(id, 'c3', where(), 'cluster'));
    nodes.push(...c);
    await until('all ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 2));
    const flows = c.map((n, i) => ({ v4: connect(n, V4, 40000 + i), v6: connect(n, V6, 41000 + i) }));
    await until('each node holds all 6 sessions', () => c.every((n) => n.engine.sessionCount === 6));
    // Each node owns its own two (owner 0) and holds two of each peer, named by the peer.
    expect(owners(c[0]!)).toEqual([0, 0, 2, 2, 3, 3]);
    expect(owners(c[2]!)).toEqual([0, 0, 1, 1, 2, 2]);
    expect(c.every((n) => n.node.status().forwarding && n.node.status().publishing)).toBe(true);

    // ECMP moves node 1's client to node 2: node 2 rewrites exactly as node 1 does (same LIP,
    // port, delta and TOA), and does not publish a session that is not its own.
    for (const fam of ['v4', 'v6'] as const) {
      const req = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');
      const pkt = flows[0]![fam].C(1001, 7001, ACK | PSH, req);
      const on1 = c[0]!.driver.forward(pkt);
      const on2 = c[1]!.driver.forward(pkt);
      expect(Buffer.from(on2)).toEqual(Buffer.from(on1));
      expect(parse(on2).sport).toBe(flows[0]![fam].lport);
      c[1]!.driver.forward(flows[0]![fam].C(1001 + req.length, 7001, ACK | 1)); // FIN: a state change
    }
    c[1]!.engine.advanceTimers(c[1]!.driver.nowMs + 200);
    expect(c[1]!.engine.sync!.ring.pending).toBe(0);

    // Each node publishes under keys of its own.
    for (const n of c) expect(await redis.hlen(nodeKeys('c3', n.id).sessions)).toBe(2);
  });

  it('nodes of other worker counts (2, 3, 7) share sessions: each finds the owner worker of both sides by the same shards', async () => {
    const c = [2, 3, 7].map((workers, i) =>
      startNode(i + 1, 'unlike', where(), 'cluster', 'backup', undefined, {}, 4096, workers),
    );
    try {
      await until('all ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 2));
      const [a, b, d] = c as [TestNode, TestNode, TestNode];
      const flows: ReturnType<typeof connectVia>[] = [];
      for (let i = 0; i < 40; i++) flows.push(connectVia(a, i % 2 ? V6 : V4, 43000 + i * 13));
      const total = (n: TestNode) => n.engines.reduce((k, e) => k + e.sessionCount, 0);
      await until('both peers hold the 40', () => total(b) === 40 && total(d) === 40);
      const req = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');
      const servedAlike = (made: ReturnType<typeof connectVia>[]): void => {
        for (const f of made) {
          const pkt = f.C(1001, 7001, ACK | PSH, req);
          const onA = forwardVia(a, pkt).out;
          for (const n of [b, d]) {
            // The client's packet reaches the worker that holds the session, rewritten as on
            // node 1; the server's reply to the local port reaches the same worker.
            const viaClient = forwardVia(n, pkt);
            expect(Buffer.from(viaClient.out)).toEqual(Buffer.from(onA));
            const ack = parse(onA).seq + req.length;
            const reply = tcp({
              src: f.rs,
              dst: parse(onA).src,
              sport: 8080,
              dport: f.lport,
              seq: 7001,
              ack,
              flags: ACK,
            });
            expect(forwardVia(n, reply).worker).toBe(viaClient.worker);
          }
        }
      };
      servedAlike(flows);
      // One client shard's ports on node 1 run out (one local address and real server: ~67):
      // the sessions after take ports of shards every node gives the same owner (2, 3 and 7
      // workers: 42 shards apart), so nodes 2 and 3 serve them too.
      const full = clientShard(parseAddress('198.18.0.1')!.words[0]!, 0, 0, 0, 40000);
      const crowd: { client: string; sport: number }[] = [];
      for (let i = 0; crowd.length < 75; i++) {
        const client = `198.18.${(i >> 8) & 255}.${i & 255}`;
        const sport = 40000 + (i >> 16);
        if (clientShard(parseAddress(client)!.words[0]!, 0, 0, 0, sport) === full) crowd.push({ client, sport });
      }
      const crowded = crowd.map(({ client, sport }) => connectVia(a, V4, sport, client));
      const lent = crowded.filter((f) => f.lport % SESSION_SHARDS !== full);
      expect(lent.length).toBeGreaterThan(3);
      for (const f of lent) expect(Math.abs((f.lport % SESSION_SHARDS) - full) % 42).toBe(0);
      // In turn: each from another shard of the class (the overflow spreads over them).
      expect(new Set(lent.map((f) => f.lport % SESSION_SHARDS)).size).toBe(lent.length);
      const count = (name: string) =>
        a.engines.reduce((k, e) => k + e.counters[GLOBAL_COUNTER_NAMES.indexOf(name)]!, 0);
      expect(count('lport_other_shard')).toBe(lent.length);
      expect(count('lport_other_owner')).toBe(0);
      await until('both peers hold them', () => total(b) === 40 + crowd.length && total(d) === 40 + crowd.length);
      servedAlike(lent);
      // `tunvs ha status` / `cluster status`: each node's workers, and whose shards disagree.
      const status = d.node.status();
      expect(formatHaStatus(status)).toMatch(
        /^workers {7}7, sessions in 960 shards; a full shard borrows from shards 42 apart first \(one owner on every node\)$/m,
      );
      expect(formatHaStatus({ ...status, peers: [] })).toMatch(/^workers {7}7, sessions in 960 shards$/m);
      const odd = { ...status, peers: status.peers.map((p, i) => ({ ...p, workers: i === 0 ? 9 : 64 })) };
      expect(formatHaStatus(odd)).toMatch(/no two shards have one owner on every node$/m);
      expect(formatHaStatus(status)).toMatch(/^ {2}1 \(lb-1\) .* workers 2$/m);
      const legacy = { ...status, peers: status.peers.map((p) => ({ ...p, workers: 3, shards: 3 })) };
      expect(formatHaStatus(legacy)).toMatch(/workers 3 \(3 shards: its sessions cannot be installed here\)/);
      // A node of the version before (its shards its 3 workers) agrees with a 3-worker node,
      // not with a 7-worker one, which says so and installs nothing of it.
      const events = nodeKeys('unlike', a.id).events;
      await redis.xadd(events, '*', 'w', '3', 'v', String(SYNC_FORMAT), 't', String(Date.now()), 'b', Buffer.alloc(0));
      await until('the 7-worker node names it', () =>
        /node 1 cut its sessions into 3 shards over 3 workers, this node into 960 over 7 workers/.test(
          d.node.status().lastError ?? '',
        ),
      );
      await until('the 3-worker node reads it (and finds no records in it)', () =>
        /is not whole sync records \(0 bytes/.test(b.node.status().lastError ?? ''),
      );
    } finally {
      await Promise.all(c.map((n) => n.node.stop()));
    }
  });

  it("a damaged entry in a peer's stream is named, skipped, and the peer loaded again from its hash: nothing lost", async () => {
    // Its own two nodes, stopped at the end (the tests after it count the running ones).
    const c = [1, 2].map((id) => startNode(id, 'damaged', where(), 'cluster'));
    try {
      await damaged(c);
    } finally {
      await Promise.all(c.map((n) => n.node.stop()));
    }
  });

  async function damaged(c: TestNode[]): Promise<void> {
    await until('both ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 1));
    const [a, b] = c as [TestNode, TestNode];
    const events = nodeKeys('damaged', a.id).events;
    // A session of node 1, then two damaged entries in its stream: a record cut short, and an
    // entry without records. (Before, each failed in the middle of routing with a TypeError
    // and every peer was loaded again.)
    connect(a, V4, 42000);
    await until('node 2 has it', () => b.engine.sessionCount === 1);
    const now = String(Date.now());
    await redis.xadd(events, '*', 'w', '1', 'v', String(SYNC_FORMAT), 't', now, 'b', Buffer.alloc(5));
    await until('node 2 names the entry', () =>
      /is not whole sync records \(5 bytes/.test(b.node.status().lastError ?? ''),
    );
    await redis.xadd(events, '*', 'w', '1', 'v', String(SYNC_FORMAT), 't', now);
    await until('node 2 names the second', () =>
      /is not whole sync records \(no bytes/.test(b.node.status().lastError ?? ''),
    );
    // It follows on: node 1's next session reaches it.
    connect(a, V6, 42001);
    await until('node 2 has both', () => b.engine.sessionCount === 2, 5000);
    expect(owners(b)).toEqual([1, 1]);
  }

  it("entries Redis trimmed before a follower read them: the jump in their numbers is seen and the peer's hash loaded again, nothing lost", async () => {
    // Node 2 reads through a proxy that holds its traffic while node 1 publishes three
    // entries, which are then trimmed from node 1's stream (as MAXLEN does to a follower
    // behind by ~100,000), and a fourth. Before, node 2 went on from the fourth without them.
    const proxy = await freezableProxy(server.port);
    const a = startNode(1, 'gap', where(), 'cluster');
    const b = startNode(2, 'gap', { url: `redis://127.0.0.1:${proxy.port}` }, 'cluster');
    try {
      await until('both ready', () => [a, b].every((n) => n.node.status().ready && n.node.status().peers.length === 1));
      connect(a, V4, 49100);
      await until('node 2 has it', () => b.engine.sessionCount === 1);
      const inHash = (n: number): Promise<void> =>
        until(`${n} in node 1's hash`, async () => (await redis.hlen(nodeKeys('gap', 1).sessions)) === n);
      proxy.freeze(); // well inside node 2's alive key (3 s)
      for (const [i, port] of [49101, 49102, 49103].entries()) {
        connect(a, V4, port);
        await inHash(i + 2);
      }
      await redis.xtrim(nodeKeys('gap', 1).events, 'MAXLEN', 0);
      connect(a, V4, 49104);
      await inHash(5);
      proxy.thaw();
      await until('node 2 has all five', () => b.engine.sessionCount === 5);
      expect(b.node.status().lastError).toMatch(/node 1's stream had lost \d+ entries before this node read them/);
      expect(owners(b)).toEqual([1, 1, 1, 1, 1]);
    } finally {
      proxy.thaw();
      await b.node.stop(); // through the proxy, before it goes
      await proxy.close();
      await a.node.stop();
    }
  });

  it('a node joining a running cluster loads every peer before it is ready', async () => {
    // Regression: the running nodes reload on a new peer, and were "not ready" (withdrawn
    // from the routers) meanwhile; readiness only gates a node's first announcement.
    const running = nodes.filter((n) => n.id <= 3);
    let flapped = 0;
    const watch = setInterval(() => (flapped += running.filter((n) => !n.node.status().ready).length), 2);
    const d = startNode(4, 'c3', where(), 'cluster');
    nodes.push(d);
    await until('node 4 ready', () => d.node.status().ready);
    await until('every node loaded node 4', () => running.every((n) => n.node.status().peers.length === 3));
    clearInterval(watch);
    expect(flapped).toBe(0);
    expect(d.engine.sessionCount).toBe(6); // ready means loaded: nothing arrives after
    expect(owners(d)).toEqual([1, 1, 2, 2, 3, 3]);
    expect(d.node.status().peers.map((p) => [p.id, p.alive, p.loaded])).toEqual([
      [1, true, true],
      [2, true, true],
      [3, true, true],
    ]);
    expect(() => d.node.setRole('master')).toThrow(/a cluster node has no VRRP role/);
  });

  it("a dead node's sessions are adopted by its first live backup, and the others learn the new owner", async () => {
    const c = [1, 2, 3, 4].map((id) => nodes.find((n) => n.id === id && n.node.status().mode === 'cluster')!);
    const dead = c[2]!;
    await dead.node.stop(); // an orderly stop deletes its alive key (a crash: it expires)
    const adopter = adopterOf(3, [1, 2, 3, 4], (id) => id !== 3)!;
    const a = c.find((n) => n.id === adopter)!;
    await until('the adopter owns node 3’s sessions', () => !owners(a).includes(3), 10_000);
    expect(owners(a).filter((o) => o === 0).length).toBe(a.id === 4 ? 2 : 4);
    const republished = a.id === 4 ? 2 : 4; // node 4 has no sessions of its own
    await until(
      'the adopter republished them',
      async () => (await redis.hlen(nodeKeys('c3', adopter).sessions)) === republished,
    );
    const other = c.find((n) => n !== a && n !== dead)!;
    await until('another node sees the adopter as their owner', () => !owners(other).includes(3), 10_000);
    expect(a.engine.counters[C_SYNC_ADOPTED]).toBe(2);
    // Its hash goes once the adopter republished: a returning node 3 must not claim them.
    await until('node 3’s hash removed', async () => (await redis.exists(nodeKeys('c3', 3).sessions)) === 0);
  });

  it('cluster forget: a stopped, adopted node leaves the registry; refused for itself and for a live node', async () => {
    const c = [1, 2, 4].map((id) => nodes.find((n) => n.id === id && n.node.status().mode === 'cluster')!);
    const [x, y] = [c[0]!, c[1]!];
    await expect(x.node.forget(1)).rejects.toThrow(/this node/);
    await expect(x.node.forget(2)).rejects.toThrow(/alive/);
    await expect(x.node.forget(9)).rejects.toThrow(/not in cluster c3/);
    await x.node.forget(3); // dead, adopted, its hash gone (the test before)
    expect(await redis.hexists('tunvs:c3:nodes', '3')).toBe(0);
    expect(await redis.exists(nodeKeys('c3', 3).events)).toBe(0);
    expect(x.node.status().peers.map((p) => p.id)).not.toContain(3);
    await until('another node drops it at its next heartbeat', () => y.node.status().peers.every((p) => p.id !== 3));
  });

  it('stop() lets a registry beat under way finish: no error after it, the alive key gone', async () => {
    const y = startNode(2, 'beat', where(), 'cluster');
    nodes.push(y);
    for (let round = 0; round < 3; round++) {
      const x = startNode(1, 'beat', where(), 'cluster');
      await until('both ready', () => x.node.status().ready && y.node.status().ready);
      // Redis busy for 300 ms (a script that spins), then a heartbeat: its MULTI waits behind
      // the script, and it has the peers' alive keys to read after (a second round trip).
      const spin = redis.eval(
        "local t = redis.call('TIME') while (redis.call('TIME')[1] - t[1]) * 1e6 + redis.call('TIME')[2] - t[2] < 300000 do end return 1",
        0,
      );
      void (x.node as unknown as { beat(): Promise<void> }).beat();
      await x.node.stop();
      await spin;
      expect(x.node.status().lastError, `round ${round}`).toBeUndefined();
      expect(await redis.exists(nodeKeys('beat', 1).alive), `round ${round}`).toBe(0);
    }
  });

  it('a cluster node restarted before its peers take it over restores its own sessions first', async () => {
    const [x, y] = [startNode(1, 'r', where(), 'cluster'), startNode(2, 'r', where(), 'cluster')];
    nodes.push(x, y);
    await until('both ready', () => x.node.status().ready && y.node.status().ready);
    const f = connect(x, V4, 47000);
    await until('y has it', () => y.engine.sessionCount === 1);
    await x.node.stop(); // tunvs on x restarts: a new process, an empty table, the same id
    const x2 = startNode(1, 'r', where(), 'cluster');
    nodes.push(x2);
    await until('x2 ready', () => x2.node.status().ready);
    expect(owners(x2)).toEqual([0]); // its own again, before it announces
    expect(parse(x2.driver.forward(f.C(1001, 7001, ACK | PSH, new Uint8Array(3)))).sport).toBe(f.lport);
    await new Promise((r) => setTimeout(r, 500));
    expect(owners(y)).toEqual([1]); // the peer's copy was not flushed by x2's resync
    expect(await redis.hlen(nodeKeys('r', 1).sessions)).toBe(1);
  });

  it('a node back after its backup adopted its sessions takes back those on its own local addresses; the adopter hands them over', async () => {
    // Regression: the adopter kept them, and alone answered for their expiry while the real
    // servers' replies went to the returned node (its local addresses): it expired them in
    // the middle of their traffic, and its delete removed them from the node that carried it.
    const c = [1, 2, 3].map((id) => startNode(id, 'back', where(), 'cluster'));
    nodes.push(...c);
    await until('all ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 2));
    const flows = [connect(c[0]!, V4, 48000), connect(c[0]!, V6, 48001)];
    await until('every node holds both', () => c.every((n) => n.engine.sessionCount === 2));
    await c[0]!.node.stop();
    const a = c.find((n) => n.id === adopterOf(1, [1, 2, 3], (id) => id !== 1))!;
    const other = c.find((n) => n !== a && n !== c[0])!;
    await until('the backup adopted them', () => owners(a).join() === '0,0');
    await until('node 1’s hash removed', async () => (await redis.exists(nodeKeys('back', 1).sessions)) === 0);
    await until('the third node names the adopter', () => owners(other).join() === `${a.id},${a.id}`);
    // tunvs cluster status says where node 1's addresses (and sessions) went.
    expect(a.node.status().peers.find((p) => p.id === 1)?.holder).toBe(a.id);
    expect(formatHaStatus(a.node.status())).toMatch(/1 \(lb-1\) .*gone .*its addresses: this node/);
    expect(formatHaStatus(other.node.status())).toMatch(new RegExp(`1 \\(lb-1\\) .*its addresses: node ${a.id}`));

    const back = startNode(1, 'back', where(), 'cluster'); // restarted: only the adopter's copies
    nodes.push(back);
    await until('node 1 took them back', () => back.node.status().ready && owners(back).join() === '0,0');
    await until('the adopter handed them over', () => owners(a).join() === '1,1');
    expect(a.node.status().peers.find((p) => p.id === 1)?.holder).toBe(1);
    await until('the third node names node 1 again', () => owners(other).join() === '1,1');
    await until('they left the adopter’s hash', async () => (await redis.hlen(nodeKeys('back', a.id).sessions)) === 0);
    expect(await redis.hlen(nodeKeys('back', 1).sessions)).toBe(2);
    expect(a.engine.counters[C_SYNC_HANDED_OVER]).toBe(2);

    // The adopter's time for them runs out (far past any timeout): its copies go quietly,
    // node 1 keeps forwarding them.
    a.engine.advanceTimers(a.driver.nowMs + 3_000_000);
    expect(a.engine.sessionCount).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    expect(back.engine.sessionCount).toBe(2);
    for (const f of flows)
      expect(parse(back.driver.forward(f.C(1001, 7001, ACK | PSH, new Uint8Array(4)))).sport).toBe(f.lport);
  });

  it("a handover of more sessions than the adopter's sync ring holds waits for the publisher to drain it: nothing lost", async () => {
    // Regression: the reconcile ran inside the tick that publishes, so the ring it waited on
    // was drained by nobody; after 2 s the handovers went on and were lost (a resync followed).
    const c = [1, 2].map((id) =>
      startNode(id, 'ring', where(), 'cluster', 'backup', undefined, {}, id === 2 ? 256 : 4096),
    );
    nodes.push(...c);
    await until('both ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 1));
    for (let i = 0; i < 600; i++) connect(c[0]!, V4, 30000 + i);
    await until('node 2 holds them', () => c[1]!.engine.sessionCount === 600);
    await c[0]!.node.stop();
    await until('node 2 adopted them', () => owners(c[1]!).every((o) => o === 0), 15_000);
    const back = startNode(1, 'ring', where(), 'cluster');
    nodes.push(back);
    await until(
      'node 1 took them back',
      () => owners(back).length === 600 && owners(back).every((o) => o === 0),
      15_000,
    );
    await until('node 2 handed them over', () => owners(c[1]!).every((o) => o === 1), 15_000);
    expect(c[1]!.engine.counters[C_SYNC_HANDED_OVER]).toBe(600);
    expect(c[1]!.node.status().lost).toBe(0);
  }, 40_000);

  it('a node cut off from Redis longer than its alive key is adopted, then takes its sessions back (no node owns them twice)', async () => {
    const proxy = await freezableProxy(server.port);
    const x = startNode(1, 'cut', { url: `redis://127.0.0.1:${proxy.port}` }, 'cluster');
    try {
      const y = startNode(2, 'cut', where(), 'cluster');
      const z = startNode(3, 'cut', where(), 'cluster');
      nodes.push(y, z);
      const c = [x, y, z];
      await until('all ready', () => c.every((n) => n.node.status().ready && n.node.status().peers.length === 2));
      connect(x, V4, 48100);
      connect(x, V6, 48101);
      await until('every node holds both', () => c.every((n) => n.engine.sessionCount === 2));
      const a = c.find((n) => n.id === adopterOf(1, [1, 2, 3], (id) => id !== 1))!;
      const other = c.find((n) => n !== a && n !== x)!;

      proxy.freeze(); // x forwards on, its Redis commands hang: its alive key expires
      await until('x’s backup adopted its sessions', () => owners(a).join() === '0,0', 10_000);
      await until('the third node names the adopter', () => owners(other).join() === `${a.id},${a.id}`);
      expect(owners(x)).toEqual([0, 0]); // x cannot know yet
      proxy.thaw();

      await until('the adopter handed them back', () => owners(a).join() === '1,1', 10_000);
      await until('the third node names x again', () => owners(other).join() === '1,1');
      expect(owners(x)).toEqual([0, 0]);
      await until(
        'only x’s hash has them',
        async () =>
          (await redis.hlen(nodeKeys('cut', a.id).sessions)) === 0 &&
          (await redis.hlen(nodeKeys('cut', 1).sessions)) === 2,
      );
      expect(a.engine.counters[C_SYNC_HANDED_OVER]).toBe(2);
      expect(x.node.status().lastError).toBeUndefined();
    } finally {
      proxy.thaw();
      await x.node.stop(); // through the proxy, before it goes
      await proxy.close();
    }
  });

  it('a rolling upgrade: nodes of an older sync format and this one share sessions, then all move to the newest', async () => {
    // Node 1 plays a node of the version before format 3 (reads and writes format 2 only).
    const old = startNode(1, 'up', where(), 'cluster', 'backup', undefined, { syncFormats: [2, 2] });
    const cur = startNode(2, 'up', where(), 'cluster');
    nodes.push(old, cur);
    await until('both ready', () =>
      [old, cur].every((n) => n.node.status().ready && n.node.status().peers.length === 1),
    );
    await until('the new node publishes what the old one reads', () => cur.node.status().syncFormat === 2);
    expect(cur.node.status().peers[0]!.syncFormats).toEqual([2, 2]);
    connect(old, V4, 47200);
    connect(cur, V4, 47201);
    await until('each holds both', () => old.engine.sessionCount === 2 && cur.engine.sessionCount === 2);
    const bytes = async (id: number) => (await redis.hvalsBuffer(nodeKeys('up', id).sessions)).map((b) => b.length);
    expect(await bytes(2)).toEqual([recordWords(2)! * 4]);
    expect(old.node.status().lastError).toBeUndefined();

    // Node 1 is upgraded: it stops, comes back as this version, restores its format-2 hash.
    await old.node.stop();
    const up = startNode(1, 'up', where(), 'cluster');
    nodes.push(up);
    await until('both publish the newest format', () =>
      [up, cur].every((n) => n.node.status().syncFormat === SYNC_FORMAT && n.node.status().ready),
    );
    await until('the hashes are rewritten in it', async () =>
      [...(await bytes(1)), ...(await bytes(2))].every((b) => b === recordWords(SYNC_FORMAT)! * 4),
    );
    expect(up.engine.sessionCount).toBe(2);
    expect(cur.engine.sessionCount).toBe(2);
    expect([up, cur].map((n) => n.node.status().lastError)).toEqual([undefined, undefined]);
  });

  it("a persistence template leaves the node's hash once it has died (not only at the next resync)", async () => {
    const x = startNode(1, 'tpl', where(), 'cluster', 'backup', { timeoutSec: 1 });
    nodes.push(x);
    // Its first resync too (it follows the first reconcile), before the count is taken.
    await until('ready', () => x.node.status().ready && x.node.status().resyncs >= 1);
    const syn = tcp({ src: V4.client, dst: V4.vip, sport: 47100, dport: 80, seq: 1, flags: SYN });
    x.driver.forward(syn); // a template (published at once) and a session in its handshake (not)
    const key = nodeKeys('tpl', 1).sessions;
    await until('the template in Redis', async () => (await redis.hlen(key)) === 1);
    const resyncs = x.node.status().resyncs; // a resync would drop it too: not what is tested
    x.driver.forward(tcp({ src: V4.client, dst: V4.vip, sport: 47100, dport: 80, seq: 2, flags: RST }));
    // The session ends, the template lives 1 s more, the sweep (TEMPLATE_SWEEP_MS) deletes it.
    for (let t = 100; t <= 60_000; t += 100) x.engine.advanceTimers(t);
    await until('the template gone from Redis', async () => (await redis.hlen(key)) === 0);
    expect(x.node.status()).toMatchObject({ lost: 0, resyncs });
  });

  it('two live nodes with one id: the later one stands down (publishes nothing, not ready) until the id is free', async () => {
    const first = startNode(7, 'dup', where(), 'cluster');
    nodes.push(first);
    await until('the first ready', () => first.node.status().ready);
    connect(first, V4, 47100);
    await until('published', async () => (await redis.hlen(nodeKeys('dup', 7).sessions)) === 1);
    const second = startNode(7, 'dup', where(), 'cluster');
    nodes.push(second);
    await until('the second stands down', () => second.node.status().nodeIdConflict !== undefined, 10_000);
    expect(second.node.status().nodeIdConflict).toMatch(/^lb-7, started /);
    expect(second.node.status().ready).toBe(false);
    expect(second.engine.sessionCount).toBe(0); // it restored nothing of the first's hash
    await new Promise((r) => setTimeout(r, 2500)); // a few heartbeats: the first is untouched
    expect(first.node.status().nodeIdConflict).toBeUndefined();
    expect(first.node.status().ready).toBe(true);
    expect(await redis.hlen(nodeKeys('dup', 7).sessions)).toBe(1);
    expect((JSON.parse((await redis.get(nodeKeys('dup', 7).alive))!) as { token?: string }).token).toBeDefined();
    // The first goes (an orderly stop frees the key): the second claims the id and restores.
    await first.node.stop();
    await until('the second ready', () => second.node.status().ready, 10_000);
    expect(second.node.status().nodeIdConflict).toBeUndefined();
    expect(second.engine.sessionCount).toBe(1);
  });

  it('a peer with another ISN key is named (log, ha status) until it has the same again', async () => {
    logged.length = 0;
    const a = startNode(1, 'isn', where(), 'cluster', 'backup', undefined, { isnKeyId: 'aaaa' });
    let b = startNode(2, 'isn', where(), 'cluster', 'backup', undefined, { isnKeyId: 'bbbb' });
    const older = startNode(3, 'isn', where(), 'cluster'); // a version that registers no key
    nodes.push(a, b, older);
    const peer = (n: TestNode, id: number) => n.node.status().peers.find((p) => p.id === id);
    await until('a sees both peers', () => peer(a, 2) !== undefined && peer(a, 3) !== undefined);
    await until('a compares keys', () => peer(a, 2)?.sameIsnKey !== undefined);
    expect(peer(a, 2)!.sameIsnKey).toBe(false);
    expect(peer(b, 1)!.sameIsnKey).toBe(false);
    expect(peer(a, 3)!.sameIsnKey).toBeUndefined(); // it does not say: nothing is claimed
    expect(peer(older, 1)!.sameIsnKey).toBeUndefined(); // nor by it
    const text = formatHaStatus(a.node.status());
    expect(text).toMatch(/2 \(lb-2\).*ANOTHER ISN KEY \(isn\.secret differs\)/);
    expect(text).not.toMatch(/3 \(lb-3\).*ANOTHER ISN KEY/);
    await new Promise((r) => setTimeout(r, 2500)); // a few heartbeats: named once, not every beat
    const named = logged.filter((l) => l.startsWith('error HA: node 2 (lb-2) has another ISN key than this node'));
    expect(named).toHaveLength(1);
    expect(named[0]).toContain('give every node of cluster isn the same isn.secret');
    expect(logged.filter((l) => l.startsWith('error HA: node 1 (lb-1) has another ISN key'))).toHaveLength(1);
    expect(logged.some((l) => l.includes('node 3 (lb-3) has another ISN key'))).toBe(false);
    // Restarted with the right secret: said once, and the status agrees.
    await b.node.stop();
    nodes.splice(nodes.indexOf(b), 1);
    b = startNode(2, 'isn', where(), 'cluster', 'backup', undefined, { isnKeyId: 'aaaa' });
    nodes.push(b);
    await until("a sees b's new key", () => peer(a, 2)?.sameIsnKey === true);
    expect(logged.filter((l) => l === "info HA: node 2 (lb-2) has this node's ISN key now")).toHaveLength(1);
    expect(formatHaStatus(a.node.status())).not.toContain('ANOTHER ISN KEY');
  });

  it('a pair is the same code with roles: promotion adopts and republishes under its own keys', async () => {
    const a = startNode(1, 'p', where(), 'pair', 'master');
    const b = startNode(2, 'p', where(), 'pair', 'backup');
    nodes.push(a, b);
    await until('b ready', () => b.node.status().ready && b.node.status().peers.length === 1);
    expect(b.node.status()).toMatchObject({ role: 'backup', forwarding: false, publishing: false });
    const f = connect(a, V4, 45000);
    await until('b installed', () => b.engine.sessionCount === 1);
    expect(owners(b)).toEqual([1]);

    // A dies; keepalived makes B master.
    await a.node.stop();
    b.node.setRole('master');
    await until('b republished', async () => (await redis.hlen(nodeKeys('p', 2).sessions)) === 1);
    expect(owners(b)).toEqual([0]);
    expect(await redis.hlen(nodeKeys('p', 1).sessions)).toBe(1); // A's keys are A's
    const pkt = f.C(1001, 7001, ACK | PSH, new Uint8Array(10));
    expect(parse(b.driver.forward(pkt)).sport).toBe(f.lport);

    // A returns as the standby and loads B's sessions, now B's.
    const a2 = startNode(1, 'p', where(), 'pair', 'backup');
    nodes.push(a2);
    await until('a2 ready with the session', () => a2.node.status().ready && a2.engine.sessionCount === 1);
    expect(owners(a2)).toEqual([2]);
    // A's hash held what it published as master; B has published since: A drops it (B's
    // hash carries the session now).
    await until("A's old hash dropped", async () => (await redis.exists(nodeKeys('p', 1).sessions)) === 0);
    expect(await redis.hlen(nodeKeys('p', 2).sessions)).toBe(1);
    // B's change (a FIN) reaches A.
    b.driver.forward(f.C(1011, 7001, ACK | 1));
    await until('a2 sees FIN_WAIT', () => a2.engine.describe([...a2.engine.sessionIds()][0]!).state !== 'ESTABLISHED');

    // Failback: A master again (adopts, republishes), B standby: B's hash goes the same way,
    // and B, following A, keeps the session. B stands by once its young sessions are out,
    // after the tick below: its engine reads the role words again at each install (else it
    // kept its own record against A's).
    a2.node.setRole('master');
    b.node.setRole('backup');
    for (const n of [a2, b]) n.engine.advanceTimers(n.driver.nowMs); // the role words, as a forwarder's tick
    await until('a2 republished', async () => (await redis.hlen(nodeKeys('p', 1).sessions)) === 1);
    await until("B's hash dropped", async () => (await redis.exists(nodeKeys('p', 2).sessions)) === 0);
    await until('b holds it as A’s', () => b.engine.sessionCount === 1 && owners(b)[0] === 1);
    expect(owners(a2)).toEqual([0]);
  });

  it('a split (both master a while): the one that stays master adopts what the other made meanwhile once it stands down', async () => {
    const a = startNode(1, 's', where(), 'pair', 'master');
    const b = startNode(2, 's', where(), 'pair', 'backup');
    nodes.push(a, b);
    await until('b ready', () => b.node.status().ready && b.node.status().peers.length === 1);
    const f1 = connect(a, V4, 45100);
    await until('b installed', () => b.engine.sessionCount === 1);

    // A's keepalived stalls: B's takes the next hops and makes B master; A is master still.
    b.node.setRole('master');
    b.engine.advanceTimers(b.driver.nowMs);
    await until('b republished', async () => (await redis.hlen(nodeKeys('s', 2).sessions)) === 1);
    const f2 = connect(b, V4, 45101); // made on B during the split
    await until('a holds B’s new session as a copy', () => a.engine.sessionCount === 2);
    expect(owners(a)).toEqual([0, 2]);

    // A's keepalived is back with the higher priority: B stands down, A never moved.
    b.node.setRole('backup');
    b.engine.advanceTimers(b.driver.nowMs);
    await until("a adopted B's", () => owners(a).join() === '0,0');
    await until("a's hash carries both", async () => (await redis.hlen(nodeKeys('s', 1).sessions)) === 2);
    await until("b's hash dropped", async () => (await redis.exists(nodeKeys('s', 2).sessions)) === 0);
    expect(a.node.status().roleChanges).toBe(0);
    expect(b.node.status().roleChanges).toBe(2);
    // Adopted once: B's last entry stays in its stream, and is no new split at A's next beats
    // (each beat adopted it again and resynced: B reloaded A's hash every second).
    const resyncs = a.node.status().resyncs;
    const loads = b.node.status().snapshotsLoaded;
    await new Promise((r) => setTimeout(r, 3500));
    expect(a.node.status().resyncs).toBe(resyncs);
    expect(b.node.status().snapshotsLoaded).toBe(loads);
    // Both connections go on through A with their own local ports.
    expect(parse(a.driver.forward(f1.C(1001, 7001, ACK | PSH, new Uint8Array(10)))).sport).toBe(f1.lport);
    expect(parse(a.driver.forward(f2.C(1001, 7001, ACK | PSH, new Uint8Array(10)))).sport).toBe(f2.lport);
  });

  // A planned switch: keepalived moves the next hops to the peer (the master's keepalived
  // stopped, or the peer preempting it) with both tunvs running. The master publishes what it
  // had not yet (sessions younger than syncAfterMs) as it stands down, in either order of the
  // two notifies; the new master carries those connections on and owns them.
  for (const order of ['the master stands down first', 'the peer is master first'] as const) {
    it(`a planned switch (${order}): sessions younger than syncAfterMs go on through the new master, which owns them`, async () => {
      const cluster = order === 'the master stands down first' ? 'y1' : 'y2';
      const a = startNode(1, cluster, where(), 'pair', 'master', undefined, {}, 4096, 1, 60_000);
      const b = startNode(2, cluster, where(), 'pair', 'backup', undefined, {}, 4096, 1, 60_000);
      nodes.push(a, b);
      await until('b ready', () => b.node.status().ready && b.node.status().peers.length === 1);
      const f4 = connect(a, V4, 45200);
      const f6 = connect(a, V6, 45201);
      // Two handshakes under way: the client's SYN sent on (SYN_RECV), and the server's
      // SYN-ACK passed back too (SYNACK).
      const H = (sport: number, seq: number, ack: number, flags: number) =>
        tcp({ src: V4.client, dst: V4.vip, sport, dport: 80, seq, ack, flags });
      const synRecv = parse(a.driver.forward(H(45202, 1000, 0, SYN)));
      const synAck = parse(a.driver.forward(H(45203, 1000, 0, SYN)));
      const synAckOut = parse(
        a.driver.forward(
          tcp({
            src: V4.rs1,
            dst: a.lip4,
            sport: 8080,
            dport: synAck.sport,
            seq: 7000,
            ack: synAck.seq + 1,
            flags: SYN | ACK,
          }),
        ),
      );
      await new Promise((r) => setTimeout(r, 400)); // a few publisher ticks: nothing goes (too young)
      expect(b.engine.sessionCount).toBe(0);

      const promote = (): void => {
        b.node.setRole('master');
        b.engine.advanceTimers(b.driver.nowMs);
      };
      if (order === 'the peer is master first') promote();
      a.node.setRole('backup');
      expect(a.node.status()).toMatchObject({ forwarding: false }); // at once: the peer has the next hops
      await until('a stood by', () => !a.node.status().publishing);
      a.engine.advanceTimers(a.driver.nowMs);
      expect(a.engine.counters[C_SYNC_STAND_DOWN]).toBe(4);
      await until('b holds all four', () => b.engine.sessionCount === 4);
      if (order === 'the master stands down first') promote();
      await until('b owns them (adopted)', () => owners(b).join() === '0,0,0,0');
      await until("b's hash carries them", async () => (await redis.hlen(nodeKeys(cluster, 2).sessions)) === 4);
      // The connections go on through B with the local ports A gave them.
      expect(parse(b.driver.forward(f4.C(1001, 7001, ACK | PSH, new Uint8Array(10)))).sport).toBe(f4.lport);
      expect(parse(b.driver.forward(f6.C(1001, 7001, ACK | PSH, new Uint8Array(10)))).sport).toBe(f6.lport);
      // So do the handshakes: the server's SYN-ACK reaches the client as A would have passed
      // it, the client's ACK (and its request) the server.
      const viaB = parse(
        b.driver.forward(
          tcp({
            src: V4.rs1,
            dst: a.lip4,
            sport: 8080,
            dport: synRecv.sport,
            seq: 7000,
            ack: synRecv.seq + 1,
            flags: SYN | ACK,
          }),
        ),
      );
      expect([viaB.src, viaB.dst, viaB.sport, viaB.dport, viaB.ack]).toEqual([V4.vip, V4.client, 80, 45202, 1001]);
      for (const [sport, lport, serverIsn] of [
        [45202, synRecv.sport, viaB.seq],
        [45203, synAck.sport, synAckOut.seq],
      ] as const) {
        const req = parse(b.driver.forward(H(sport, 1001, serverIsn + 1, ACK | PSH)));
        expect([req.dst, req.sport, req.dport]).toEqual([V4.rs1, lport, 8080]);
      }
      // A, standing by, follows B: its own records become B's copies.
      await until('a holds them as B’s', () => owners(a).join() === '2,2,2,2');
    });
  }
});

describe('HA nodes through Redis Sentinel', () => {
  const procs: LocalRedis[] = [];
  const nodes: TestNode[] = [];
  afterAll(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.node.stop()));
    await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')));
  });

  it('the primary dies: Sentinel promotes the replica, sync resumes by itself, lost events are repaired', async () => {
    const primary = await startLocalRedis();
    procs.push(primary);
    const replica = await startLocalRedis({ replicaOf: primary.port });
    procs.push(replica);
    const sentinel = await startLocalSentinel({ primaryPort: primary.port, name: 'tunvs', downAfterMs: 1000 });
    procs.push(sentinel);
    const where: HaRedis = { sentinel: { name: 'tunvs', addresses: [{ host: '127.0.0.1', port: sentinel.port }] } };
    const [n1, n2] = [startNode(1, 's', where, 'cluster'), startNode(2, 's', where, 'cluster')];
    nodes.push(n1, n2);
    await until('both ready', () => n1.node.status().ready && n2.node.status().peers.some((p) => p.loaded));
    expect(n1.node.status().redisServer).toBe(`127.0.0.1:${primary.port}`);
    connect(n1, V4, 46000);
    await until('n2 has the first session', () => n2.engine.sessionCount === 1);

    await primary.stop('SIGKILL');
    const killedAt = Date.now();
    // Forwarding goes on through the outage; this session's events cannot be published now.
    const during = connect(n1, V4, 46001);
    expect(n1.engine.forwarding && n2.engine.forwarding).toBe(true);
    await until(
      'both nodes on the promoted replica',
      () => [n1, n2].every((n) => n.node.status().redisServer === `127.0.0.1:${replica.port}`),
      30_000,
    );
    const failoverMs = Date.now() - killedAt;
    await until('the session made during the outage reached n2 (resync)', () => n2.engine.sessionCount === 2, 10_000);
    expect(n1.node.status().lost + n1.node.status().resyncs).toBeGreaterThan(0);
    expect(parse(n1.driver.forward(during.C(1001, 7001, ACK | PSH, new Uint8Array(4)))).sport).toBe(during.lport);

    // Sync lag back under a second: a new session arrives at once.
    const t0 = Date.now();
    connect(n1, V4, 46002);
    await until('n2 has the new session', () => n2.engine.sessionCount === 3, 5000);
    const lagMs = Date.now() - t0;
    expect(lagMs).toBeLessThan(1000);
    expect(n2.node.status().syncLagMs!).toBeLessThan(1000);
    console.log(
      `sentinel failover: nodes on the new primary ${failoverMs} ms after the kill; sync lag after ${lagMs} ms`,
    );
  }, 60_000);
});
