/**
 * HA session sync between two engines, without Redis: a connection established on the
 * master, published after syncAfter, installed on the standby, goes on through the standby
 * (after it becomes master) with exactly the rewriting the master would have done.
 */

import { describe, expect, it } from 'vitest';
import { SESSION_SHARDS, SYNC_RING_WAIT_MS, TEMPLATE_SWEEP_MS } from '../../src/constants.js';
import type { Engine } from '../../src/dataplane/engine.js';
import { R_IN_PORTS, R_OUT_PORTS, RECORD_WORDS } from '../../src/conn/layout.js';
import { HaControl } from '../../src/ha/role.js';
import {
  EVENT_WORDS,
  OP_DELETE,
  OP_HANDOVER,
  OP_UPSERT,
  SYNC_FORMAT,
  SYNC_NODE_WORD,
  SyncRing,
  syncIsTemplate,
  syncKey,
  syncOwnerWorker,
} from '../../src/ha/session_sync.js';
import { eventsFromWire, eventsToWire } from '../../src/ha/sync_format.js';
import { clientShard, clientWorker } from '../../src/dataplane/shard.js';
import { shardPortCount, shardPortFirst } from '../../src/service/laddr.js';
import { parseAddress } from '../../src/service/addr.js';
import { DROP_STANDBY, VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { C_SYNC_TAKEN } from '../../src/dataplane/counters.js';
import { Driver, labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import { BACKUP, drain, haEngine, MASTER, promote, snapshotEvents } from '../helpers/ha.js';
import { IdRegistry, resolveServices, serviceWithDefaults, templateNamesMoved } from '../../src/service/service.js';

/** The four address words of `text` (IPv4: word 0 only). */
function clientWords(text: string): [number, number, number, number] {
  const w = parseAddress(text)!.words;
  return [w[0]!, w[1] ?? 0, w[2] ?? 0, w[3] ?? 0];
}

const d = (drv: Driver) => drv.session();

/** The one service of a test of NAT or TUNNEL: port 80 to rs1 (TUNNEL keeps the port; its
 * local address is the tunnel's outer source). */
function modeService(fam: typeof V4 | typeof V6, mode: 'nat' | 'tunnel') {
  return resolveServices(
    [
      serviceWithDefaults({
        vip: fam.vip,
        port: 80,
        mode,
        realServers: [{ address: fam.rs1, port: mode === 'tunnel' ? 80 : 8080, weight: 1 }],
        localAddresses: mode === 'tunnel' ? [fam.lip] : [],
      }),
    ],
    new IdRegistry(),
  );
}
import { ACK, opt, parse, PSH, RST, SYN, tcp } from '../helpers/packets.js';

/** A session from client port `sport` established on master `a` (syncAfterMs 0),
 * published, and its events drained from the ring. */
function establishAndDrain(
  a: { engine: Engine; ring: SyncRing },
  sport: number,
  fam: typeof V4 | typeof V6 = V4,
): { events: Int32Array; n: number } {
  const da = new Driver(a.engine);
  const synOut = parse(
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq: 1, ack: 0, flags: SYN })),
  );
  const s = da.session();
  da.forward(
    tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq: 5, ack: synOut.seq + 1, flags: SYN | ACK }),
  );
  da.forward(tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq: 2, ack: 6, flags: ACK }));
  da.nowMs = 200;
  a.engine.advanceTimers(da.nowMs);
  return drain(a.ring);
}

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('HA sync %s', (_n, fam) => {
  it('a promoted standby hands out local ports from where the port sweep stands, past the old master', async () => {
    const b = haEngine(BACKUP);
    const db = new Driver(b.engine);
    db.nowMs = 30_000;
    b.engine.advanceTimers(db.nowMs); // standing by for 30 s
    await promote(b);
    const out = parse(db.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50001, dport: 80, seq: 1, flags: SYN })));
    // Half-way through the client's shard's ports, not the first one it started with.
    const shard = clientShard(...clientWords(fam.client), 50001);
    expect(out.sport).toBe(shardPortFirst(shard) + Math.floor(shardPortCount(shard) / 2) * SESSION_SHARDS);
  });

  it('an ESTABLISHED session is published after syncAfter and continues on the standby', async () => {
    const a = haEngine(MASTER);
    const b = haEngine(BACKUP);
    const da = new Driver(a.engine);
    const db = new Driver(b.engine);
    const C = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: 80, seq, ack, flags, ...extra });

    const synOut = parse(da.forward(C(1000, 0, SYN, { options: opt.mss(1460) })));
    const s = da.session();
    const R = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq, ack, flags, ...extra });
    da.forward(R(9000, synOut.seq + 1, SYN | ACK, { options: opt.mss(1460) }));
    da.forward(C(1001, 9001, ACK));
    expect(a.ring.pending, 'not before syncAfter').toBe(0);

    da.nowMs = 2100;
    a.engine.advanceTimers(da.nowMs);
    expect(a.ring.pending).toBe(1);
    const { events, n } = drain(a.ring);
    expect(events[0]).toBe(OP_UPSERT);

    // The standby installs it but forwards nothing while it is BACKUP.
    expect(b.engine.installSynced(events, n)).toEqual({
      installed: 1,
      updated: 0,
      deleted: 0,
      failed: 0,
      conflicts: 0,
      replaced: 0,
      handedOver: 0,
    });
    expect(db.drop(C(1001, 9001, ACK))).toBe(DROP_STANDBY);
    const sb = db.session();
    expect(sb).toMatchObject({
      state: 'ESTABLISHED',
      lport: s.lport,
      laddr: s.laddr,
      seqDelta: s.seqDelta,
      rsIsnPlus1: 9001,
      synced: true,
    });

    // Failover: the same packets now give the same bytes on B as they do on A.
    await promote(b);
    const req = new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n');
    const pkt = C(1001, 9001, ACK | PSH, { payload: req });
    const outA = da.forward(pkt);
    const outB = db.forward(pkt);
    expect(Buffer.from(outB)).toEqual(Buffer.from(outA)); // incl. the TOA (ack == rs_isn + 1)
    expect(parse(outB).options.slice(0, 2)).toEqual([254, fam === V4 ? 8 : 20]);
    const resp = R(9001, synOut.seq + 1 + req.length, ACK | PSH, { payload: new Uint8Array(100).fill(66) });
    expect(Buffer.from(db.forward(resp))).toEqual(Buffer.from(da.forward(resp)));

    // B, now master, publishes its own changes (the session is B's since the promotion)...
    const fin = C(1001 + req.length, 9101, ACK | 1);
    db.forward(fin);
    expect(b.ring.pending).toBe(1); // state change → upsert
    // ...and a late word from A cannot delete or overwrite what B owns and publishes.
    const del = new Int32Array(EVENT_WORDS);
    a.ring.push(OP_DELETE, a.engine.table.rec, s.id * RECORD_WORDS, 1);
    a.ring.drain(del, 1);
    expect(b.engine.installSynced(del, 1)).toMatchObject({ deleted: 0, conflicts: 1 });
    expect([...b.engine.sessionIds()].length).toBe(1);
  });

  it('a session the SYN proxy made continues on the standby with both sequence and timestamp spaces', async () => {
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP, 0);
    for (const e of [a.engine, b.engine])
      e.applyServices(resolveServices(labServices({ synProxy: 'on' }), new IdRegistry()));
    const da = new Driver(a.engine);
    const db = new Driver(b.engine);
    const C = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.client, dst: fam.vip, sport: 50001, dport: 80, seq, ack, flags, ...extra });
    const ts = (val: number, ecr: number) => [...opt.nop(), ...opt.nop(), ...opt.ts(val, ecr)];
    const synAck = parse(da.forward(C(1000, 0, SYN, { options: [...opt.mss(1460), ...ts(5000, 0)] })));
    const cts = new DataView(Uint8Array.from(synAck.options).buffer).getUint32(synAck.options.indexOf(8) + 2);
    const syn = parse(da.forward(C(1001, synAck.seq + 1, ACK, { options: ts(5001, cts) })));
    const s = da.session();
    const R = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq, ack, flags, ...extra });
    da.forward(R(9000, syn.seq + 1, SYN | ACK, { options: ts(70, 1) }));
    a.engine.clearEmitted();
    da.nowMs = 100;
    a.engine.advanceTimers(da.nowMs);
    const { events, n } = drain(a.ring);
    expect(b.engine.installSynced(events, n)).toMatchObject({ installed: 1, failed: 0 });
    expect(db.session()).toMatchObject({ proxied: true, srvDelta: d(da).srvDelta, tsDelta: d(da).tsDelta });
    await promote(b);
    const req = C(1001, synAck.seq + 1, ACK | PSH, { payload: new Uint8Array(20).fill(7), options: ts(5010, cts + 3) });
    expect(Buffer.from(db.forward(req))).toEqual(Buffer.from(da.forward(req)));
    const resp = R(9001, syn.seq + 21, ACK | PSH, {
      payload: new Uint8Array(30).fill(9),
      options: ts(80, 5010 + d(da).tsDelta),
    });
    expect(Buffer.from(db.forward(resp))).toEqual(Buffer.from(da.forward(resp)));
  });

  it.each(['nat', 'tunnel'] as const)(
    'a %s session continues on the standby, in the worker its packets go to',
    async (mode) => {
      const specs = modeService(fam, mode);
      const a = haEngine(MASTER, 0);
      const b = haEngine(BACKUP, 0);
      for (const e of [a.engine, b.engine]) e.applyServices(specs);
      const da = new Driver(a.engine);
      const db = new Driver(b.engine);
      const C = (seq: number, ack: number, flags: number, extra: object = {}) =>
        tcp({ src: fam.client, dst: fam.vip, sport: 50002, dport: 80, seq, ack, flags, ...extra });
      da.forward(C(1000, 0, SYN));
      if (mode === 'nat')
        da.forward(
          tcp({ src: fam.rs1, dst: fam.client, sport: 8080, dport: 50002, seq: 9000, ack: 1001, flags: SYN | ACK }),
        );
      da.forward(C(1001, 9001, ACK));
      expect(da.session().state).toBe('ESTABLISHED');
      da.nowMs = 100;
      a.engine.advanceTimers(da.nowMs);
      const { events, n } = drain(a.ring);
      expect(n).toBe(1);
      // The follower sends the record to the worker the client's packets go to.
      for (const workers of [2, 3, 5])
        expect(syncOwnerWorker(events, 1, workers)).toBe(clientWorker(...clientWords(fam.client), 50002, workers));
      expect(b.engine.installSynced(events, n)).toMatchObject({ installed: 1, failed: 0 });
      expect(db.session()).toMatchObject({ mode, state: 'ESTABLISHED', synced: true });
      await promote(b);
      const req = C(1001, 9001, ACK | PSH, { payload: new Uint8Array(20).fill(7) });
      expect(Buffer.from(db.forward(req))).toEqual(Buffer.from(da.forward(req)));
      if (mode === 'nat') {
        const resp = tcp({
          src: fam.rs1,
          dst: fam.client,
          sport: 8080,
          dport: 50002,
          seq: 9001,
          ack: 1021,
          flags: ACK,
        });
        expect(Buffer.from(db.forward(resp))).toEqual(Buffer.from(da.forward(resp)));
      }
      // And the peer's delete finds it by the key it has (TUNNEL: the IN key).
      const del = new Int32Array(EVENT_WORDS);
      b.control.set(false, false);
      b.engine.sync!.active = false;
      a.ring.push(OP_DELETE, a.engine.table.rec, da.session().id * RECORD_WORDS, 1);
      a.ring.drain(del, 1);
      expect(b.engine.installSynced(del, 1).deleted).toBe(1);
    },
  );

  it('a persistence template reaches the standby: after the failover the client keeps its server', async () => {
    const rs3 = fam === V4 ? '198.18.1.13' : 'fd00:18:1::13';
    const specs = resolveServices(
      [
        serviceWithDefaults({
          vip: fam.vip,
          port: 80,
          scheduler: 'rr',
          realServers: [fam.rs1, fam.rs2, rs3].map((address) => ({ address, port: 8080, weight: 1 })),
          localAddresses: [fam.lip],
          persistence: { timeoutSec: 120, netmask: 32, prefix6: 128 },
        }),
      ],
      new IdRegistry(),
    );
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP, 0);
    for (const e of [a.engine, b.engine]) e.applyServices(specs);
    const syn = (sport: number, src = fam.client) => tcp({ src, dst: fam.vip, sport, dport: 80, seq: 1, flags: SYN });
    const da = new Driver(a.engine);
    // Another client takes rr's first turn on A: ours goes to the second server.
    const first = parse(da.forward(syn(50000, fam === V4 ? '198.18.101.9' : 'fd00:18:65::9'))).dst;
    const server = parse(da.forward(syn(50010))).dst;
    expect(server).not.toBe(first);
    const { events, n } = drain(a.ring);
    expect(n).toBe(2); // the two templates (the sessions are not ESTABLISHED)
    expect(b.engine.installSynced(events, n)).toMatchObject({ installed: 2, failed: 0 });
    expect(b.engine.templates.list(0).map((t) => t.sessions)).toEqual([0, 0]);
    await promote(b);
    const db = new Driver(b.engine);
    // rr on B would start at its first server; the template sends the client where it was.
    for (let p = 0; p < 4; p++) expect(parse(db.forward(syn(50020 + p))).dst).toBe(server);
    // Republished only when due (half the timeout), not per connection.
    expect(drain(b.ring).n).toBe(1);
  });

  /** A service of persistence group "shop" at VIP:`port`, rr over three servers at `rport`. */
  const member = (port: number, rport: number) =>
    serviceWithDefaults({
      vip: fam.vip,
      port,
      scheduler: 'rr',
      realServers: [fam.rs1, fam.rs2, fam === V4 ? '198.18.1.13' : 'fd00:18:1::13'].map((address) => ({
        address,
        port: rport,
        weight: 1,
      })),
      localAddresses: [fam.lip],
      persistence: { timeoutSec: 120, netmask: 32, prefix6: 128, group: 'shop' },
    });

  it("a persistence group's template, made by any of its services, reaches the standby under the group's first one", async () => {
    const specs = resolveServices([member(80, 8080), member(443, 8443)], new IdRegistry());
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP, 0);
    for (const e of [a.engine, b.engine]) e.applyServices(specs);
    const syn = (dport: number, sport: number, src = fam.client) =>
      tcp({ src, dst: fam.vip, sport, dport, seq: 1, flags: SYN });
    const da = new Driver(a.engine);
    da.forward(syn(443, 50000, fam === V4 ? '198.18.101.9' : 'fd00:18:65::9'));
    const server = parse(da.forward(syn(443, 50010))).dst; // the 443 service makes the template
    const { events, n } = drain(a.ring);
    expect(n).toBe(2);
    // Named by the group's first service (port 80), the server by its address and port 8443.
    expect(events[1 + R_IN_PORTS]! & 0xffff).toBe(80);
    expect(events[1 + R_OUT_PORTS]! >>> 16).toBe(8443);
    expect(b.engine.installSynced(events, n)).toMatchObject({ installed: 2, failed: 0 });
    await promote(b);
    const db = new Driver(b.engine);
    for (const [port, sport] of [
      [80, 50020],
      [443, 50021],
    ] as const)
      expect(parse(db.forward(syn(port, sport))).dst).toBe(server);
  });

  it('a persistence group whose first service is removed keeps its templates, named to peers by the next one', async () => {
    const ids = new IdRegistry();
    const both = resolveServices([member(80, 8080), member(443, 8443)], ids);
    const a = haEngine(MASTER, 0);
    a.engine.applyServices(both);
    const syn = (dport: number, sport: number, src = fam.client) =>
      tcp({ src, dst: fam.vip, sport, dport, seq: 1, flags: SYN });
    const da = new Driver(a.engine);
    // Another client takes rr's first turn of the 443 service: a new template there would
    // not come back to our client's server.
    da.forward(syn(443, 50000, fam === V4 ? '198.18.101.9' : 'fd00:18:65::9'));
    const server = parse(da.forward(syn(80, 50010))).dst;
    drain(a.ring);
    // The 80 service, which named the group's templates, leaves.
    const only443 = resolveServices([member(443, 8443)], ids);
    expect(templateNamesMoved(both, only443)).toBe(true);
    a.engine.applyServices(only443);
    expect(parse(da.forward(syn(443, 50011))).dst).toBe(server);
    // The resync the move asks for names the template by the 443 service, which a peer that
    // has only that service installs.
    const { events, n } = await snapshotEvents(a.engine);
    const tpl = Array.from({ length: n }, (_, i) => 1 + i * EVENT_WORDS).filter((at) => syncIsTemplate(events, at));
    expect(tpl.map((at) => events[at + R_IN_PORTS]! & 0xffff)).toEqual([443, 443]);
    const b = haEngine(BACKUP, 0, 3);
    b.engine.applyServices(resolveServices([member(443, 8443)], new IdRegistry()));
    expect(b.engine.installSynced(events, n).failed).toBe(0);
    await promote(b);
    expect(parse(new Driver(b.engine).forward(syn(443, 50012))).dst).toBe(server);
    // A member joining, or one that names nothing leaving, moves no name.
    const again = resolveServices([member(443, 8443), member(8443, 8443)], ids);
    expect(templateNamesMoved(only443, again)).toBe(false);
    expect(templateNamesMoved(again, only443)).toBe(false);
  });

  it("a full resync's snapshot carries the live templates this node published: a node loading it keeps the client's server", async () => {
    const specs = resolveServices(
      [
        serviceWithDefaults({
          vip: fam.vip,
          port: 80,
          scheduler: 'rr',
          realServers: [fam.rs1, fam.rs2].map((address) => ({ address, port: 8080, weight: 1 })),
          localAddresses: [fam.lip],
          persistence: { timeoutSec: 5, netmask: 32, prefix6: 128 },
        }),
      ],
      new IdRegistry(),
    );
    const a = haEngine(MASTER, 0);
    a.engine.applyServices(specs);
    const da = new Driver(a.engine);
    const syn = (sport: number, flags = SYN) => tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq: 1, flags });
    const other = fam === V4 ? '198.18.101.9' : 'fd00:18:65::9';
    const first = parse(da.forward(tcp({ src: other, dst: fam.vip, sport: 50000, dport: 80, seq: 1, flags: SYN }))).dst;
    const server = parse(da.forward(syn(50010))).dst;
    expect(server).not.toBe(first); // rr's second turn: not where a fresh scheduler starts
    drain(a.ring);
    const loaded = async (nowMs: number) => {
      const { events, n } = await snapshotEvents(a.engine);
      const c = haEngine(BACKUP, 0, 3);
      c.engine.applyServices(specs);
      c.engine.advanceTimers(nowMs);
      c.engine.installSynced(events, n);
      return { c, templates: c.engine.templates.list(nowMs).length };
    };
    const { c, templates } = await loaded(0);
    expect(templates).toBe(2); // both clients' templates (their sessions are not ESTABLISHED)
    await promote(c);
    expect(parse(new Driver(c.engine).forward(syn(50020))).dst).toBe(server);
    // Dead (no session for its timeout): no longer in a snapshot.
    da.forward(syn(50010, RST));
    for (let t = 100; t <= 10_000; t += 100) a.engine.advanceTimers(t);
    expect((await loaded(10_000)).templates).toBe(1);
  });

  /** Master A with one persistent service (templates kept 2 s) after the client's SYN: its
   * template published, the upsert drained. */
  const templateOnMaster = () => {
    const specs = resolveServices(
      [
        serviceWithDefaults({
          vip: fam.vip,
          port: 80,
          realServers: [{ address: fam.rs1, port: 8080, weight: 1 }],
          localAddresses: [fam.lip],
          persistence: { timeoutSec: 2, netmask: 32, prefix6: 128 },
        }),
      ],
      new IdRegistry(),
    );
    const a = haEngine(MASTER, 0);
    a.engine.applyServices(specs);
    const da = new Driver(a.engine);
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: 80, seq: 1, flags: SYN }));
    const up = drain(a.ring);
    expect(up.n).toBe(1);
    return { a, da, up, specs };
  };

  it('a dead template this node published is deleted from Redis by its key after its timeout (the sweep)', () => {
    const { a, da, up } = templateOnMaster();
    expect(up.events[0]).toBe(OP_UPSERT);
    expect(syncIsTemplate(up.events, 1)).toBe(true);
    // The client gives up; when its session has gone the template has 2 s, then the sweep
    // (the whole table every TEMPLATE_SWEEP_MS) deletes it.
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: 80, seq: 2, flags: RST }));
    let sessionGoneAt = -1;
    let deletedAt = -1;
    let del: Int32Array | undefined;
    for (let t = 100; t <= 120_000 && deletedAt < 0; t += 100) {
      a.engine.advanceTimers(t);
      if (sessionGoneAt < 0 && a.engine.sessionCount === 0) sessionGoneAt = t;
      const ev = drain(a.ring);
      if (ev.n > 0) {
        expect(ev.n).toBe(1);
        del = ev.events;
        deletedAt = t;
      }
    }
    expect(sessionGoneAt).toBeGreaterThan(0);
    expect(deletedAt).toBeGreaterThanOrEqual(sessionGoneAt + 2000);
    expect(deletedAt).toBeLessThanOrEqual(sessionGoneAt + 2000 + TEMPLATE_SWEEP_MS + 200);
    expect(del![0]).toBe(OP_DELETE);
    expect(syncIsTemplate(del!, 1)).toBe(true);
    // The publisher HDELs the field it HSET: the same key.
    expect([...syncKey(del!, 1, new Int32Array(10))]).toEqual([...syncKey(up.events, 1, new Int32Array(10))]);
    // Deleted once.
    for (let t = deletedAt + 100; t <= deletedAt + 2 * TEMPLATE_SWEEP_MS; t += 100) a.engine.advanceTimers(t);
    expect(drain(a.ring).n).toBe(0);
  });

  it("a removed service's dead template is deleted from Redis too (named by the service's tombstone)", () => {
    const { a, da, up, specs } = templateOnMaster();
    // A node that removed the service takes no templates of it (it makes no new sessions).
    const b = haEngine(BACKUP, 0);
    b.engine.applyServices(specs);
    b.engine.applyServices([]);
    expect(b.engine.installSynced(up.events, up.n)).toMatchObject({ installed: 0, failed: 1 });
    a.engine.applyServices([]); // the service is removed; its session runs on
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: 80, seq: 2, flags: RST }));
    let del: Int32Array | undefined;
    for (let t = 100; t <= 60_000 && !del; t += 100) {
      a.engine.advanceTimers(t);
      const ev = drain(a.ring);
      if (ev.n > 0) del = ev.events;
    }
    expect(del![0]).toBe(OP_DELETE);
    expect([...syncKey(del!, 1, new Int32Array(10))]).toEqual([...syncKey(up.events, 1, new Int32Array(10))]);
  });

  it("the peer's delete removes the standby's copy", () => {
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP);
    const { events, n } = establishAndDrain(a, 4242, fam);
    expect(b.engine.installSynced(events, n).installed).toBe(1);
    const del = new Int32Array(EVENT_WORDS);
    a.ring.push(OP_DELETE, a.engine.table.rec, new Driver(a.engine).session().id * RECORD_WORDS, 1);
    a.ring.drain(del, 1);
    expect(b.engine.installSynced(del, 1).deleted).toBe(1);
    expect([...b.engine.sessionIds()]).toEqual([]);
  });

  it('a session the master ends with RSTs reaches the standby as CLOSE at once, and its delete after the close timeout', () => {
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP);
    const { events: est, n: nEst } = establishAndDrain(a, 4545, fam);
    expect(b.engine.installSynced(est, nEst).installed).toBe(1);
    const da = new Driver(a.engine);
    expect(a.engine.resetServer(da.session().realServerId)).toEqual({ ended: 1, next: -1 });
    const { events, n } = drain(a.ring);
    expect(n).toBe(1);
    b.engine.installSynced(events, n);
    expect(new Driver(b.engine).session().state).toBe('CLOSE');
    da.nowMs = 200 + 3100;
    a.engine.advanceTimers(da.nowMs);
    const del = drain(a.ring);
    expect(b.engine.installSynced(del.events, del.n).deleted).toBe(1);
    expect([...b.engine.sessionIds()]).toEqual([]);
  });

  it("a half-closed session's copy lives as long as an established one's (the standby cannot see its data)", () => {
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP);
    establishAndDrain(a, 4343, fam);
    const da = new Driver(a.engine);
    da.nowMs = 300;
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 4343, dport: 80, seq: 2, ack: 6, flags: ACK | 1 }));
    expect(da.session().state).toBe('FIN_WAIT');
    const { events, n } = drain(a.ring); // the state change: published at once
    expect(b.engine.installSynced(events, n).installed).toBe(1);
    // The master publishes a half-closed session every refreshSec (30 s) while its data flows,
    // and its end: 7 s would lose the copy between two refreshes.
    expect(new Driver(b.engine).session()).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 60_000 });
  });

  it("a TUNNEL session closed on its owner: its copy lives FIN_WAIT's 7 s, as there, not a minute; the server's first data after the client's FIN reaches the copy at once", () => {
    // The same for DR: both follow the client alone (nat/modes/client_side.ts clientOnlyState).
    const specs = modeService(fam, 'tunnel');
    const a = haEngine(MASTER, 0);
    const b = haEngine(BACKUP);
    for (const e of [a.engine, b.engine]) e.applyServices(specs);
    const da = new Driver(a.engine);
    const copyOf = (sport: number) =>
      [...b.engine.sessionIds()].map((r) => b.engine.describe(r)).find((x) => x.cport === sport);
    const published = (): number => {
      a.engine.advanceTimers(da.nowMs);
      const { events, n } = drain(a.ring);
      b.engine.installSynced(events, n);
      return n;
    };
    const C = (sport: number, seq: number, ack: number, flags: number) =>
      tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq, ack, flags });
    for (const sport of [51001, 51002]) {
      da.forward(C(sport, 1000, 0, SYN));
      da.forward(C(sport, 1001, 5001, ACK));
    }
    da.nowMs = 100;
    expect(published()).toBe(2);
    for (const sport of [51001, 51002]) da.forward(C(sport, 1001, 5001, ACK | 1)); // the client's FIN
    expect(published()).toBe(2);
    expect(copyOf(51001)).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 7_000 });
    // 51001 closes: the client acknowledges the server's FIN alone. Nothing to publish: the
    // copy dies when the session does.
    da.forward(C(51001, 1002, 5002, ACK));
    expect(published()).toBe(0);
    // 51002 was half-closed: the server goes on sending, the client's acks move on. Its copy
    // must outlive FIN_WAIT's 7 s as the session does there (timed as an established one).
    da.forward(C(51002, 1002, 9001, ACK));
    expect(published()).toBe(1);
    expect(copyOf(51002)).toMatchObject({ state: 'FIN_WAIT', expiresInMs: 60_000 });
    da.forward(C(51002, 1002, 12001, ACK)); // more of it: the refresh's to publish
    expect(published()).toBe(0);
    // 7 s on, the closed one is gone from both; the other lives on in both.
    da.nowMs += 7_100;
    b.engine.advanceTimers(da.nowMs);
    expect(published()).toBe(1); // the owner's delete
    expect([...a.engine.sessionIds()].map((r) => a.engine.describe(r).cport)).toEqual([51002]);
    expect([...b.engine.sessionIds()].map((r) => b.engine.describe(r).cport)).toEqual([51002]);
  });

  it.each([
    ['3 (this version)', SYNC_FORMAT, 'LAST_ACK'],
    ['2 (an older node)', 2, 'TIME_WAIT'],
  ])(
    "a copy in LAST_ACK from a format-%s record: the client's duplicate ACK leaves it in %s",
    async (_f, format, afterDupAck) => {
      const a = haEngine(MASTER, 0);
      const b = haEngine(BACKUP);
      const { events: est, n: nEst } = establishAndDrain(a, 4444, fam);
      const da = new Driver(a.engine);
      const C = (seq: number, ack: number, flags: number) =>
        tcp({ src: fam.client, dst: fam.vip, sport: 4444, dport: 80, seq, ack, flags });
      const finOut = parse(da.forward(C(2, 6, ACK | 1)));
      const lport = da.session().lport;
      da.forward(
        tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: lport, seq: 6, ack: finOut.seq + 1, flags: ACK | 1 }),
      );
      expect(da.session().state).toBe('LAST_ACK');
      const { events, n } = drain(a.ring);
      // Through the wire format and back, as a peer of that format would have sent it.
      const wire = (ev: Int32Array, k: number) =>
        eventsFromWire(eventsToWire(ev.slice(0, k * EVENT_WORDS), format), format);
      b.engine.installSynced(wire(est, nEst), nEst);
      b.engine.installSynced(wire(events, n), n);
      await promote(b);
      const db = new Driver(b.engine);
      expect(db.session().state).toBe('LAST_ACK');
      // The client asks again for what it has not got (the server's FIN is not acked yet).
      db.forward(C(3, 6, ACK));
      expect(db.session().state).toBe(afterDupAck);
      db.forward(C(3, 7, ACK));
      expect(db.session().state).toBe('TIME_WAIT');
    },
  );

  it('short connections are never published; a standby does not reset on expiry', () => {
    const a = haEngine(MASTER);
    const da = new Driver(a.engine);
    const C = (seq: number, ack: number, flags: number) =>
      tcp({ src: fam.client, dst: fam.vip, sport: 50001, dport: 80, seq, ack, flags });
    const synOut = parse(da.forward(C(1, 0, SYN)));
    const s = da.session();
    da.forward(
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq: 5, ack: synOut.seq + 1, flags: SYN | ACK }),
    );
    da.forward(C(2, 6, ACK));
    da.forward(C(2, 6, ACK | 1)); // FIN at once
    da.nowMs = 5000;
    a.engine.advanceTimers(da.nowMs);
    expect(a.ring.pending).toBe(0);
  });

  it('standing down, the master publishes its young sessions: in the handshake, established, closing; not a closed one, a published one or a copy', async () => {
    const a = haEngine(MASTER, 60_000);
    const da = new Driver(a.engine);
    const open = (sport: number, end = 0): void => {
      const C = (seq: number, ack: number, flags: number) =>
        tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, seq, ack, flags });
      const synOut = parse(da.forward(C(1, 0, SYN)));
      da.forward(
        tcp({
          src: fam.rs1,
          dst: fam.lip,
          sport: 8080,
          dport: synOut.sport,
          seq: 5,
          ack: synOut.seq + 1,
          flags: SYN | ACK,
        }),
      );
      da.forward(C(2, 6, ACK));
      if (end !== 0) da.forward(C(2, 6, ACK | end));
    };
    open(50010); // ESTABLISHED
    open(50011, 1); // FIN_WAIT
    open(50014, RST); // CLOSE: over
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 50012, dport: 80, seq: 1, flags: SYN })); // SYN_RECV
    a.engine.advanceTimers((da.nowMs = 1000));
    expect(a.ring.pending).toBe(0); // younger than syncAfter: nothing yet
    // A peer's copy (a session it published) is the peer's to publish.
    const b = haEngine(MASTER, 0, 2);
    const { events, n } = establishAndDrain(b, 50013, fam);
    a.engine.installSynced(events, n);
    expect(a.engine.sessionCount).toBe(5);

    expect(await a.engine.publishYoungSynced()).toBe(3);
    const out = drain(a.ring);
    expect(out.n).toBe(3);
    const ports = Array.from({ length: out.n }, (_, e) => out.events[e * EVENT_WORDS + 1 + R_IN_PORTS]! >>> 16).sort();
    expect(ports).toEqual([50010, 50011, 50012]);
    // Published now: a second stand-down has nothing left, and the changes that follow go out.
    expect(await a.engine.publishYoungSynced()).toBe(0);
  });
});

