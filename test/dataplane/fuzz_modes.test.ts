/**
 * Fuzz, every forwarding mode and the features beside FULLNAT's default path: NAT, TUNNEL
 * (IP-in-IP, GRE with its checksum, GUE with and without the UDP checksum), DR, the SYN proxy
 * with timestamps translated, persistence groups across modes and families, sloppy TCP,
 * one-packet UDP, all-ports services, UDP fragments (reassembled, and fragmented again on the
 * way out) and routers' "too big" errors about tunnelled packets. Templates are whole
 * conversations made through the engine (a client's SYN, whatever the engine sends, the
 * answer the other side would give, data both ways, ICMP errors), so the fuzz reaches the
 * established paths of each mode. The loop (test/helpers/fuzz.ts) sends them as made, mutated
 * and cut short among random bytes:
 *
 *   plain, with TUN offloads (partial checksums, GSO super-packets), one worker of two
 *   reloads         services taken away, drained, cut and changed under their sessions
 *   HA              a master whose every event a standby installs and whose full resync a
 *                   third node loads; once promoted, both forward every flow they had as the
 *                   master does, byte for byte
 *   cluster         two nodes forwarding the same flows on each other's copies until one dies
 *                   and the other adopts its sessions (installs must not fail); and one node's
 *                   flows, which the node that adopts them must forward as it did, and it again
 *                   once it is back and has them handed over
 *
 * and twins (twinRun), two engines that must forward and generate the same bytes: one with
 * TUN offloads against one without, one reloaded every second with the services it has
 * against one not reloaded. Seeded: TUNVS_FUZZ_PACKETS and TUNVS_FUZZ_SEED run it longer or
 * elsewhere by hand.
 */

import { describe, expect, it } from 'vitest';
import { GSO_SLOT_SIZE_BYTES, SLOT_SIZE_BYTES, TIMER_TICK_MS, VNET_HDR_LEN } from '../../src/constants.js';
import { C_SESSIONS_CREATED } from '../../src/dataplane/counters.js';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_DROP, VERDICT_FORWARD, VERDICT_LINK } from '../../src/nat/verdict.js';
import { HaControl } from '../../src/ha/role.js';
import { EVENT_WORDS, SyncRing, type InstallResult } from '../../src/ha/session_sync.js';
import {
  IdRegistry,
  resolveServices,
  serviceWithDefaults,
  type ResolvedService,
  type ServiceSpec,
} from '../../src/service/service.js';
import { parseAddress } from '../../src/service/addr.js';
import { shareSecrets, V4, V6 } from '../helpers/engine.js';
import { promote, snapshotEvents } from '../helpers/ha.js';
import { FUZZ_TIMEOUTS_SEC, fuzzBursts, hexHead, isFragment, received } from '../helpers/fuzz.js';
import {
  ACK,
  FIN,
  fragmentsOf,
  icmp,
  opt,
  parse,
  PSH,
  RST,
  SYN,
  tcp,
  udp,
  upperLayer,
  type Parsed,
} from '../helpers/packets.js';
import { Rng } from '../helpers/rng.js';
import { GSO_TCPV4, GSO_TCPV6, makePartial, vnetHeader } from '../helpers/vnet.js';

const PACKETS = Number(process.env.TUNVS_FUZZ_PACKETS ?? 400_000);
const GUE_PORT = 6080;
/** Sync events a burst of 64 packets can make, and more (the ring is drained every burst). */
const SYNC_RING_EVENTS = 4096;
const LINK_MAC = '02:00:00:00:00:0a';
const RS_MAC = '02:00:00:00:00:21';
const ROUTER = { 4: '198.18.3.1', 6: 'fd00:18:3::1' } as const;

/** Slots as the forwarder sizes them: a GSO super-packet's with the TUN offloads on. */
const slotBytes = (headroom: number) => (headroom > 0 ? GSO_SLOT_SIZE_BYTES : SLOT_SIZE_BYTES);

type Family = typeof V4;

/** The services of one family, a port each (the templates reach them by port). */
function familyServices(fam: Family): ServiceSpec[] {
  const servers = (port: number) => [
    { address: fam.rs1, port, weight: 1 },
    { address: fam.rs2, port, weight: 2 },
  ];
  const persist = { timeoutSec: 30, netmask: 24, prefix6: 64, group: 'shop' };
  const one = (port: number, more: Partial<ServiceSpec>, protocol: 'tcp' | 'udp' = 'tcp'): ServiceSpec => {
    const mode = more.mode ?? 'fullnat';
    const samePort = mode === 'tunnel' || mode === 'dr';
    return serviceWithDefaults({
      protocol,
      vip: fam.vip,
      port,
      scheduler: 'rr',
      realServers: servers(samePort ? port : 8000 + port),
      ...(mode === 'fullnat' || mode === 'tunnel' ? { localAddresses: [fam.lip] } : {}),
      ...more,
    });
  };
  return [
    one(80, {}),
    one(81, { mode: 'nat' }),
    one(82, { mode: 'tunnel' }),
    one(83, { mode: 'tunnel', tunnel: { type: 'gre', checksum: true } }),
    one(84, { mode: 'tunnel', tunnel: { type: 'gue', port: GUE_PORT, checksum: true } }),
    one(85, { mode: 'tunnel', tunnel: { type: 'gue', port: GUE_PORT } }),
    one(86, { mode: 'dr' }),
    one(87, { synProxy: 'on', translateTimestamps: true }),
    one(88, { persistence: persist }),
    one(89, { mode: 'nat', persistence: persist }),
    one(90, { mode: 'tunnel', persistence: persist }),
    one(91, { mode: 'nat', scheduler: 'mh', sloppy: true }),
    one(92, { mode: 'tunnel', scheduler: 'sh', sloppy: true, tunnel: { type: 'gre' } }),
    one(93, { mode: 'dr', scheduler: 'mh', sloppy: true }),
    one(94, { stripTimestamps: true, toa: { enabled: true, kind: 200, kindV6: 253, inSyn: true } }),
    one(53, {}, 'udp'),
    one(54, { mode: 'nat', onePacket: true }, 'udp'),
    one(55, { onePacket: true }, 'udp'),
    one(56, { mode: 'tunnel', tunnel: { type: 'gue', port: GUE_PORT } }, 'udp'),
    one(57, { mode: 'dr' }, 'udp'),
    one(58, { mode: 'nat' }, 'udp'),
  ];
}

