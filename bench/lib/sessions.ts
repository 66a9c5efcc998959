/**
 * Sessions for the benchmarks: one IPv4 service (4 real servers, 8 local addresses) and real
 * handshakes (SYN, SYN-ACK, ACK with TOA) through an Engine, as a load balancer sees them.
 */

import { performance } from 'node:perf_hooks';
import type { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { csumFromSum, sumWords } from '../../src/packet/checksum.js';
import { VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';

export const BURST = 256;
const RS_COUNT = 4;
const LIP_COUNT = 8; // 4 RS × 8 LIPs × 64 511 ports ≈ 2M local tuples: room for 1M sessions

export const VIP = 0xc6120064; // 198.18.0.100
const CLIENT_BASE = 0xc6130000; // 198.19.0.0/16 + higher: clients
const RS_BASE = 0xc6120100; // 198.18.1.0
const LIP_BASE = 0xc6120200; // 198.18.2.0

function ip(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The benchmark's service; `node` > 0 gives it the local addresses of cluster node `node`
 * (each node of a cluster has its own, LIP_COUNT apart). */
export function services(node = 0, extra: Partial<ServiceSpec> = {}) {
  return resolveServices(
    [
      serviceWithDefaults({
        synProxy: 'off', // the plain path; the SYN proxy has figures of its own
        ...extra,
        vip: ip(VIP),
        port: 80,
        scheduler: 'rr',
        realServers: Array.from({ length: RS_COUNT }, (_, i) => ({
          address: ip(RS_BASE + 11 + i),
          port: 8080,
          weight: 1,
        })),
        localAddresses: Array.from({ length: LIP_COUNT }, (_, i) => ip(LIP_BASE + 1 + node * LIP_COUNT + i)),
      }),
    ],
    new IdRegistry(),
  );
}

/** The benchmark's service in forwarding mode `mode` (docs/modes.md): TUNNEL and DR keep the
 * port, NAT and DR have no local addresses; DR comes with the MACs control/link.ts would add. */
export function modeServices(mode: 'fullnat' | 'nat' | 'tunnel' | 'dr') {
  const keepsPort = mode === 'tunnel' || mode === 'dr';
  const [svc] = resolveServices(
    [
      serviceWithDefaults({
        mode,
        synProxy: 'off',
        translateTimestamps: false,
        toa: { enabled: mode === 'fullnat', kind: 254, kindV6: 254, inSyn: false },
        vip: ip(VIP),
        port: 80,
        scheduler: 'rr',
        realServers: Array.from({ length: RS_COUNT }, (_, i) => ({
          address: ip(RS_BASE + 11 + i),
          port: keepsPort ? 80 : 8080,
          weight: 1,
        })),
        localAddresses:
          mode === 'nat' || mode === 'dr' ? [] : Array.from({ length: LIP_COUNT }, (_, i) => ip(LIP_BASE + 1 + i)),
      }),
    ],
    new IdRegistry(),
  );
  if (mode !== 'dr') return [svc!];
  return [
    {
      ...svc!,
      linkMac: '02:00:00:00:00:01',
      realServers: svc!.realServers.map((r, i) => ({ ...r, mac: `02:00:00:00:01:${(i + 16).toString(16)}` })),
    },
  ];
}

/** Write an IPv4 TCP header pair (52 bytes with NOP NOP TS) into the ring slot. */
export function writeTcp(
  dv: DataView,
  off: number,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  seq: number,
  ack: number,
  flags: number,
  toaRoom: boolean,
): number {
  const optLen = toaRoom ? 12 : 12;
  const len = 20 + 20 + optLen;
  dv.setUint32(off, 0x45000000 | len);
  dv.setUint32(off + 4, 0x00004000);
  dv.setUint32(off + 8, 0x40060000);
  dv.setUint32(off + 12, src >>> 0);
  dv.setUint32(off + 16, dst >>> 0);
  const t = off + 20;
  dv.setUint16(t, sport);
  dv.setUint16(t + 2, dport);
  dv.setUint32(t + 4, seq >>> 0);
  dv.setUint32(t + 8, ack >>> 0);
  dv.setUint16(t + 12, (((20 + optLen) >>> 2) << 12) | flags);
  dv.setUint16(t + 14, 502);
  dv.setUint32(t + 16, 0);
  dv.setUint32(t + 20, 0x0101080a); // NOP NOP TS
  dv.setUint32(t + 24, 12345);
  dv.setUint32(t + 28, 67890);
  return len;
}

/** An IPv4 UDP datagram of `payload` bytes as its fragments of at most `piece` payload bytes
 * (a multiple of 8), identification `id`; the UDP checksum left 0 (none, as IPv4 allows). */
export function udpFragments(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  id: number,
  payload: number,
  piece: number,
): Uint8Array[] {
  const udp = new Uint8Array(8 + payload);
  const uv = new DataView(udp.buffer);
  uv.setUint16(0, sport);
  uv.setUint16(2, dport);
  uv.setUint16(4, udp.length);
  for (let i = 8; i < udp.length; i++) udp[i] = i & 255;
  const out: Uint8Array[] = [];
  for (let off = 0; off < udp.length; off += piece) {
    const part = udp.subarray(off, Math.min(off + piece, udp.length));
    const more = off + piece < udp.length;
    const f = new Uint8Array(20 + part.length);
    const dv = new DataView(f.buffer);
    dv.setUint32(0, 0x45000000 | f.length);
    dv.setUint32(4, ((id & 0xffff) << 16) | (off >>> 3) | (more ? 0x2000 : 0));
    dv.setUint32(8, 0x40110000);
    dv.setUint32(12, src >>> 0);
    dv.setUint32(16, dst >>> 0);
    dv.setUint16(10, csumFromSum(sumWords(f, 0, 20)));
    f.set(part, 20);
    out.push(f);
  }
  return out;
}

/** Per-session facts learned while opening them (what the outbound direction needs). */
export interface Opened {
  client: Uint32Array;
  cport: Uint16Array;
  lip: Uint32Array;
  lport: Uint16Array;
  rip: Uint32Array;
  lbIsn: Uint32Array;
}

export function clientOf(i: number): [number, number] {
  return [CLIENT_BASE + (i >>> 14), 1024 + (i & 16383)];
}

/** Open n sessions with full handshakes; returns their facts and the time spent in the engine. */
export function openSessions(
  engine: Engine,
  n: number,
  nowMs: number,
  firstClient = 0,
): { o: Opened; seconds: number } {
  const ring = new PacketRing(BURST);
  const dv = ring.view;
  const slot = ring.slotSize;
  const o: Opened = {
    client: new Uint32Array(n),
    cport: new Uint16Array(n),
    lip: new Uint32Array(n),
    lport: new Uint16Array(n),
    rip: new Uint32Array(n),
    lbIsn: new Uint32Array(n),
  };
  let spent = 0;
  const SYN = 0x02;
  const ACK = 0x10;
  for (let start = 0; start < n; start += BURST) {
    const count = Math.min(BURST, n - start);
    // SYN
    for (let k = 0; k < count; k++) {
      const [c, p] = clientOf(firstClient + start + k);
      ring.lens[k] = writeTcp(dv, k * slot, c, VIP, p, 80, 1000, 0, SYN, true);
    }
    let t0 = performance.now();
    engine.processBurst(ring, count, nowMs);
    spent += performance.now() - t0;
    for (let k = 0; k < count; k++) {
      if (ring.verdicts[k] !== VERDICT_FORWARD)
        throw new Error(`SYN ${start + k} not forwarded: reason ${ring.aux[k]}`);
      const i = start + k;
      const off = k * slot;
      [o.client[i], o.cport[i]] = clientOf(firstClient + i);
      o.lip[i] = dv.getUint32(off + 12);
      o.rip[i] = dv.getUint32(off + 16);
      o.lport[i] = dv.getUint16(off + 20);
      o.lbIsn[i] = dv.getUint32(off + 24);
    }
    // SYN-ACK
    for (let k = 0; k < count; k++) {
      const i = start + k;
      ring.lens[k] = writeTcp(
        dv,
        k * slot,
        o.rip[i]!,
        o.lip[i]!,
        8080,
        o.lport[i]!,
        5000,
        o.lbIsn[i]! + 1,
        SYN | ACK,
        true,
      );
    }
    t0 = performance.now();
    engine.processBurst(ring, count, nowMs);
    spent += performance.now() - t0;
    // ACK (TOA inserted: ack == rs_isn + 1)
    for (let k = 0; k < count; k++) {
      const i = start + k;
      ring.lens[k] = writeTcp(dv, k * slot, o.client[i]!, VIP, o.cport[i]!, 80, 1001, 5001, ACK, true);
    }
    t0 = performance.now();
    engine.processBurst(ring, count, nowMs);
    spent += performance.now() - t0;
    for (let k = 0; k < count; k++) {
      if (ring.verdicts[k] !== VERDICT_FORWARD || ring.lens[k] !== 60) throw new Error('handshake ACK without TOA');
    }
  }
  return { o, seconds: spent / 1000 };
}

/** A small deterministic generator (xorshift32). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** `packets` established packets (52-byte ACKs with a timestamp, half client → RS and half
 * RS → client), each at a random one of the `n` open sessions; returns Mpps (only
 * Engine.processBurst is timed). */
export function established(engine: Engine, o: Opened, n: number, packets: number, nowMs: number): number {
  const ring = new PacketRing(BURST);
  const dv = ring.view;
  const slot = ring.slotSize;
  const next = rng(n);
  let spent = 0;
  const ACK = 0x10;
  for (let done = 0; done < packets; done += BURST) {
    for (let k = 0; k < BURST; k++) {
      const i = next() % n;
      const off = k * slot;
      ring.lens[k] =
        (k & 1) === 0
          ? writeTcp(dv, off, o.client[i]!, VIP, o.cport[i]!, 80, 2001, 6001, ACK, false)
          : writeTcp(dv, off, o.rip[i]!, o.lip[i]!, 8080, o.lport[i]!, 6001, o.lbIsn[i]! + 1001, ACK, false);
    }
    const t0 = performance.now();
    engine.processBurst(ring, BURST, nowMs);
    spent += performance.now() - t0;
    if (ring.verdicts[0] !== VERDICT_FORWARD || ring.verdicts[1] !== VERDICT_FORWARD) throw new Error('not forwarded');
  }
  return packets / (spent / 1000) / 1e6;
}