it("a sloppy session (a mid-connection packet's) is published after syncAfter like a new connection", () => {
  const specs = [
    serviceWithDefaults({
      vip: V4.vip,
      port: 80,
      scheduler: 'sh',
      mode: 'nat',
      sloppy: true,
      realServers: [{ address: V4.rs1, port: 8080, weight: 1 }],
    }),
  ];
  const a = haEngine(MASTER, 2000, 1, specs);
  const b = haEngine(BACKUP, 2000, 2, specs);
  const da = new Driver(a.engine);
  da.forward(tcp({ src: V4.client, dst: V4.vip, sport: 4545, dport: 80, seq: 7, ack: 9, flags: ACK }));
  a.engine.advanceTimers((da.nowMs = 1000));
  expect(a.ring.pending).toBe(0);
  a.engine.advanceTimers((da.nowMs = 2100));
  const { events, n } = drain(a.ring);
  expect(n).toBe(1);
  expect(b.engine.installSynced(events, n).installed).toBe(1);
  expect(new Driver(b.engine).session()).toMatchObject({ mode: 'nat', state: 'ESTABLISHED', owner: 1 });
});

it('an event for a service this LB does not have is counted, not installed', () => {
  const a = haEngine(MASTER, 0);
  const b = new Driver(
    makeEngine([], {
      ha: {
        nodeId: 2,
        controlSab: new HaControl().sab,
        syncRingSab: new SyncRing(16).sab,
        syncAfterMs: 0,
        refreshSec: 30,
      },
    }),
  );
  const { events, n } = establishAndDrain(a, 1);
  expect(n).toBe(1);
  expect(b.engine.installSynced(events, n)).toEqual({
    installed: 0,
    updated: 0,
    deleted: 0,
    failed: 1,
    conflicts: 0,
    replaced: 0,
    handedOver: 0,
  });
});

