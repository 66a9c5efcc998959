/** Malformed input and policy drops: every one has its named reason. */

import { describe, expect, it } from 'vitest';
import { DROPS_BASE } from '../../src/dataplane/counters.js';
import * as V from '../../src/nat/verdict.js';
import { Driver, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, addrBytes, FIN, HOP_BY_HOP, icmp, RST, SYN, tcp, udp, withExtHeaders } from '../helpers/packets.js';

const syn4 = () => tcp({ src: V4.client, dst: V4.vip, sport: 4000, dport: 80, seq: 1, flags: SYN });
const syn6 = () => tcp({ src: V6.client, dst: V6.vip, sport: 4000, dport: 80, seq: 1, flags: SYN });

/** An MLDv2 multicast address record: "changed to exclude" `group`, no sources. */
function mldRecord(group: string): Uint8Array {
  const r = new Uint8Array(20);
  r[0] = 4;
  r.set(addrBytes(group), 4);
  return r;
}

function mutate(p: Uint8Array, f: (b: Uint8Array, dv: DataView) => void): Uint8Array {
  const b = p.slice();
  f(b, new DataView(b.buffer));
  return b;
}

describe('drops', () => {
  const cases: [string, () => Uint8Array, number][] = [
    ['empty packet', () => new Uint8Array(0), V.DROP_TRUNCATED],
    ['IPv4 shorter than 20 bytes', () => syn4().slice(0, 19), V.DROP_TRUNCATED],
    ['IP version 5', () => mutate(syn4(), (b) => (b[0] = 0x55)), V.DROP_BAD_IP_VERSION],
    ['IPv4 IHL 4', () => mutate(syn4(), (b) => (b[0] = 0x44)), V.DROP_BAD_IPV4_HEADER],
    ['IPv4 total length > read', () => syn4().slice(0, 30), V.DROP_TRUNCATED],
    ['IPv4 total length < IHL', () => mutate(syn4(), (_b, dv) => dv.setUint16(2, 12)), V.DROP_BAD_IPV4_HEADER],
    // Fragments that can be no datagram's (test/nat/fragments.test.ts has the ones that can).
    [
      'IPv4 fragment, not the last, not 8-byte aligned',
      () => mutate(syn4(), (_b, dv) => dv.setUint16(6, 0x2000)),
      V.DROP_IPV4_FRAGMENT,
    ],
    [
      'IPv4 fragment ending past 64 KiB',
      () => mutate(syn4(), (_b, dv) => dv.setUint16(6, 0x1fff)),
      V.DROP_IPV4_FRAGMENT,
    ],
    ['IPv6 payload length > read', () => syn6().slice(0, 50), V.DROP_TRUNCATED],
    [
      'IPv6 fragment, not the last, not 8-byte aligned',
      () => mutate(syn6(), (b, dv) => ((b[6] = 44), dv.setUint16(42, 0x0009))),
      V.DROP_IPV6_FRAGMENT,
    ],
    // Extension headers the engine does not look past (test/nat/ipv6_ext.test.ts has the rest).
    ['IPv6 authentication header', () => mutate(syn6(), (b) => (b[6] = 51)), V.DROP_IPV6_EXT_HEADER],
    [
      'IPv6 hop-by-hop header behind another',
      () => withExtHeaders(syn6(), { type: 60, units: 1 }, { type: 0, units: 1 }),
      V.DROP_BAD_IPV6_HEADER,
    ],
    ['IPv6 routing header', () => mutate(syn6(), (b) => (b[6] = 43)), V.DROP_IPV6_EXT_HEADER],
    // What the kernel writes into the TUN device at link-up with IPv6 forwarding on: an MLDv2
    // report (ICMPv6 143, behind a Hop-by-Hop header) of its joining the all-routers group.
    [
      "the kernel's MLDv2 report to ff02::16",
      () => withExtHeaders(icmp('::', 'ff02::16', 143, 0, 1, mldRecord('ff02::2')), HOP_BY_HOP),
      V.DROP_IPV6_LINK_MULTICAST,
    ],
    [
      'IPv6 UDP to an interface-local group',
      () => udp({ src: V6.client, dst: 'ff01::1', sport: 1, dport: 53 }),
      V.DROP_IPV6_LINK_MULTICAST,
    ],
    [
      'IPv6 to a site-local group',
      () => udp({ src: V6.client, dst: 'ff05::2', sport: 1, dport: 53 }),
      V.DROP_NOT_LOCAL,
    ],
    ['TCP data offset 4', () => mutate(syn4(), (b) => (b[32] = 0x40)), V.DROP_BAD_TCP_HEADER],
    ['TCP data offset past the end', () => mutate(syn4(), (b) => (b[32] = 0xf0)), V.DROP_BAD_TCP_HEADER],
    ['TCP shorter than 20 bytes', () => mutate(syn4().slice(0, 30), (_b, dv) => dv.setUint16(2, 30)), V.DROP_TRUNCATED],
    [
      'SYN+FIN',
      () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: SYN | FIN }),
      V.DROP_BAD_TCP_FLAGS,
    ],
    [
      'SYN+RST',
      () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: SYN | RST }),
      V.DROP_BAD_TCP_FLAGS,
    ],
    ['no TCP flags', () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: 0 }), V.DROP_BAD_TCP_FLAGS],
    [
      'malformed TCP option',
      () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: SYN, options: [8, 0, 1, 1] }),
      V.DROP_BAD_TCP_OPTIONS,
    ],
    [
      'UDP length mismatch',
      () => mutate(udp({ src: V4.client, dst: V4.vip, sport: 1, dport: 53 }), (_b, dv) => dv.setUint16(24, 9)),
      V.DROP_BAD_UDP_HEADER,
    ],
    ['GRE', () => mutate(syn4(), (b) => (b[9] = 47)), V.DROP_UNSUPPORTED_PROTOCOL],
    ['ICMPv6 in IPv4', () => mutate(syn4(), (b) => (b[9] = 58)), V.DROP_UNSUPPORTED_PROTOCOL],
    [
      'to an address that is no VIP or LIP',
      () => tcp({ src: V4.client, dst: '198.18.9.9', sport: 1, dport: 80, flags: SYN }),
      V.DROP_NOT_LOCAL,
    ],
    [
      'IPv6 to a foreign address',
      () => tcp({ src: V6.client, dst: 'fd00:99::1', sport: 1, dport: 80, flags: SYN }),
      V.DROP_NOT_LOCAL,
    ],
    [
      'to a VIP port with no service',
      () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 81, flags: SYN }),
      V.DROP_NO_SERVICE,
    ],
    [
      'ACK to a VIP without a session',
      () => tcp({ src: V4.client, dst: V4.vip, sport: 1, dport: 80, flags: ACK }),
      V.DROP_NO_SESSION,
    ],
    [
      'to a LIP without a session',
      () => tcp({ src: V4.rs1, dst: V4.lip, sport: 8080, dport: 1111, flags: ACK }),
      V.DROP_NO_SESSION,
    ],
  ];

  it.each(cases)('%s', (_name, make, reason) => {
    const d = new Driver(makeEngine());
    expect(V.DROP_REASON_NAMES[d.drop(make())]).toBe(V.DROP_REASON_NAMES[reason]);
    expect(d.engine.counters[DROPS_BASE + reason]).toBe(1);
    expect(d.engine.sessionCount).toBe(0);
  });
});