/** A second VIP of each family with a persistent all-ports TUNNEL service. */
const ALL_PORTS_VIP = { 4: '198.18.0.101', 6: 'fd00:18::101' } as const;

function serviceSpecs(): ServiceSpec[] {
  const specs = [...familyServices(V4), ...familyServices(V6)];
  for (const fam of [V4, V6])
    specs.push(
      serviceWithDefaults({
        vip: fam === V4 ? ALL_PORTS_VIP[4] : ALL_PORTS_VIP[6],
        port: 0,
        scheduler: 'wrr',
        mode: 'tunnel',
        persistence: { timeoutSec: 20, netmask: 32, prefix6: 128 },
        realServers: [
          { address: fam.rs1, port: 0, weight: 1 },
          { address: fam.rs2, port: 0, weight: 1 },
        ],
        localAddresses: [fam.lip],
      }),
    );
  return specs;
}

function services(specs = serviceSpecs(), ids = new IdRegistry()): ResolvedService[] {
  // DR's frames need the link's MAC and the servers' (control/link.ts gives them at run time).
  return resolveServices(specs, ids).map((s) =>
    s.mode === 'dr' ? { ...s, linkMac: LINK_MAC, realServers: s.realServers.map((r) => ({ ...r, mac: RS_MAC })) } : s,
  );
}

/** A reload's services: each service kept, left out, drained, cut to its first server, or
 * (FULLNAT and NAT with one port) switched to the other of the two. */
function reloaded(rng: Rng): ServiceSpec[] {
  const out: ServiceSpec[] = [];
  for (const s of serviceSpecs()) {
    const roll = rng.below(10);
    if (roll === 0) continue;
    if (roll === 1) out.push({ ...s, realServers: s.realServers.map((r) => ({ ...r, weight: 0 })) });
    else if (roll === 2) out.push({ ...s, realServers: s.realServers.slice(0, 1) });
    else if (roll === 3 && s.mode === 'nat' && s.persistence === undefined && !s.sloppy && !s.onePacket) {
      const lip = s.vip.includes(':') ? V6.lip : V4.lip;
      out.push({ ...s, mode: 'fullnat', localAddresses: [lip] });
    } else out.push(s);
  }
  return out;
}

/** The packet a mode sent toward the server, as the server reads it: past DR's Ethernet
 * header (already cut by `received`) and a tunnel's outer headers. */
function inner(p: Uint8Array): Uint8Array {
  const { at, proto } = upperLayer(p);
  if (proto === 4 || proto === 41) return p.subarray(at);
  if (proto === 47) return p.subarray(at + ((p[at]! & 0x80) !== 0 ? 8 : 4));
  if (proto === 17 && ((p[at + 2]! << 8) | p[at + 3]!) === GUE_PORT) return p.subarray(at + 12);
  return p;
}

/** A packet as an engine left it in its slot: the slot's bytes (its virtio_net_hdr first with
 * offloads), and whether it is a frame for the servers' link (DR). */
interface SlotOut {
  bytes: Uint8Array;
  link: boolean;
}

/** `slot` (a packet behind `ring.headroom` bytes of header) through `e` alone at `nowMs`: its
 * verdict and drop reason, whether it made a session, what it forwarded and what it
 * generated; the generated packets are forgotten then, as the forwarder does once written. */
function throughOne(e: Engine, ring: PacketRing, slot: Uint8Array, nowMs: number) {
  const before = e.counters[C_SESSIONS_CREATED]!;
  ring.bytes.set(slot, 0);
  ring.lens[0] = slot.length;
  e.processBurst(ring, 1, nowMs);
  const v = ring.verdicts[0]!;
  const em = e.emit;
  const emitted: SlotOut[] = Array.from({ length: e.emitCount }, (_, g) => ({
    bytes: em.bytes.slice(g * em.slotSize, g * em.slotSize + em.lens[g]!),
    link: em.verdicts[g] === VERDICT_LINK,
  }));
  e.clearEmitted();
  e.handedOver();
  const forwarded: SlotOut | undefined =
    v === VERDICT_FORWARD || v === VERDICT_LINK
      ? { bytes: ring.bytes.slice(0, ring.lens[0]), link: v === VERDICT_LINK }
      : undefined;
  return { v, why: ring.aux[0]!, made: e.counters[C_SESSIONS_CREATED] !== before, forwarded, emitted };
}