it('a stale copy whose local tuple now belongs to another client is replaced, index and all', () => {
  const a = haEngine(MASTER, 0);
  const b = haEngine(MASTER, 2000, 2);
  const db = new Driver(b.engine);
  const { events, n } = establishAndDrain(a, 1111);
  expect(b.engine.installSynced(events, n).installed).toBe(1);
  // The same local tuple, now for client port 2222.
  const inPorts = 1 + 1; // event word of R_IN_PORTS (op word first)
  events[inPorts] = (2222 << 16) | 80;
  const r = b.engine.installSynced(events, 1);
  expect(r).toMatchObject({ installed: 1, updated: 0, failed: 0, replaced: 1 });
  expect([...b.engine.sessionIds()].length).toBe(1);
  expect(db.session().cport).toBe(2222);
  db.forward(tcp({ src: V4.client, dst: V4.vip, sport: 2222, dport: 80, seq: 2, ack: 6, flags: ACK }));
  expect(
    db.send(tcp({ src: V4.client, dst: V4.vip, sport: 1111, dport: 80, seq: 2, ack: 6, flags: ACK })).verdict,
  ).not.toBe(VERDICT_FORWARD);
});

it('a stale record whose client tuple a new connection of a peer now uses is replaced, unless it is ours and live', () => {
  const a = haEngine(MASTER, 0);
  const b = haEngine(MASTER, 2000, 2);
  const { events, n } = establishAndDrain(a, 1111);
  const outPorts = 1 + R_OUT_PORTS;
  const lport = events[outPorts]! & 0xffff;
  /** The peer's record for client port 1111 with local port `p` (a new connection). */
  const withLport = (p: number): Int32Array => {
    const ev = events.slice(0, EVENT_WORDS);
    ev[outPorts] = (ev[outPorts]! & ~0xffff) | p;
    return ev;
  };
  // A copy: the client reused its port for a connection the peer gave another local port.
  expect(b.engine.installSynced(events, n).installed).toBe(1);
  expect(b.engine.installSynced(withLport(lport + 2), 1)).toMatchObject({ installed: 1, conflicts: 0, replaced: 1 });
  expect([...b.engine.sessionIds()].map((r) => b.engine.describe(r).lport)).toEqual([lport + 2]);

  // Ours and ESTABLISHED: a conflict, ours stays.
  const persistent = labServices({ persistence: { timeoutSec: 60, netmask: 24, prefix6: 64 } });
  const c = haEngine(MASTER, 2000, 2, persistent);
  const dc = new Driver(c.engine);
  const syn = parse(
    dc.forward(tcp({ src: V4.client, dst: V4.vip, sport: 1111, dport: 80, seq: 1, ack: 0, flags: SYN })),
  );
  const own = dc.session();
  dc.forward(
    tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: own.lport, seq: 5, ack: syn.seq + 1, flags: SYN | ACK }),
  );
  dc.forward(tcp({ src: V4.client, dst: V4.vip, sport: 1111, dport: 80, seq: 2, ack: 6, flags: ACK }));
  const other = own.lport === lport ? lport + 2 : lport;
  expect(c.engine.installSynced(withLport(other), 1)).toMatchObject({ installed: 0, conflicts: 1, replaced: 0 });
  expect(dc.session().lport).toBe(own.lport);
  // Ours and closing (the client's FIN): the client is done with it, the peer's replaces it.
  dc.forward(tcp({ src: V4.client, dst: V4.vip, sport: 1111, dport: 80, seq: 2, ack: 6, flags: ACK | 1 }));
  expect(c.engine.installSynced(withLport(other), 1)).toMatchObject({ installed: 1, conflicts: 0, replaced: 1 });
  expect([...c.engine.sessionIds()].map((r) => c.engine.describe(r).lport)).toEqual([other]);
  expect(c.engine.templates.list(0)[0]).toMatchObject({ sessions: 0 }); // ours let its template go
});

