/** Client ACLs and the new-session cap, on the first packet of a session. */

import { describe, expect, it } from 'vitest';
import { DROP_ACL_DENIED, DROP_RATE_LIMITED } from '../../src/nat/verdict.js';
import { Driver, labServices, makeEngine, V4, V6 } from '../helpers/engine.js';
import { ACK, SYN, tcp } from '../helpers/packets.js';

describe.each([
  ['IPv4', V4, '198.18.100.0/24', '198.18.100.7/32', '198.18.101.9'],
  ['IPv6', V6, 'fd00:18:64::/48', 'fd00:18:64::7/128', 'fd00:19::9'],
] as const)('ACL %s', (_n, fam, net, host, other) => {
  const syn = (src: string, sport: number) => tcp({ src, dst: fam.vip, sport, dport: 80, seq: 1, ack: 0, flags: SYN });

  it('allow: only those clients; deny wins over allow; established sessions are not re-checked', () => {
    const d = new Driver(makeEngine(labServices({ acl: { allow: [net], deny: [] } })));
    d.forward(syn(fam.client, 1000));
    expect(d.drop(syn(other, 1001))).toBe(DROP_ACL_DENIED);
    const d2 = new Driver(makeEngine(labServices({ acl: { allow: [net], deny: [host] } })));
    expect(d2.drop(syn(fam.client, 1002))).toBe(DROP_ACL_DENIED);
    // A non-SYN of an existing session passes the data path without ACL work.
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 1000, dport: 80, seq: 2, ack: 0, flags: ACK }));
  });

  it('deny only', () => {
    const d = new Driver(makeEngine(labServices({ acl: { allow: [], deny: [host] } })));
    expect(d.drop(syn(fam.client, 1003))).toBe(DROP_ACL_DENIED);
    d.forward(syn(other, 1004));
  });
});

it('maxNewPerSec: a burst of SYNs gets one second of sessions, then the bucket refills', () => {
  const d = new Driver(makeEngine(labServices({ maxNewPerSec: 10 })));
  let ok = 0;
  let limited = 0;
  for (let i = 0; i < 50; i++) {
    const r = d.send(tcp({ src: V4.client, dst: V4.vip, sport: 2000 + i, dport: 80, seq: 1, ack: 0, flags: SYN }));
    if (r.reason === DROP_RATE_LIMITED) limited++;
    else ok++;
  }
  expect(ok).toBe(10);
  expect(limited).toBe(40);
  d.nowMs += 500; // half a second: 5 more
  let later = 0;
  for (let i = 0; i < 20; i++) {
    const r = d.send(tcp({ src: V4.client, dst: V4.vip, sport: 3000 + i, dport: 80, seq: 1, ack: 0, flags: SYN }));
    if (r.reason !== DROP_RATE_LIMITED) later++;
  }
  expect(later).toBe(5);
});