/** A slot's packet as its receiver reads it (received). */
const asReceived = (o: SlotOut, headroom: number): Uint8Array => received(o.bytes, 0, o.bytes.length, headroom, o.link);

class Maker {
  readonly pool: Uint8Array[] = [];
  /** What the last packet sent brought out, as it left the LB (outer headers and all), in the
   * order of what add() returned. */
  lastRaw: Uint8Array[] = [];
  private readonly ring: PacketRing;
  get offloads(): boolean {
    return this.headroom > 0;
  }

  constructor(
    private readonly engine: Engine,
    private readonly rng: Rng,
    private readonly headroom: number,
  ) {
    this.ring = new PacketRing(1, slotBytes(headroom), undefined, headroom);
  }

  /** Keep `p` as a template (behind a virtio_net_hdr with offloads: a plain one, or the
   * partial checksum of a TCP or UDP packet) and, when `send`, run it through the engine:
   * what it forwarded and generated, as the receivers read them. */
  add(p: Uint8Array, send = true): Parsed[] {
    const slot = this.withHeader(p);
    this.pool.push(slot);
    return send ? this.send(slot) : [];
  }

  /** A GSO super-packet of `p` (TCP with at least two segments of payload). */
  addGso(p: Uint8Array, segment: number): Parsed[] {
    if (this.headroom === 0) return this.add(p);
    const slot = new Uint8Array(this.headroom + p.length);
    slot.set(vnetHeader(p, p[0]! >> 4 === 4 ? GSO_TCPV4 : GSO_TCPV6, segment));
    slot.set(makePartial(p), this.headroom);
    this.pool.push(slot);
    return this.send(slot);
  }

  private withHeader(p: Uint8Array): Uint8Array {
    if (this.headroom === 0) return p;
    const slot = new Uint8Array(this.headroom + p.length);
    const { proto } = upperLayer(p);
    if (!isFragment(p) && (proto === 6 || proto === 17) && this.rng.below(2) === 0) {
      slot.set(vnetHeader(p, 0, 0));
      slot.set(makePartial(p), this.headroom);
    } else slot.set(p, this.headroom);
    return slot;
  }

  private send(slot: Uint8Array): Parsed[] {
    const r = throughOne(this.engine, this.ring, slot, 0);
    const generated = r.emitted.map((o) => asReceived(o, this.headroom)).filter((p) => !isFragment(p));
    this.lastRaw = r.forwarded ? [asReceived(r.forwarded, this.headroom), ...generated] : generated;
    return this.lastRaw.map((p) => parse(inner(p)));
  }
}

const SYN_OPTIONS = [
  [],
  [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(1, 0), 1, ...opt.ws(7)],
  [...opt.mss(1400), 1, 1, ...opt.ts(0xfffffff0, 0)],
];
const DATA_OPTIONS = [[], [1, 1, ...opt.ts(5, 6)], [1, 1, ...opt.sack([[1, 2]])]];

function bytes(rng: Rng, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => rng.below(256));
}

/** One TCP conversation with `vip:port` from client port `sport`. */
function tcpFlow(m: Maker, rng: Rng, fam: Family, vip: string, port: number, sport: number): void {
  const client = { src: fam.client, dst: vip, sport, dport: port };
  const isn = rng.next();
  const first = m.add(tcp({ ...client, seq: isn, flags: SYN, options: rng.pick(SYN_OPTIONS) }));
  const towardServer = (out: Parsed[]) => out.findIndex((p) => p.proto === 6 && p.dst !== fam.client);
  let at = towardServer(first);
  let toServer = first[at];
  // What left the LB toward the server (a tunnel's outer packet for TUNNEL).
  let leftLb = m.lastRaw[at];
  let clientAck: number | undefined;
  const proxyAnswer = first.find((p) => p.proto === 6 && p.dst === fam.client && p.flags === (SYN | ACK));
  if (proxyAnswer) {
    // The SYN proxy answered with a cookie: the client's ACK makes it open the server's side.
    clientAck = proxyAnswer.seq + 1;
    const next = m.add(tcp({ ...client, seq: isn + 1, ack: clientAck, flags: ACK, options: rng.pick(DATA_OPTIONS) }));
    at = towardServer(next);
    toServer = next[at];
    leftLb = m.lastRaw[at];
  }
  if (!toServer || !leftLb) return;
  const server = { src: toServer.dst, dst: toServer.src, sport: toServer.dport, dport: toServer.sport };
  const rsIsn = rng.next();
  const synAck = m.add(
    tcp({ ...server, seq: rsIsn, ack: toServer.seq + 1, flags: SYN | ACK, options: rng.pick(SYN_OPTIONS) }),
  );
  const toClient = synAck.find((p) => p.proto === 6 && p.dst === fam.client);
  clientAck ??= toClient ? toClient.seq + 1 : rsIsn + 1;
  const payload = bytes(rng, 1 + rng.below(1300));
  const options = rng.pick(DATA_OPTIONS);
  m.add(tcp({ ...client, seq: isn + 1, ack: clientAck, flags: ACK | PSH, options, payload }));
  m.add(tcp({ ...server, seq: rsIsn + 1, ack: toServer.seq + 1, flags: ACK | PSH, options, payload }));
  // Super-packets both ways (plain: a full-sized packet, which a tunnel finds too big).
  const big = bytes(rng, m.offloads ? 2000 + rng.below(4000) : 1400 + rng.below(60));
  m.addGso(tcp({ ...client, seq: isn + 1, ack: clientAck, flags: ACK, options, payload: big }), 500 + rng.below(900));
  m.addGso(tcp({ ...server, seq: rsIsn + 1, ack: toServer.seq + 1, flags: ACK, payload: big }), 1000);
  // An error from the server's side about what the LB sent it, and a router's "too big"
  // about the packet as it left the LB (a tunnel's outer packet for TUNNEL), to its source.
  const quoted = tcp({
    ...server,
    src: toServer.src,
    dst: toServer.dst,
    sport: toServer.sport,
    dport: toServer.dport,
    seq: toServer.seq,
    flags: ACK,
  });
  m.add(
    icmp(
      toServer.dst,
      toServer.src,
      fam === V4 ? 3 : 1,
      fam === V4 ? 3 : 4,
      0,
      quoted.subarray(0, fam === V4 ? 28 : 48),
    ),
  );
  const router = fam === V4 ? ROUTER[4] : ROUTER[6];
  const outerV4 = leftLb[0]! >> 4 === 4;
  m.add(
    icmp(
      router,
      parse(leftLb).src,
      outerV4 ? 3 : 2,
      outerV4 ? 4 : 0,
      1300,
      leftLb.subarray(0, Math.min(leftLb.length, outerV4 ? 548 : 1232)),
    ),
  );
  m.add(tcp({ ...client, seq: isn + 1 + payload.length, ack: clientAck, flags: FIN | ACK }), rng.below(4) === 0);
  m.add(tcp({ ...server, seq: rsIsn + 1, flags: RST }), false);
}