it('cluster: a FULLNAT session is owned by the node that holds its local address', async () => {
  const a = haEngine(MASTER, 0, 1);
  // b's own local address is another: a's is a peer's (node 1's) to b.
  const specs = labServices().map((x) => ({
    ...x,
    localAddresses: [x.vip.includes(':') ? 'fd00:18:2::9' : '198.18.2.9'],
  }));
  const b = haEngine(MASTER, 0, 2, specs);
  const { events, n } = establishAndDrain(a, 41000);
  expect(n).toBe(1);
  const named = (node: number) => {
    const e = events.slice(0, EVENT_WORDS);
    e[1 + SYNC_NODE_WORD] = node;
    return e;
  };
  const owner = () => b.engine.describe([...b.engine.sessionIds()][0]!).owner;
  const holds = (holder: number) => b.engine.setPeerLocalAddresses([{ ...parseAddress(V4.lip)!, holder }]);
  b.engine.installSynced(events, 1);
  expect(owner()).toBe(1);
  // Nothing known of the address (a pair shares its addresses): nothing moves.
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 0, handedOver: 0 });
  // Node 1 is dead and b its first live backup: b holds the address and takes the copy.
  holds(2);
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 1, handedOver: 0 });
  expect(owner()).toBe(0);
  // While b holds it, no other node's word counts, not even node 1's (a stale record).
  expect(b.engine.installSynced(events, 1)).toMatchObject({ conflicts: 1, handedOver: 0 });
  expect(b.engine.installSynced(named(3), 1)).toMatchObject({ conflicts: 1, handedOver: 0 });
  expect(drain(b.ring).n).toBe(0);
  // Node 1 is back and its record comes first: it wins, and b says so to every node.
  holds(1);
  expect(b.engine.installSynced(events, 1)).toMatchObject({ handedOver: 1, updated: 1 });
  expect(owner()).toBe(1);
  const handover = drain(b.ring); // out of b's hash, streamed as node 1's (publisher.ts)
  expect([handover.n, handover.events[0], handover.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_HANDOVER, 1]);
  // Held by b again, then by node 3: b hands it over on its own (reconcile).
  holds(2);
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 1, handedOver: 0 });
  holds(3);
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 0, handedOver: 1 });
  expect(owner()).toBe(3);
  const toThree = drain(b.ring);
  expect([toThree.n, toThree.events[0], toThree.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_HANDOVER, 3]);
  // A record naming b for the copy it holds (a node handed it over): b's now, published.
  expect(b.engine.installSynced(named(2), 1)).toMatchObject({ updated: 1, conflicts: 0 });
  expect(owner()).toBe(0);
  const pub = drain(b.ring);
  expect([pub.n, pub.events[0], pub.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_UPSERT, 2]);
  // Its own record echoed back changes nothing.
  expect(b.engine.installSynced(named(2), 1)).toMatchObject({ updated: 0, conflicts: 0 });
  expect(drain(b.ring).n).toBe(0);
  // The holder saw it end: its delete removes b's own session, and b's hash drops it too.
  holds(1);
  const end = named(1);
  end[0] = OP_DELETE;
  expect(b.engine.installSynced(end, 1)).toMatchObject({ deleted: 1, conflicts: 0 });
  expect(b.engine.sessionCount).toBe(0);
  const gone = drain(b.ring);
  expect([gone.n, gone.events[0], gone.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_DELETE, 2]);
});

