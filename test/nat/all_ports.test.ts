/**
 * All-ports services (port 0, IPVS's persistent port-zero service): every port of the VIP,
 * each connection kept on the port the client asked for, a client's connections to any of
 * them on one server (persistence); a service of one port on the same VIP wins for its port.
 * FULLNAT, TUNNEL and DR, TCP and UDP, and the sync of such a session to a peer.
 */

import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/dataplane/engine.js';
import { HaControl } from '../../src/ha/role.js';
import { EVENT_WORDS, SyncRing } from '../../src/ha/session_sync.js';
import { VERDICT_LINK } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, norm, parse, SYN, tcp, udp } from '../helpers/packets.js';

type Family = typeof V4 | typeof V6;
const PERSIST = { timeoutSec: 300, netmask: 32, prefix6: 128 };
const other = (fam: Family): string => (fam === V4 ? '198.18.101.9' : 'fd00:18:65::9');

/** An all-ports FULLNAT service over rs1, rs2 (rr), and beside it, unless `alone`, a
 * service of port 80 on the same VIP to rs1:8080. */
function specs(fam: Family, extra: Partial<ServiceSpec> = {}, alone = false): ServiceSpec[] {
  const all = serviceWithDefaults({
    vip: fam.vip,
    port: 0,
    scheduler: 'rr',
    realServers: [fam.rs1, fam.rs2].map((address) => ({ address, port: 0, weight: 1 })),
    localAddresses: [fam.lip],
    persistence: PERSIST,
    ...extra,
  });
  if (alone) return [all];
  const web = serviceWithDefaults({
    vip: fam.vip,
    port: 80,
    realServers: [{ address: fam.rs1, port: 8080, weight: 1 }],
    localAddresses: [fam.lip],
  });
  return [web, all];
}

const syn = (fam: Family, dport: number, sport = 40000, src: string = fam.client) =>
  tcp({ src, dst: fam.vip, sport, dport, seq: 1000, flags: SYN });

