/**
 * TUN offloads (IFF_VNET_HDR): packets arrive behind a virtio_net_hdr, possibly with a
 * partial checksum (NEEDS_CSUM: the field holds the folded pseudo-header sum) and possibly
 * as GSO super-packets. Each case completes the checksum the way the kernel does after
 * the engine is done and requires exactly the bytes the engine produces for the same
 * packet with a full checksum and no header.
 */

import { describe, expect, it } from 'vitest';
import { EMIT_SLOTS_GSO, GSO_SLOT_SIZE_BYTES, VNET_HDR_LEN } from '../../src/constants.js';
import {
  C_DROPPED,
  C_GSO_PACKETS,
  DROPS_BASE,
  C_TOA_INSERTED,
  C_TOA_SKIPPED_GSO,
} from '../../src/dataplane/counters.js';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { DROP_TUNNEL_NO_ROOM, DROP_TUNNEL_TOO_BIG, VERDICT_DROP, VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { labServices, shareSecrets, V4, V6 } from '../helpers/engine.js';
import { complete, GSO_TCPV4, GSO_TCPV6, makePartial, vnetHeader } from '../helpers/vnet.js';
import {
  ACK,
  checksumsOk,
  DEST_OPTIONS,
  extHeaderBytes,
  HOP_BY_HOP,
  FIN,
  opt,
  parse,
  PSH,
  SYN,
  tcp,
  udp,
  withExtHeaders,
  type TcpSpec,
} from '../helpers/packets.js';

const CWR = 0x80;
const HBH = HOP_BY_HOP;
const DST = DEST_OPTIONS;

class Pair {
  readonly plain: Engine;
  readonly vnet: Engine;
  readonly ringPlain = new PacketRing(1, GSO_SLOT_SIZE_BYTES);
  readonly ringVnet = new PacketRing(1, GSO_SLOT_SIZE_BYTES, undefined, VNET_HDR_LEN);

  constructor() {
    const services = () => resolveServices(labServices(), new IdRegistry());
    this.plain = new Engine({ capacity: 256, seed: 9 }, services());
    this.vnet = new Engine({ capacity: 256, seed: 9, headroom: VNET_HDR_LEN }, services());
    shareSecrets(this.plain, this.vnet);
  }

  /** Send `p` to both engines (partial + header to one); returns the completed vnet output. */
  send(p: Uint8Array, gsoType = 0, gsoSize = 0): { out: Uint8Array; header: Uint8Array } {
    this.ringPlain.put(0, p);
    this.plain.processBurst(this.ringPlain, 1, 0);
    const header = vnetHeader(p, gsoType, gsoSize);
    this.ringVnet.put(0, makePartial(p), header);
    this.vnet.processBurst(this.ringVnet, 1, 0);
    expect(this.ringVnet.verdicts[0]).toBe(this.ringPlain.verdicts[0]);
    const out = complete(this.ringVnet.get(0));
    if (this.ringPlain.verdicts[0] === VERDICT_FORWARD) {
      expect(checksumsOk(out)).toEqual({ ip: true, l4: true });
      expect(out).toEqual(this.ringPlain.get(0));
      expect(this.ringVnet.lens[0]).toBe(this.ringPlain.lens[0]! + VNET_HDR_LEN);
    }
    const off = 0;
    return { out, header: this.ringVnet.bytes.slice(off, off + VNET_HDR_LEN) };
  }
}

describe.each([
  ['IPv4', V4, GSO_TCPV4],
  ['IPv6', V6, GSO_TCPV6],
] as const)('offloads %s', (_n, fam, gsoType) => {
  it('partial checksums: SYN, SYN-ACK (MSS clamp), ACK with TOA, data, SACK — same bytes as full', () => {
    const e = new Pair();
    const C = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.client, dst: fam.vip, sport: 40100, dport: 80, seq, ack, flags, ...extra });
    e.send(C(100, 0, SYN, { options: [...opt.mss(1460), ...opt.sackPerm(), 1, 1] }));
    const s = e.plain.describe([...e.plain.sessionIds()][0]!);
    const lb = (100 + s.seqDelta) >>> 0;
    const R = (seq: number, ack: number, flags: number, extra: object = {}) =>
      tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: s.lport, seq, ack, flags, ...extra });
    e.send(R(700, lb + 1, SYN | ACK, { options: [...opt.mss(1460), ...opt.sackPerm(), 1, 1] }));
    const { out } = e.send(C(101, 701, ACK, { options: opt.toa(254, 1, fam === V4 ? '10.9.9.9' : 'fd00::9') }));
    expect(parse(out).options).toEqual(opt.toa(254, 40100, fam.client));
    expect(e.vnet.counters[C_TOA_INSERTED]).toBe(1);
    e.send(C(101, 701, ACK | PSH, { payload: new Uint8Array(300).fill(7) }));
    e.send(R(701, lb + 301, ACK, { options: [1, 1, ...opt.sack([[lb + 1000, lb + 2000]])] }));
  });

  // IPv6 also behind options headers (packet/ipv6_ext.ts), which every segment keeps.
  const headers = [
    ['', []],
    [' (behind IPv6 options headers, kept)', [HBH, DST]],
  ] as const;
  it.each(fam === V4 ? headers.slice(0, 1) : headers)(
    'a GSO super-packet%s gets TOA in its header (so in every segment), hdr_len grows, segments stay within the MTU',
    (_t, ext) => {
      const x = (p: Uint8Array) => withExtHeaders(p, ...ext);
      const e = new Pair();
      e.send(x(tcp({ src: fam.client, dst: fam.vip, sport: 40200, dport: 80, seq: 5, flags: SYN })));
      const s = e.plain.describe([...e.plain.sessionIds()][0]!);
      e.send(
        x(
          tcp({
            src: fam.rs1,
            dst: fam.lip,
            sport: 8080,
            dport: s.lport,
            seq: 9,
            ack: (6 + s.seqDelta) >>> 0,
            flags: SYN | ACK,
          }),
        ),
      );
      // 40 000 bytes sent before the server answered: TOA would be due (ack == rs_isn + 1).
      const big = x(
        tcp({
          src: fam.client,
          dst: fam.vip,
          sport: 40200,
          dport: 80,
          seq: 6,
          ack: 10,
          flags: ACK | PSH,
          payload: new Uint8Array(40000).fill(3),
        }),
      );
      e.ringVnet.put(0, makePartial(big), vnetHeader(big, gsoType, 1448));
      const hv = new DataView(e.ringVnet.bytes.buffer, 0, VNET_HDR_LEN);
      const hdrLenIn = hv.getUint16(2, true);
      e.vnet.processBurst(e.ringVnet, 1, 0);
      expect(e.ringVnet.verdicts[0]).toBe(VERDICT_FORWARD);
      const out = complete(e.ringVnet.get(0));
      expect(checksumsOk(out)).toEqual({ ip: true, l4: true });
      if (fam === V6) expect(extHeaderBytes(out)).toEqual(extHeaderBytes(big));
      const p = parse(out);
      const toaLen = fam === V4 ? 8 : 20;
      expect(p.options).toEqual(opt.toa(254, 40200, fam.client));
      expect(p.payload.length).toBe(40000);
      expect(hv.getUint16(2, true)).toBe(hdrLenIn + toaLen);
      // Each segment: headers + TOA + gso_size within the 1500-byte MTU.
      expect(hdrLenIn + toaLen + hv.getUint16(4, true)).toBeLessThanOrEqual(1500);
      expect(e.vnet.counters[C_TOA_SKIPPED_GSO]).toBe(0);
      expect(e.vnet.counters[C_GSO_PACKETS]).toBe(1);
    },
  );

  it('partial UDP checksums are updated for the address change only', () => {
    const e = new Pair();
    e.send(udp({ src: fam.client, dst: fam.vip, sport: 5000, dport: 53, payload: new Uint8Array(64).fill(1) }));
  });
});