it('cluster: a handover waits for room in a full sync ring, then goes on where it stopped; past SYNC_RING_WAIT_MS it goes on without', async () => {
  const a = haEngine(MASTER, 0);
  const specs = labServices().map((x) => ({
    ...x,
    localAddresses: [x.vip.includes(':') ? 'fd00:18:2::9' : '198.18.2.9'],
  }));
  const b = haEngine(MASTER, 0, 2, specs);
  const { events } = establishAndDrain(a, 41000);
  const owner = () => b.engine.describe([...b.engine.sessionIds()][0]!).owner;
  const holds = (holder: number) => b.engine.setPeerLocalAddresses([{ ...parseAddress(V4.lip)!, holder }]);
  b.engine.installSynced(events, 1);
  holds(2);
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 1, handedOver: 0 });
  drain(b.ring);
  const fill = (): void => {
    while (b.ring.push(OP_UPSERT, new Int32Array(RECORD_WORDS), 0, 2));
    b.ring.takeLost();
  };
  // Node 3 holds it now, and b's ring is full: the handover waits until the ring drains.
  fill();
  holds(3);
  const waiting = b.engine.reconcileSynced();
  await new Promise((r) => setTimeout(r, 30));
  expect(owner()).toBe(0);
  expect(drain(b.ring).n).toBe(1024);
  expect(await waiting).toEqual({ claimed: 0, handedOver: 1 });
  expect(owner()).toBe(3);
  const handover = drain(b.ring);
  expect([handover.n, handover.events[0], handover.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_HANDOVER, 3]);
  expect(b.ring.takeLost()).toBe(0);
  // Held by b, then by node 3 again, with a ring nobody drains: after SYNC_RING_WAIT_MS the
  // handover goes on, and its event is counted lost (the resync that follows repairs it).
  holds(2);
  await b.engine.reconcileSynced();
  fill();
  holds(3);
  const t0 = Date.now();
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 0, handedOver: 1 });
  expect(Date.now() - t0).toBeGreaterThanOrEqual(SYNC_RING_WAIT_MS);
  expect(owner()).toBe(3);
  expect(b.ring.takeLost()).toBe(1);
}, 10_000);