/** A UDP flow with `vip:port`: a datagram, the answer, one that IP fragments carry. */
function udpFlow(m: Maker, rng: Rng, fam: Family, vip: string, port: number, sport: number, id: number): void {
  const client = { src: fam.client, dst: vip, sport, dport: port };
  const out = m.add(udp({ ...client, payload: bytes(rng, rng.below(1200)) }));
  const toServer = out.find((p) => p.proto === 17 && p.dst !== fam.client);
  if (toServer)
    m.add(
      udp({
        src: toServer.dst,
        dst: toServer.src,
        sport: toServer.dport,
        dport: toServer.sport,
        payload: bytes(rng, 100),
      }),
    );
  const large = udp({ ...client, payload: bytes(rng, 2000 + rng.below(2000)) });
  const frags = fragmentsOf(large, 1232, id);
  if (rng.below(3) === 0) frags.reverse();
  for (const f of frags) m.add(f);
}

function templates(engine: Engine, rng: Rng, headroom: number): Uint8Array[] {
  const m = new Maker(engine, rng, headroom);
  const tcpPorts = [80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94];
  const udpPorts = [53, 54, 55, 56, 57, 58];
  for (let i = 0; i < 240; i++) {
    const fam = i % 2 === 0 ? V4 : V6;
    const sport = 20000 + i;
    if (i % 8 === 7) {
      const vip = fam === V4 ? ALL_PORTS_VIP[4] : ALL_PORTS_VIP[6];
      tcpFlow(m, rng, fam, vip, 1 + rng.below(65535), sport);
      udpFlow(m, rng, fam, vip, 1 + rng.below(65535), sport, i);
    } else if (i % 3 === 2) udpFlow(m, rng, fam, fam.vip, rng.pick(udpPorts), sport, i);
    else tcpFlow(m, rng, fam, fam.vip, rng.pick(tcpPorts), sport);
    // A mid-connection packet of a flow no one has seen (sloppy services take it up).
    if (i % 5 === 0)
      m.add(
        tcp({
          src: fam.client,
          dst: fam.vip,
          sport: sport + 5000,
          dport: rng.pick([91, 92, 93]),
          seq: rng.next(),
          ack: rng.next(),
          flags: ACK,
          payload: bytes(rng, 64),
        }),
      );
  }
  // Echo requests to the VIPs (answered by the LB).
  m.add(icmp(V4.client, V4.vip, 8, 0, 0x12340001, bytes(rng, 56)));
  m.add(icmp(V6.client, V6.vip, 128, 0, 0x12340001, bytes(rng, 56)));
  return m.pool;
}

/** A packet's flow, the same both ways: its addresses and ports (none: its bytes). */
function flowOf(p: Uint8Array): string {
  try {
    const x = parse(p);
    if (x.proto !== 6 && x.proto !== 17) return Buffer.from(p).toString('hex');
    return [`${x.src}|${x.sport}`, `${x.dst}|${x.dport}`].sort().join(' ');
  } catch {
    return Buffer.from(p).toString('hex');
  }
}

/** What a tunnel's real server makes of a packet a node sent: the outer destination and the
 * inner packet (a node's own tunnel source differs from its peer's; nothing reads it). */
function asServerSees(p: Uint8Array): Uint8Array {
  const v = p[0]! >> 4;
  if (v !== 4 && v !== 6) return p; // a DR frame
  const x = parse(p);
  const body = inner(p);
  if (body === p) return p;
  return Buffer.concat([Buffer.from(x.dst), Buffer.from([x.proto]), body]);
}

/**
 * Every template through engine `a` and its followers `others` at `nowMs`, one slot at a time:
 * where all forward it on a session they had, each follower's output and what it generated
 * must be the same bytes as `a`'s (as `seen` reads them). A flow one of them makes a session
 * for here (the other's was never published, or has ended; a new SYN on a closed one) is not
 * compared from then on: each schedules it by its own state.
 */
