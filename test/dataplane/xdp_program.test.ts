/**
 * The XDP program of `io: xdp` sends exactly the frames of the VIPs, local addresses and
 * cluster peers' local addresses to the AF_XDP socket of the queue they arrived on, and
 * passes everything else to the kernel (run through an interpreter of its exact bytes; the
 * netns tests load it into the kernel).
 */

import { describe, expect, it } from 'vitest';
import { xdpAddresses, xdpProgram } from '../../src/dataplane/xdp_program.js';
import { parseAddress } from '../../src/service/addr.js';
import { IdRegistry, resolveServices } from '../../src/service/service.js';
import { labServices, V4, V6 } from '../helpers/engine.js';
import { runXdp, unreachable } from '../helpers/bpf_interp.js';
import { ACK, icmp, SYN, tcp, udp } from '../helpers/packets.js';

const XDP_PASS = 2;
const XDP_REDIRECT = 4;
const MAP_FD = 7;

/** `packet` behind an Ethernet header (ethertype from its version, or `type`). */
function frame(packet: Uint8Array, type?: number): Uint8Array {
  const f = new Uint8Array(14 + packet.length);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]);
  const t = type ?? (packet[0]! >> 4 === 4 ? 0x0800 : 0x86dd);
  f[12] = t >> 8;
  f[13] = t & 0xff;
  f.set(packet, 14);
  return f;
}

describe('XDP program (io: xdp)', () => {
  const services = resolveServices(labServices(), new IdRegistry());
  const peers = [parseAddress('198.18.2.99')!, parseAddress('fd00:18:2::99')!];
  const prog = xdpProgram(MAP_FD, xdpAddresses(services, peers));

  it('redirects frames to a VIP, a local address or a peer’s, on the queue they came in on', () => {
    for (const fam of [V4, V6]) {
      const peer = fam === V4 ? '198.18.2.99' : 'fd00:18:2::99';
      const frames = [
        tcp({ src: fam.client, dst: fam.vip, sport: 40000, dport: 80, flags: SYN }),
        udp({ src: fam.client, dst: fam.vip, sport: 40000, dport: 53 }),
        tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: 1025, flags: ACK }),
        tcp({ src: fam.rs1, dst: peer, sport: 8080, dport: 1025, flags: ACK }),
        // ICMP errors about the LB's flows and echo requests to the VIP are the engine's too.
        icmp(fam.rs1, fam.lip, 3, 4, 1400, tcp({ src: fam.lip, dst: fam.rs1, sport: 1025, dport: 8080, flags: ACK })),
      ];
      for (const [i, p] of frames.entries()) {
        const r = runXdp(prog, frame(p), 3);
        expect(r.ret, `frame ${i} of IPv${fam === V4 ? 4 : 6}`).toBe(XDP_REDIRECT);
        expect(r.redirect).toEqual({ mapFd: MAP_FD, key: 3, flags: XDP_PASS });
      }
    }
  });

  it('passes everything else: other addresses, ARP, VLAN tags, short frames', () => {
    const other = [
      frame(tcp({ src: V4.client, dst: '198.18.0.200', sport: 40000, dport: 80, flags: SYN })),
      frame(tcp({ src: V6.client, dst: 'fd00:18::200', sport: 40000, dport: 80, flags: SYN })),
      // The node's own address on the link (its SSH, BGP, health checks' replies).
      frame(tcp({ src: V4.rs1, dst: '198.18.1.1', sport: 8080, dport: 45000, flags: ACK })),
      frame(new Uint8Array(28), 0x0806), // ARP
      frame(tcp({ src: V4.client, dst: V4.vip, sport: 40000, dport: 80, flags: SYN }), 0x8100), // 802.1Q
      frame(tcp({ src: V4.client, dst: V4.vip, sport: 40000, dport: 80, flags: SYN })).subarray(0, 33),
      frame(tcp({ src: V6.client, dst: V6.vip, sport: 40000, dport: 80, flags: SYN })).subarray(0, 53),
      new Uint8Array(10),
    ];
    for (const [i, f] of other.entries()) {
      const r = runXdp(prog, f, 0);
      expect(r.ret, `frame ${i}`).toBe(XDP_PASS);
      expect(r.redirect, `frame ${i}`).toBeUndefined();
    }
  });

  it('every instruction is reachable, whatever the address families (the verifier refuses anything else)', () => {
    const lab = labServices();
    const sets = {
      'v4 and v6': lab,
      'v4 only': lab.filter((x) => !x.vip.includes(':')),
      'v6 only': lab.filter((x) => x.vip.includes(':')),
      none: [],
    };
    for (const [name, specs] of Object.entries(sets)) {
      const addrs = xdpAddresses(resolveServices(specs, new IdRegistry()), []);
      const p = xdpProgram(MAP_FD, addrs);
      expect(unreachable(p), name).toEqual([]);
      expect(p.length / 8, name).toBeLessThan(200);
      expect(runXdp(p, frame(tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: SYN }))).ret).toBe(
        addrs.some((a) => a.af === 4) ? XDP_REDIRECT : XDP_PASS,
      );
    }
  });

  it('lists each address once: VIPs, local addresses, peers', () => {
    const addrs = xdpAddresses(services, [...peers, peers[0]!]);
    const keys = addrs.map((a) => `${a.af}:${Array.from(a.words).join(',')}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const a of [V4.vip, V4.lip, V6.vip, V6.lip, '198.18.2.99', 'fd00:18:2::99']) {
      const p = parseAddress(a)!;
      expect(keys).toContain(`${p.af}:${Array.from(p.words).join(',')}`);
    }
  });
});