describe.each([
  ['IPv4', V4, GSO_TCPV4],
  ['IPv6', V6, GSO_TCPV6],
] as const)('offloads %s: TUNNEL finishes them in software', (_n, fam, gsoType) => {
  const v4 = fam === V4;
  const outer = v4 ? 20 : 40;
  const spec = serviceWithDefaults({
    protocol: 'tcp',
    vip: fam.vip,
    port: 80,
    scheduler: 'rr',
    mode: 'tunnel',
    localAddresses: [fam.lip],
    realServers: [{ address: fam.rs1, port: 80, weight: 1 }],
  });
  const C = (t: Partial<TcpSpec> & { flags: number }) =>
    tcp({ src: fam.client, dst: fam.vip, sport: 40300, dport: 80, ...t });
  const setup = (tunnel?: ServiceSpec['tunnel']) => {
    const e = new Engine(
      { capacity: 64, seed: 1, headroom: VNET_HDR_LEN },
      resolveServices([{ ...spec, ...(tunnel ? { tunnel } : {}) }], new IdRegistry()),
    );
    const ring = new PacketRing(1, GSO_SLOT_SIZE_BYTES, undefined, VNET_HDR_LEN);
    return { e, ring };
  };
  /** The outer header (from the tunnel source to the real server), `gre` bytes of GRE header
   * (its checksum too, checksumsOk), and the inner packet. */
  /** `out` is `inner` in the tunnel, behind `gre` bytes of GRE header (or of UDP and GUE
   * headers: `proto` 17). */
  const expectInTunnel = (out: Uint8Array, inner: Uint8Array, gre = 0, proto = gre > 0 ? 47 : v4 ? 4 : 41) => {
    expect(checksumsOk(out)).toEqual({ ip: true, l4: true });
    const ends = parse(tcp({ src: fam.lip, dst: fam.rs1, sport: 1, dport: 1, flags: ACK }));
    expect(parse(out)).toMatchObject({ proto, src: ends.src, dst: ends.dst });
    expect(out.subarray(outer + gre)).toEqual(inner);
    expect(checksumsOk(out.subarray(outer + gre))).toEqual({ ip: true, l4: true });
  };

  it('a partial checksum is completed before the packet goes into the tunnel', () => {
    const { e, ring } = setup();
    const syn = C({ seq: 1000, flags: SYN, options: opt.mss(1460) });
    ring.put(0, makePartial(syn), vnetHeader(syn, 0, 0));
    e.processBurst(ring, 1, 0);
    expect(ring.verdicts[0]).toBe(VERDICT_FORWARD);
    expect(Array.from(ring.bytes.slice(0, VNET_HDR_LEN))).toEqual(new Array<number>(VNET_HDR_LEN).fill(0));
    expectInTunnel(ring.get(0), syn);
  });

  it.each([
    ['IP-in-IP', 0, undefined],
    ['GRE with its checksum', 8, { type: 'gre', checksum: true } as const],
    ['GUE with its checksum', 12, { type: 'gue', port: 5555, checksum: true } as const],
  ] as const)(
    'a GSO super-packet leaves as its segments, each in the tunnel (%s), cut as the kernel cuts them',
    (_t, gre, tunnel) => {
      const { e, ring } = setup(tunnel);
      const syn = C({ seq: 1000, flags: SYN });
      ring.put(0, syn);
      e.processBurst(ring, 1, 0);
      const data = Uint8Array.from({ length: 10_000 }, (_, i) => (i * 7 + 3) & 255);
      const flags = ACK | PSH | FIN | CWR;
      const big = C({ seq: 1001, ack: 77, flags, payload: data, options: [1, 1, ...opt.ts(5, 6)] });
      // Segments of 1300 bytes: with the outer header they fit the 1500-byte MTU.
      ring.put(0, makePartial(big), vnetHeader(big, gsoType, 1300));
      e.processBurst(ring, 1, 0);
      expect(ring.verdicts[0]).toBe(VERDICT_DROP); // its slot: nothing written...
      expect(e.counters[C_DROPPED]).toBe(0); // ...and nothing dropped
      expect(e.emitCount).toBe(8); // 7 × 1300 + 900
      for (let k = 0; k < 8; k++) {
        const last = k === 7;
        const want = C({
          seq: 1001 + k * 1300,
          ack: 77,
          flags: (last ? flags : flags & ~(FIN | PSH)) & (k > 0 ? ~CWR : 0xff),
          payload: data.subarray(k * 1300, Math.min(data.length, (k + 1) * 1300)),
          options: [1, 1, ...opt.ts(5, 6)],
          ipId: 0x1234 + k,
        });
        const off = k * e.emit.slotSize;
        expect(Array.from(e.emit.bytes.slice(off, off + VNET_HDR_LEN))).toEqual(
          new Array<number>(VNET_HDR_LEN).fill(0),
        );
        expectInTunnel(e.emit.get(k), want, gre, tunnel?.type === 'gue' ? 17 : undefined);
      }
    },
  );

  it.skipIf(v4)('IPv6: a GSO super-packet behind options headers leaves as segments that each carry them', () => {
    const { e, ring } = setup();
    const x = (p: Uint8Array) => withExtHeaders(p, DST);
    ring.put(0, x(C({ seq: 1000, flags: SYN })));
    e.processBurst(ring, 1, 0);
    const data = Uint8Array.from({ length: 5000 }, (_, i) => (i * 13 + 1) & 255);
    const big = x(C({ seq: 1001, ack: 77, flags: ACK | PSH, payload: data }));
    ring.put(0, makePartial(big), vnetHeader(big, gsoType, 1300));
    e.processBurst(ring, 1, 0);
    expect(e.emitCount).toBe(4); // 3 × 1300 + 1100
    for (let k = 0; k < 4; k++) {
      const last = k === 3;
      const want = C({
        seq: 1001 + k * 1300,
        ack: 77,
        flags: last ? ACK | PSH : ACK,
        payload: data.subarray(k * 1300, Math.min(data.length, (k + 1) * 1300)),
      });
      expectInTunnel(e.emit.get(k), x(want));
    }
  });

  it('super-packets whose segments the emit ring cannot take in this burst are dropped whole, counted', () => {
    const e = new Engine({ capacity: 64, seed: 1, headroom: VNET_HDR_LEN }, resolveServices([spec], new IdRegistry()));
    const ring = new PacketRing(100, GSO_SLOT_SIZE_BYTES, undefined, VNET_HDR_LEN);
    ring.put(0, C({ seq: 1000, flags: SYN }));
    e.processBurst(ring, 1, 0);
    const perPacket = Math.ceil(60_000 / 1300); // 47 segments
    for (let i = 0; i < 100; i++) {
      const big = C({ seq: 1001 + i * 60_000, ack: 77, flags: ACK, payload: new Uint8Array(60_000) });
      ring.put(i, makePartial(big), vnetHeader(big, gsoType, 1300));
    }
    e.processBurst(ring, 100, 0);
    const fit = Math.floor(EMIT_SLOTS_GSO / perPacket);
    expect(e.emitCount).toBe(fit * perPacket);
    expect(e.counters[DROPS_BASE + DROP_TUNNEL_NO_ROOM]).toBe(100 - fit);
  });

  it('segments that would not fit the MTU with the outer header get "too big" back, as single packets do', () => {
    const { e, ring } = setup();
    const syn = C({ seq: 1000, flags: SYN });
    ring.put(0, syn);
    e.processBurst(ring, 1, 0);
    const big = C({ seq: 1001, ack: 77, flags: ACK, payload: new Uint8Array(5000) });
    ring.put(0, makePartial(big), vnetHeader(big, gsoType, 1500 - (v4 ? 40 : 60)));
    e.processBurst(ring, 1, 0);
    expect(ring.aux[0]).toBe(DROP_TUNNEL_TOO_BIG);
    expect(e.emitCount).toBe(1);
    expect(parse(e.emit.get(0)).proto).toBe(v4 ? 1 : 58);
  });
});