function twins(
  a: Engine,
  others: readonly Engine[],
  pool: readonly Uint8Array[],
  nowMs: number,
  headroom: number,
  seen: (p: Uint8Array) => Uint8Array = (p) => p,
) {
  const problems: string[] = [];
  let compared = 0;
  const engines = [a, ...others];
  const rings = engines.map(() => new PacketRing(1, slotBytes(headroom), undefined, headroom));
  for (const e of engines) {
    e.advanceTimers(nowMs);
    e.clearEmitted();
  }
  const alike = (m: Uint8Array, n: Uint8Array) =>
    Buffer.from(seen(m.subarray(headroom))).equals(Buffer.from(seen(n.subarray(headroom)))) &&
    Buffer.from(m.subarray(0, headroom)).equals(Buffer.from(n.subarray(0, headroom)));
  const fresh = new Set<string>();
  for (const p of pool) {
    const flow = flowOf(p.subarray(headroom));
    const out = engines.map((e, k) => throughOne(e, rings[k]!, p, nowMs));
    if (out.some((o) => o.made)) fresh.add(flow);
    if (out.some((o) => !o.forwarded) || fresh.has(flow)) continue;
    compared++;
    const x = out[0]!;
    out.slice(1).forEach((y, k) => {
      const same =
        x.v === y.v &&
        alike(x.forwarded!.bytes, y.forwarded!.bytes) &&
        x.emitted.length === y.emitted.length &&
        x.emitted.every((g, i) => alike(g.bytes, y.emitted[i]!.bytes));
      if (!same && problems.length < 5)
        problems.push(
          `in ${hexHead(p)}: ${x.v} ${hexHead(x.forwarded!.bytes)} (+${x.emitted.length}), follower ${k + 1} ${y.v} ${hexHead(y.forwarded!.bytes)} (+${y.emitted.length})`,
        );
    });
  }
  return { problems, compared, nowMs };
}

/**
 * `count` templates in random order through engine `x` and its twin `y` (made alike: the same
 * services, hash seed, secrets), one slot at a time, 5 ms apart: what they forward and generate
 * must be the same bytes. A twin with TUN offloads gets each TCP or UDP packet with a partial
 * checksum half the time (else a header of zeros), and its partial checksums are completed
 * before the comparison. `between(n, nowMs)` runs before packet n (a reload, say).
 */
function twinRun(
  x: Engine,
  y: Engine,
  pool: readonly Uint8Array[],
  count: number,
  rng: Rng,
  between?: (n: number, nowMs: number) => void,
): { problems: string[]; compared: number } {
  shareSecrets(x, y);
  y.ctx.ipIdSeq = x.ctx.ipIdSeq; // the identifications of the datagrams they cut
  const rings = [x, y].map((e) =>
    e.emit.headroom > 0 ? new PacketRing(1, GSO_SLOT_SIZE_BYTES, undefined, e.emit.headroom) : new PacketRing(1),
  );
  const problems: string[] = [];
  let compared = 0;
  for (let n = 0; n < count && problems.length < 5; n++) {
    const p = pool[rng.below(pool.length)]!;
    const { proto } = upperLayer(p);
    const partial = !isFragment(p) && (proto === 6 || proto === 17) && rng.below(2) === 0;
    const nowMs = 5 * n;
    between?.(n, nowMs);
    const out = [x, y].map((e, k) => {
      const h = rings[k]!.headroom;
      const slot = new Uint8Array(h + p.length);
      if (h > 0 && partial) {
        slot.set(vnetHeader(p, 0, 0));
        slot.set(makePartial(p), h);
      } else slot.set(p, h);
      const r = throughOne(e, rings[k]!, slot, nowMs);
      return {
        v: r.v,
        why: r.why,
        bytes: r.forwarded && asReceived(r.forwarded, h),
        emitted: r.emitted.map((o) => asReceived(o, h)),
      };
    });
    const [a, b] = out as [(typeof out)[0], (typeof out)[0]];
    compared++;
    const same =
      a.v === b.v &&
      (a.v !== VERDICT_DROP || a.why === b.why) &&
      (a.bytes === undefined) === (b.bytes === undefined) &&
      (a.bytes === undefined || Buffer.from(a.bytes).equals(Buffer.from(b.bytes!))) &&
      a.emitted.length === b.emitted.length &&
      a.emitted.every((g, i) => Buffer.from(g).equals(Buffer.from(b.emitted[i]!)));
    if (!same)
      problems.push(
        `packet ${n}, ${partial ? 'partial' : 'whole'} checksum, in ${hexHead(p)}: one ${a.v}/${a.why} ${a.bytes ? hexHead(a.bytes) : '-'} (+${a.emitted.length}), its twin ${b.v}/${b.why} ${b.bytes ? hexHead(b.bytes) : '-'} (+${b.emitted.length})`,
      );
  }
  return { problems, compared };
}

const newTotals = () => ({ installed: 0, deleted: 0, conflicts: 0 });

/** One burst's sync from node `from` to node `to`, as `to`'s follower makes it
 * (ha/follower.ts): `to`'s clock (and its copies' timers) moved to `nowMs`, then what `from`
 * published installed there and counted in `totals`; undefined when there was nothing. */