it('cluster, after a lapse: sessions of the modes without an address of the node go to its first live backup', async () => {
  const tunnel = serviceWithDefaults({
    vip: V4.vip,
    port: 8000,
    mode: 'tunnel',
    scheduler: 'rr',
    localAddresses: [V4.lip], // the outer source
    realServers: [{ address: V4.rs1, port: 8000, weight: 1 }],
  });
  const b = haEngine(MASTER, 0, 2, [...labServices(), tunnel]);
  const d = new Driver(b.engine);
  for (const [port, flags] of [
    [8000, SYN],
    [8000, ACK],
    [80, SYN],
  ] as const)
    d.forward(
      tcp({ src: V4.client, dst: V4.vip, sport: 43000, dport: port, seq: flags === SYN ? 1 : 2, ack: 0, flags }),
    );
  d.nowMs = 200;
  b.engine.advanceTimers(d.nowMs); // the TUNNEL session is ESTABLISHED and published; FULLNAT's is young
  expect(drain(b.ring).n).toBe(1);
  const owners = () => [...b.engine.sessionIds()].map((r) => [b.engine.describe(r).mode, b.engine.describe(r).owner]);
  expect(await b.engine.reconcileSynced()).toEqual({ claimed: 0, handedOver: 0 });
  expect(await b.engine.reconcileSynced(3)).toEqual({ claimed: 0, handedOver: 1 });
  expect(owners().sort()).toEqual([
    ['fullnat', 0], // on b's own address
    ['tunnel', 3],
  ]);
  const out = drain(b.ring);
  expect([out.n, out.events[0], out.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_HANDOVER, 3]);
});