describe.each([
  ['IPv4', V4],
  ['IPv6', V6],
] as const)('all-ports services %s', (_n, fam) => {
  it("FULLNAT: each port kept, one client's connections on one server, the replies translated back", () => {
    const d = new Driver(makeEngine(specs(fam)));
    const ports = [21, 443, 8443, 60000];
    const outs = ports.map((p, i) => parse(d.forward(syn(fam, p, 40000 + i))));
    const server = outs[0]!.dst;
    for (const [i, o] of outs.entries()) {
      expect(o.dst).toBe(server);
      expect(o.dport).toBe(ports[i]);
      expect(o.src).toBe(norm(fam.lip));
    }
    // rr gives the next client the other server, on its port too.
    const next = parse(d.forward(syn(fam, 22, 41000, other(fam))));
    expect(next.dst).not.toBe(server);
    expect(next.dport).toBe(22);
    // The server's SYN-ACK goes back to the client from the port it asked for.
    const o = outs[1]!;
    const back = parse(
      d.forward(
        tcp({ src: server, dst: fam.lip, sport: 443, dport: o.sport, seq: 7000, ack: o.seq + 1, flags: SYN | ACK }),
      ),
    );
    expect({ src: back.src, sport: back.sport, dst: back.dst, dport: back.dport }).toEqual({
      src: norm(fam.vip),
      sport: 443,
      dst: norm(fam.client),
      dport: 40001,
    });
    expect(
      d.engine.templates
        .list(0)
        .map((t) => t.sessions)
        .sort(),
    ).toEqual([1, 4]);
  });

  it('a service of one port on the same VIP wins for its port', () => {
    const d = new Driver(makeEngine(specs(fam)));
    const web = parse(d.forward(syn(fam, 80)));
    expect([web.dst, web.dport]).toEqual([norm(fam.rs1), 8080]);
    const any = parse(d.forward(syn(fam, 81, 40001)));
    expect(any.dport).toBe(81);
  });

  it('UDP: every port, each kept', () => {
    const d = new Driver(makeEngine(specs(fam, { protocol: 'udp' }, true)));
    const a = parse(
      d.forward(udp({ src: fam.client, dst: fam.vip, sport: 5000, dport: 53, payload: new Uint8Array(8) })),
    );
    const b = parse(
      d.forward(udp({ src: fam.client, dst: fam.vip, sport: 5001, dport: 123, payload: new Uint8Array(8) })),
    );
    expect([a.dport, b.dport]).toEqual([53, 123]);
    expect(b.dst).toBe(a.dst);
  });

  it('TUNNEL: the client packet whole, its port as it was, inside IP-in-IP to one server', () => {
    const d = new Driver(makeEngine(specs(fam, { mode: 'tunnel' }, true)));
    const inner = (p: Uint8Array) => parse(p.subarray(fam === V4 ? 20 : 40));
    const outer = [21, 990].map((p, i) => d.forward(syn(fam, p, 40000 + i)));
    expect(outer.map((p) => parse(p).dst)).toEqual([parse(outer[0]!).dst, parse(outer[0]!).dst]);
    expect(outer.map((p) => inner(p).dport)).toEqual([21, 990]);
  });

  it('DR: the client packet unchanged to one server', () => {
    const [svc] = resolveServices(specs(fam, { mode: 'dr', localAddresses: [] }, true), new IdRegistry());
    const annotated = {
      ...svc!,
      linkMac: '02:00:00:00:00:0a',
      realServers: svc!.realServers.map((r, i) => ({ ...r, mac: `02:00:00:00:00:2${i}` })),
    };
    const d = new Driver(new Engine({ capacity: 64, seed: 1, nowMs: 0 }, [annotated]));
    const frames = [25, 587].map((p, i) => {
      const pkt = syn(fam, p, 40000 + i);
      const r = d.send(pkt);
      expect(r.verdict).toBe(VERDICT_LINK);
      expect(r.out.subarray(14)).toEqual(pkt);
      return [...r.out.subarray(0, 6)].join(':');
    });
    expect(frames[1]).toBe(frames[0]);
  });

  it("a peer installs such a session (its server's port is the client's) and forwards it as the owner did", () => {
    const a = haEngine(true, specs(fam, {}, true));
    const b = haEngine(false, specs(fam, {}, true));
    const da = new Driver(a.engine);
    const out = parse(da.forward(syn(fam, 2222)));
    const s = da.session();
    da.forward(
      tcp({ src: out.dst, dst: fam.lip, sport: 2222, dport: s.lport, seq: 7000, ack: out.seq + 1, flags: SYN | ACK }),
    );
    da.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40000, dport: 2222, seq: 1001, ack: 7001, flags: ACK }));
    da.nowMs = 200;
    a.engine.advanceTimers(da.nowMs);
    const events = new Int32Array(16 * EVENT_WORDS);
    const n = a.ring.drain(events, 16);
    expect(b.engine.installSynced(events, n)).toMatchObject({ installed: n, failed: 0 });
    b.control.set(true, true);
    const db = new Driver(b.engine);
    const pkt = tcp({ src: fam.client, dst: fam.vip, sport: 40000, dport: 2222, seq: 1001, ack: 7001, flags: ACK });
    expect(Buffer.from(db.forward(pkt))).toEqual(Buffer.from(da.forward(pkt)));
  });
});

/** An engine of a pair's node (1: forwarding and publishing, 2: standing by), syncing at once. */
function haEngine(master: boolean, s: ServiceSpec[]): { engine: Engine; ring: SyncRing; control: HaControl } {
  const control = new HaControl();
  control.set(master, master);
  const ring = new SyncRing(1024);
  const engine = makeEngine(s, {
    ha: { nodeId: master ? 1 : 2, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 30 },
  });
  return { engine, ring, control };
}