function syncStep(
  from: { ring: SyncRing },
  to: { engine: Engine },
  events: Int32Array,
  totals: ReturnType<typeof newTotals>,
  nowMs: number,
): InstallResult | undefined {
  to.engine.advanceTimers(nowMs);
  const n = from.ring.drain(events, SYNC_RING_EVENTS);
  if (n === 0) return undefined;
  const r = to.engine.installSynced(events, n);
  totals.installed += r.installed + r.updated;
  totals.deleted += r.deleted;
  totals.conflicts += r.conflicts;
  return r;
}

/** Node 2's local addresses in a cluster pair (node 1 has the lab's). */
const LIPS_B = { 4: '198.18.2.9', 6: 'fd00:18:2::9' } as const;

/** Local addresses as cluster peers (PeerLocalAddress): each held by `holder`. */
function peerLips(lips: readonly string[], holder: number) {
  return lips.map((x) => ({ ...parseAddress(x)!, holder }));
}

/** A cluster node forwarding and publishing (its sessions published at once). */
function clusterNode(nodeId: number, specs: ServiceSpec[]) {
  const control = new HaControl();
  control.set(true, true);
  const ring = new SyncRing(SYNC_RING_EVENTS);
  const ha = { nodeId, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 1 };
  const engine = new Engine(
    { capacity: 8192, seed: 81, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC, ha },
    services(specs),
  );
  return { engine, ring };
}

/**
 * Two cluster nodes (1 with the lab's local addresses, 2 with LIPS_B), both forwarding and
 * publishing, each knowing the other's addresses, sessions published at once; `exchange`
 * (an afterBurst) installs each node's events on the other, both clocks moved to the
 * burst's, as their followers do. Failed installs are problems; the rest is counted.
 */
function clusterPair() {
  const a = clusterNode(1, serviceSpecs());
  const b = clusterNode(
    2,
    serviceSpecs().map((x) =>
      x.localAddresses.length === 0 ? x : { ...x, localAddresses: [x.vip.includes(':') ? LIPS_B[6] : LIPS_B[4]] },
    ),
  );
  shareSecrets(a.engine, b.engine); // one ISN key for the cluster (control/isn_secret.ts)
  a.engine.setPeerLocalAddresses(peerLips([LIPS_B[4], LIPS_B[6]], 2));
  b.engine.setPeerLocalAddresses(peerLips([V4.lip, V6.lip], 1));
  const events = new Int32Array(SYNC_RING_EVENTS * EVENT_WORDS);
  const totals = newTotals();
  const exchange = (problems: string[], nowMs: number) => {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const r = syncStep(from, to, events, totals, nowMs);
      if (r && r.failed > 0) problems.push(`install: ${JSON.stringify(r)}`);
    }
  };
  return { a, b, events, totals, exchange };
}

/** Node 2 of a cluster pair (clusterPair) after node 1 died: as its first live backup it holds
 * node 1's local addresses and adopts its sessions, as ha/node.ts does. */
async function nodeOneDies(b: { engine: Engine }) {
  b.engine.setPeerLocalAddresses(peerLips([V4.lip, V6.lip], 2));
  const adopted = await b.engine.adoptSynced(1);
  const reconciled = await b.engine.reconcileSynced();
  return { adopted, reconciled };
}