it("a peer's reload keeps its sessions in place until the snapshot is in, then drops what it no longer has", async () => {
  const a = haEngine(MASTER, 0);
  const b = haEngine(BACKUP);
  const first = establishAndDrain(a, 3001);
  // A second session of the peer: the same record with other client and local ports.
  const second = { events: first.events.slice(0, EVENT_WORDS), n: 1 };
  second.events[1 + R_IN_PORTS] = (3002 << 16) | 80;
  second.events[1 + R_OUT_PORTS] = (second.events[1 + R_OUT_PORTS]! & ~0xffff) | 40000;
  expect(b.engine.installSynced(first.events, first.n).installed).toBe(1);
  expect(b.engine.installSynced(second.events, second.n).installed).toBe(1);
  // The reload begins: both stay in the table (their packets keep being forwarded).
  expect(await b.engine.markSynced(1)).toBe(2);
  expect([...b.engine.sessionIds()].length).toBe(2);
  // The snapshot brings only the first one again; the sweep removes the other.
  expect(b.engine.installSynced(first.events, first.n).updated).toBe(1);
  expect(await b.engine.sweepSynced(1)).toBe(1);
  const left = [...b.engine.sessionIds()].map((r) => b.engine.describe(r).cport);
  expect(left).toEqual([3001]);
  // A later reload that brings it again keeps it.
  await b.engine.markSynced(1);
  b.engine.installSynced(first.events, first.n);
  expect(await b.engine.sweepSynced(1)).toBe(0);
});