describe('offloads: generated packets', () => {
  it('RSTs on expiry carry a zero virtio header and full checksums', () => {
    const e = new Engine(
      { capacity: 64, seed: 1, headroom: VNET_HDR_LEN, rstOnExpire: true, timeouts: { established: 2 } },
      resolveServices(labServices(), new IdRegistry()),
    );
    const ring = new PacketRing(1, GSO_SLOT_SIZE_BYTES, undefined, VNET_HDR_LEN);
    const send = (p: Uint8Array) => {
      ring.put(0, p);
      e.processBurst(ring, 1, 0);
      return ring.get(0);
    };
    const syn = parse(send(tcp({ src: V4.client, dst: V4.vip, sport: 1234, dport: 80, seq: 1, flags: SYN })));
    send(tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: syn.sport, seq: 50, ack: syn.seq + 1, flags: SYN | ACK }));
    send(tcp({ src: V4.client, dst: V4.vip, sport: 1234, dport: 80, seq: 2, ack: 51, flags: ACK }));
    e.advanceTimers(3000);
    expect(e.emitCount).toBe(2);
    for (let i = 0; i < 2; i++) {
      const off = i * e.emit.slotSize;
      expect(Array.from(e.emit.bytes.slice(off, off + VNET_HDR_LEN))).toEqual(new Array<number>(VNET_HDR_LEN).fill(0));
      expect(checksumsOk(e.emit.get(i))).toEqual({ ip: true, l4: true });
    }
  });
});