describe('fuzz: every mode and feature', () => {
  it.each([
    ['plain', 0, PACKETS, 1, 0],
    ['with TUN offloads (virtio_net_hdr, partial checksums, GSO)', VNET_HDR_LEN, PACKETS, 1, 0],
    ['plain, worker 1 of 2', 0, Math.ceil(PACKETS / 4), 2, 1],
  ])(
    '%s: no throw, no write outside the slot, every drop has a reason, checksums right',
    (_what, headroom, count, workers, worker) => {
      const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + headroom + worker;
      const rng = new Rng(seed);
      const engine = new Engine(
        { capacity: 8192, seed: 78, workers, worker, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC, headroom },
        services(),
      );
      const pool = templates(engine, rng, headroom);
      const t = fuzzBursts(engine, pool, count, rng, { headroom, slotBytes: slotBytes(headroom), guePort: GUE_PORT });
      console.log(
        `fuzz (modes, ${_what}) seed ${seed.toString(16)}: ${t.sent} packets from ${pool.length} templates, ${t.forwarded} forwarded, ${t.linked} linked, ${t.dropped} dropped, ${t.held} held, ${t.redirected} redirected, ${t.generated} generated, ${engine.sessionCount} live sessions`,
      );
      expect(t.problems, `seed ${seed.toString(16)}`).toEqual([]);
      expect(t.sent).toBeGreaterThanOrEqual(count);
      expect(t.forwarded).toBeGreaterThan(count / (workers > 1 ? 100 : 10));
      expect(t.linked).toBeGreaterThan(count / 1000);
      expect(t.dropped).toBeGreaterThan(count / 10);
    },
  );

  it('reloads: services left out, drained, cut to one server or switched between NAT and FULLNAT, and back', () => {
    const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x52;
    const rng = new Rng(seed);
    const ids = new IdRegistry();
    const engine = new Engine(
      { capacity: 8192, seed: 80, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC },
      services(serviceSpecs(), ids),
    );
    const pool = templates(engine, rng, 0);
    let bursts = 0;
    let reloads = 0;
    // Every 200 bursts (1 s of the engine's clock) another service set, every other time the
    // whole one again: sessions of services gone or changed go on over the tombstones.
    const reload = () => {
      if (++bursts % 200 !== 0) return;
      reloads++;
      engine.applyServices(services(reloads % 2 === 0 ? serviceSpecs() : reloaded(rng), ids));
    };
    const t = fuzzBursts(engine, pool, PACKETS / 2, rng, { afterBurst: reload, guePort: GUE_PORT });
    console.log(
      `fuzz (modes, reloads) seed ${seed.toString(16)}: ${t.sent} packets, ${reloads} reloads, ${t.forwarded} forwarded, ${t.linked} linked, ${t.generated} generated`,
    );
    expect(t.problems, `seed ${seed.toString(16)}`).toEqual([]);
    expect(reloads).toBeGreaterThan(10);
  });

  it('TUN offloads change nothing but how checksums travel: two engines, one with them, forward alike', () => {
    const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x4f;
    const rng = new Rng(seed);
    const pool = templates(new Engine({ capacity: 8192, seed: 82, timeouts: FUZZ_TIMEOUTS_SEC }, services()), rng, 0);
    const opts = { capacity: 8192, seed: 83, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC };
    const plain = new Engine(opts, services());
    const offload = new Engine({ ...opts, headroom: VNET_HDR_LEN }, services());
    const r = twinRun(plain, offload, pool, PACKETS / 4, rng);
    console.log(`fuzz (modes, offload twins) seed ${seed.toString(16)}: ${r.compared} packets alike`);
    expect(r.problems, `seed ${seed.toString(16)}`).toEqual([]);
  });

  it('a reload that changes nothing changes nothing: an engine reloaded every second forwards as its twin', () => {
    const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x55;
    const rng = new Rng(seed);
    const pool = templates(new Engine({ capacity: 8192, seed: 84, timeouts: FUZZ_TIMEOUTS_SEC }, services()), rng, 0);
    const opts = { capacity: 8192, seed: 85, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC };
    const ids = new IdRegistry();
    const still = new Engine(opts, services(serviceSpecs(), ids));
    const reloaded = new Engine(opts, services(serviceSpecs(), ids));
    let reloads = 0;
    const r = twinRun(still, reloaded, pool, PACKETS / 4, rng, (n) => {
      if (n % 200 !== 0) return;
      reloads++;
      reloaded.applyServices(services(serviceSpecs(), ids));
    });
    console.log(
      `fuzz (modes, reload twins) seed ${seed.toString(16)}: ${r.compared} packets alike over ${reloads} reloads`,
    );
    expect(r.problems, `seed ${seed.toString(16)}`).toEqual([]);
  });

  it.each([
    ['plain', 0],
    ['with TUN offloads', VNET_HDR_LEN],
  ])(
    'HA, %s: the master publishes every change, a standby installs them, then takes over and forwards',
    async (_what, headroom) => {
      const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x4a + headroom;
      const rng = new Rng(seed);
      const node = (nodeId: number, master: boolean) => {
        const control = new HaControl();
        control.set(master, master);
        const ring = new SyncRing(SYNC_RING_EVENTS);
        const ha = { nodeId, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 1 };
        const engine = new Engine(
          { capacity: 8192, seed: 79, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC, ha, headroom },
          services(),
        );
        return { engine, ring, control };
      };
      const a = node(1, true);
      const b = node(2, false);
      shareSecrets(a.engine, b.engine); // as a pair's nodes share theirs (control/isn_secret.ts)
      const events = new Int32Array(SYNC_RING_EVENTS * EVENT_WORDS);
      const totals = newTotals();
      // The events of a burst, installed on the standby as the follower does.
      const follow = (problems: string[], nowMs: number) => {
        const r = syncStep(a, b, events, totals, nowMs);
        if (r && (r.failed > 0 || r.conflicts > 0)) problems.push(`install: ${JSON.stringify(r)}`);
      };
      const pool = templates(a.engine, rng, headroom);
      const io = { headroom, slotBytes: slotBytes(headroom), guePort: GUE_PORT };
      const t = fuzzBursts(a.engine, pool, PACKETS / 2, rng, { ...io, afterBurst: follow });
      expect(t.problems, `seed ${seed.toString(16)} (master)`).toEqual([]);
      expect(totals.installed).toBeGreaterThan(1000);
      expect(totals.deleted).toBeGreaterThan(100);
      // A third node loads the master's hash as a joining standby does: a full resync.
      const c = node(3, false);
      shareSecrets(a.engine, c.engine);
      c.engine.advanceTimers(t.endMs);
      const snap = await snapshotEvents(a.engine);
      expect(c.engine.installSynced(snap.events, snap.n)).toMatchObject({ failed: 0, conflicts: 0 });
      // The standbys take over (their installed sessions become their own).
      await promote(b);
      await promote(c);
      // Each flow they had goes on on both as on the master: byte for byte, what they forward
      // and generate for every template that finds a session on all three.
      const twin = twins(a.engine, [b.engine, c.engine], pool, t.endMs + TIMER_TICK_MS, headroom);
      expect(twin.problems, `seed ${seed.toString(16)} (the standbys as their master)`).toEqual([]);
      expect(twin.compared).toBeGreaterThan(100);
      // And it gets the traffic.
      const after = fuzzBursts(b.engine, pool, PACKETS / 4, rng, { ...io, startMs: twin.nowMs });
      console.log(
        `fuzz (modes, HA, ${_what}) seed ${seed.toString(16)}: ${t.sent} packets on the master, ${totals.installed} installs and ${totals.deleted} deletes on the standby; ${twin.compared} templates forwarded alike by the master and both standbys after the takeover; ${after.sent} packets after it, ${after.forwarded} forwarded, ${after.linked} linked, ${after.generated} generated`,
      );
      expect(after.problems, `seed ${seed.toString(16)} (after the takeover)`).toEqual([]);
      expect(after.forwarded).toBeGreaterThan(PACKETS / 100);
    },
  );

  it('cluster: two nodes forward the same flows on the copies of each other; one dies, the other adopts and goes on', async () => {
    const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x43;
    const rng = new Rng(seed);
    const { a, b, events, totals, exchange } = clusterPair();
    const pool = templates(a.engine, rng, 0);
    const chunk = Math.ceil(PACKETS / 16);
    // The routers move the flows between the nodes (ECMP rehashes), back and forth.
    let clock = 0;
    for (let round = 0; round < 4; round++)
      for (const n of [a, b]) {
        const t = fuzzBursts(n.engine, pool, chunk, rng, { afterBurst: exchange, guePort: GUE_PORT, startMs: clock });
        expect(t.problems, `seed ${seed.toString(16)} round ${round}`).toEqual([]);
        clock = t.endMs;
      }
    expect(totals.installed).toBeGreaterThan(1000);
    const { adopted, reconciled } = await nodeOneDies(b);
    const alone = fuzzBursts(b.engine, pool, PACKETS / 4, rng, {
      afterBurst: () => b.ring.drain(events, SYNC_RING_EVENTS),
      guePort: GUE_PORT,
      startMs: clock,
    });
    console.log(
      `fuzz (modes, cluster) seed ${seed.toString(16)}: ${8 * chunk} packets over two nodes, ${totals.installed} installs, ${totals.deleted} deletes, ${totals.conflicts} conflicts; node 2 adopted ${adopted} and claimed ${reconciled.claimed}, then ${alone.sent} packets, ${alone.forwarded} forwarded, ${alone.generated} generated`,
    );
    expect(alone.problems, `seed ${seed.toString(16)} (after the death)`).toEqual([]);
    expect(alone.forwarded).toBeGreaterThan(PACKETS / 100);
  });

  it('cluster: the node that adopts a dead peer forwards every flow it had from the peer as the peer did', async () => {
    const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x6d6f_6465) + 0x54;
    const rng = new Rng(seed);
    const { a, b, totals, exchange } = clusterPair();
    // The routers send every flow to node 1; node 2 follows it.
    const pool = templates(a.engine, rng, 0);
    const t = fuzzBursts(a.engine, pool, PACKETS / 2, rng, { afterBurst: exchange, guePort: GUE_PORT });
    expect(t.problems, `seed ${seed.toString(16)}`).toEqual([]);
    expect(totals.installed).toBeGreaterThan(1000);
    const { adopted } = await nodeOneDies(b);
    // Its FULLNAT copies go on from node 1's local addresses (node 2 holds them now), the other
    // modes' from the client's: byte for byte what node 1 would have sent (a tunnel's outer
    // source is each node's own).
    const twin = twins(a.engine, [b.engine], pool, t.endMs + TIMER_TICK_MS, 0, asServerSees);
    console.log(
      `fuzz (modes, cluster takeover) seed ${seed.toString(16)}: ${t.sent} packets on node 1, ${totals.installed} installs on node 2, which adopted ${adopted}; ${twin.compared} templates forwarded alike after the death`,
    );
    expect(twin.problems, `seed ${seed.toString(16)} (node 2 for node 1)`).toEqual([]);
    expect(twin.compared).toBeGreaterThan(100);
    // Node 1 comes back (a new process): it loads node 2's hash and claims the sessions on its
    // own addresses; node 2, told it lives, hands them over. Each flow then goes on on node 1
    // as on node 2.
    const back = clusterNode(1, serviceSpecs());
    shareSecrets(b.engine, back.engine);
    back.engine.setPeerLocalAddresses(peerLips([LIPS_B[4], LIPS_B[6]], 2));
    const nowMs = twin.nowMs + TIMER_TICK_MS;
    back.engine.advanceTimers(nowMs);
    b.engine.advanceTimers(nowMs);
    b.ring.drain(new Int32Array(SYNC_RING_EVENTS * EVENT_WORDS), SYNC_RING_EVENTS); // its own hash's
    const loaded = await snapshotEvents(b.engine);
    expect(back.engine.installSynced(loaded.events, loaded.n)).toMatchObject({ failed: 0 });
    const claimed = await back.engine.reconcileSynced();
    b.engine.setPeerLocalAddresses(peerLips([V4.lip, V6.lip], 1));
    const handed = await b.engine.reconcileSynced();
    const handover = newTotals();
    expect(syncStep(b, back, new Int32Array(SYNC_RING_EVENTS * EVENT_WORDS), handover, nowMs)).toMatchObject({
      failed: 0,
      conflicts: 0,
    });
    const again = twins(b.engine, [back.engine], pool, nowMs, 0, asServerSees);
    console.log(
      `fuzz (modes, cluster return) seed ${seed.toString(16)}: node 1 back claimed ${claimed.claimed}, node 2 handed over ${handed.handedOver}; ${again.compared} templates forwarded alike`,
    );
    expect(again.problems, `seed ${seed.toString(16)} (node 1 back)`).toEqual([]);
    expect(again.compared).toBeGreaterThan(50);
  });
});