it("cluster: a TUNNEL flow that ECMP moved to a peer goes on there past its owner's idle timeout: the peer takes it at the first packet, the owner keeps it as the peer's copy; moved back, taken back", () => {
  // TUNNEL and DR: the owner sees none of the flow's packets once they go elsewhere. Before,
  // it expired the session after the idle timeout (60 s here) and its delete ended the copy
  // that was forwarding the connection.
  const a = haEngine(MASTER, 0, 1);
  const b = haEngine(MASTER, 0, 2);
  for (const e of [a.engine, b.engine]) e.applyServices(modeService(V4, 'tunnel'));
  const da = new Driver(a.engine);
  const db = new Driver(b.engine);
  const C = (seq: number, flags: number) =>
    tcp({ src: V4.client, dst: V4.vip, sport: 50002, dport: 80, seq, ack: 9001, flags, payload: new Uint8Array(10) });
  const owners = () => [a, b].map((n) => n.engine.describe([...n.engine.sessionIds()][0]!).owner);
  const taken = (n: { engine: Engine }) => n.engine.counters[C_SYNC_TAKEN];
  /** Time `t` on both, each node's events installed on the other; how many each sent. */
  const at = (t: number): number[] => {
    da.nowMs = db.nowMs = t;
    const sent = [];
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      from.engine.advanceTimers(t);
      const { events, n } = drain(from.ring);
      to.engine.installSynced(events, n);
      sent.push(n);
    }
    return sent;
  };
  da.forward(tcp({ src: V4.client, dst: V4.vip, sport: 50002, dport: 80, seq: 1000, flags: SYN }));
  da.forward(tcp({ src: V4.client, dst: V4.vip, sport: 50002, dport: 80, seq: 1001, ack: 9001, flags: ACK }));
  expect(at(100)).toEqual([1, 0]);
  expect(owners()).toEqual([0, 1]);
  // The flow moves to B: its first packet there makes the session B's, and A's record B's copy
  // (a handover through A's stream: out of A's hash, B's upsert for the others).
  let seq = 1001;
  db.forward(C(seq, ACK | PSH));
  expect(taken(b)).toBe(1);
  expect(at(200)).toEqual([0, 1]);
  expect(owners()).toEqual([2, 0]);
  expect(at(300)).toEqual([1, 0]); // A's handover, echoed to B: nothing changes
  expect(owners()).toEqual([2, 0]);
  // Two minutes of traffic through B (the idle timeout is 60 s): the connection goes on.
  for (let t = 10_000; t <= 120_000; t += 10_000) {
    seq += 10;
    db.forward(C(seq, ACK | PSH));
    at(t);
  }
  expect(owners()).toEqual([2, 0]);
  // ECMP moves it back to A: A takes it back.
  seq += 10;
  da.forward(C(seq, ACK | PSH));
  expect(taken(a)).toBe(1);
  at(121_000);
  expect(owners()).toEqual([0, 1]);
  // The connection goes quiet: its owner ends it after the idle timeout, and the copy with it.
  at(182_000);
  expect([a.engine.sessionCount, b.engine.sessionCount]).toEqual([0, 0]);
});

it('cluster: a session handed to a node that had no copy of it is its own and goes into its hash; one it restores does not', () => {
  const a = haEngine(MASTER, 0);
  const { events } = establishAndDrain(a, 42000);
  // As a peer streams it after handing it to node 2 (ha/follower.ts marks it OP_HANDOVER).
  const handed = events.slice(0, EVENT_WORDS);
  handed[0] = OP_HANDOVER;
  handed[1 + SYNC_NODE_WORD] = 2;
  const b = haEngine(MASTER, 0, 2);
  expect(b.engine.installSynced(handed, 1).installed).toBe(1);
  expect(b.engine.describe([...b.engine.sessionIds()][0]!).owner).toBe(0);
  const out = drain(b.ring);
  expect([out.n, out.events[0], out.events[1 + SYNC_NODE_WORD]]).toEqual([1, OP_UPSERT, 2]);
  // Its own record read back from its hash after a restart: its own, already in the hash.
  const restored = handed.slice();
  restored[0] = OP_UPSERT;
  const c = haEngine(MASTER, 0, 2);
  expect(c.engine.installSynced(restored, 1).installed).toBe(1);
  expect(c.engine.describe([...c.engine.sessionIds()][0]!).owner).toBe(0);
  expect(drain(c.ring).n).toBe(0);
  // Handed to a third node: that node's copy here, not published.
  const third = handed.slice();
  third[1 + SYNC_NODE_WORD] = 3;
  const d = haEngine(MASTER, 0, 2);
  expect(d.engine.installSynced(third, 1).installed).toBe(1);
  expect(d.engine.describe([...d.engine.sessionIds()][0]!).owner).toBe(3);
  expect(drain(d.ring).n).toBe(0);
});

it('a persistence group with IPv4 and IPv6 members (a firewall mark over both families): each template is named by its family’s first service, installed, resynced and deleted', async () => {
  const member = (fam: typeof V4 | typeof V6, port: number) =>
    serviceWithDefaults({
      vip: fam.vip,
      port,
      scheduler: 'rr',
      realServers: [fam.rs1, fam.rs2].map((address) => ({ address, port: 8080, weight: 1 })),
      localAddresses: [fam.lip],
      persistence: { timeoutSec: 5, netmask: 32, prefix6: 128, group: 'fwmark-1' },
    });
  // The group's first service is IPv4's (port 8000); IPv6's first is port 80.
  const specs = [member(V4, 8000), member(V6, 80), member(V6, 443)];
  const a = haEngine(MASTER, 0, 1, specs);
  const b = haEngine(BACKUP, 0, 2, specs);
  const syn = (fam: typeof V4 | typeof V6, dport: number, sport: number) =>
    tcp({ src: fam.client, dst: fam.vip, sport, dport, seq: 1, flags: SYN });
  const da = new Driver(a.engine);
  const server4 = parse(da.forward(syn(V4, 8000, 50000))).dst;
  const server6 = parse(da.forward(syn(V6, 443, 50000))).dst;
  const { events, n } = drain(a.ring);
  expect(n).toBe(2);
  const named = (ev: Int32Array, count: number) =>
    Array.from({ length: count }, (_, i) => 1 + i * EVENT_WORDS)
      .filter((at) => syncIsTemplate(ev, at))
      .map((at) => ev[at + R_IN_PORTS]! & 0xffff)
      .sort((x, y) => x - y);
  // Each under a service of the client's family (the IPv6 one was named by IPv4's 8000, whose
  // VIP the peer has no IPv6 service at: sync_install_failed).
  expect(named(events, n)).toEqual([80, 8000]);
  expect(b.engine.installSynced(events, n)).toMatchObject({ installed: 2, failed: 0 });
  // A full resync carries both (the IPv6 one was left out).
  const snap = await snapshotEvents(a.engine);
  expect(named(snap.events, snap.n)).toEqual([80, 8000]);
  await promote(b);
  const db = new Driver(b.engine);
  expect(parse(db.forward(syn(V4, 8000, 50001))).dst).toBe(server4);
  expect(parse(db.forward(syn(V6, 80, 50001))).dst).toBe(server6);
  // Dead (the clients gave up, then the templates' 5 s), both leave the master's hash.
  for (const fam of [V4, V6])
    da.forward(
      tcp({ src: fam.client, dst: fam.vip, sport: 50000, dport: fam === V4 ? 8000 : 443, seq: 2, flags: RST }),
    );
  const deleted: number[] = [];
  for (let t = 100; t <= 60_000; t += 100) {
    a.engine.advanceTimers(t);
    const ev = drain(a.ring);
    for (let i = 0; i < ev.n; i++)
      if (ev.events[i * EVENT_WORDS] === OP_DELETE && syncIsTemplate(ev.events, 1 + i * EVENT_WORDS))
        deleted.push(ev.events[1 + i * EVENT_WORDS + R_IN_PORTS]! & 0xffff);
  }
  expect(deleted.sort((x, y) => x - y)).toEqual([80, 8000]);
});
