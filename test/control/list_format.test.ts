/** `tunvs list`'s text: a service line says what ipvsadm -Ln says of it (persistent, mask, conn-timeout). */

import { describe, expect, it } from 'vitest';
import { importIpvsadm } from '../../src/config/import_ipvsadm.js';
import { formatList, type RealServerRow, type ServiceRow } from '../../src/control/stats.js';

const row = (o: Partial<ServiceRow>): ServiceRow => ({
  id: 0,
  name: 'web',
  protocol: 'TCP',
  vip: '198.18.0.100',
  port: 80,
  scheduler: 'wrr',
  mode: 'fullnat',
  sloppy: false,
  realServers: [],
  ...o,
});

const head = (o: Partial<ServiceRow>): string => formatList([row(o)], false).split('\n')[2]!;

describe('tunvs list: the service line', () => {
  it('plain: protocol, VIP:port, scheduler', () => {
    expect(head({})).toBe('TCP  198.18.0.100:80 wrr');
  });

  it('persistence as ipvsadm prints it: the IPv4 mask dotted, none for a whole address', () => {
    expect(head({ persistence: { timeoutSec: 300, prefixLength: 32 } })).toBe(
      'TCP  198.18.0.100:80 wrr persistent 300',
    );
    expect(head({ persistence: { timeoutSec: 60, prefixLength: 24 } })).toBe(
      'TCP  198.18.0.100:80 wrr persistent 60 mask 255.255.255.0',
    );
    expect(head({ persistence: { timeoutSec: 60, prefixLength: 0 } })).toBe(
      'TCP  198.18.0.100:80 wrr persistent 60 mask 0.0.0.0',
    );
    // tunvs's persistence group after it; an all-ports service's port 0 as ipvsadm's.
    expect(head({ port: 0, persistence: { timeoutSec: 60, prefixLength: 24, group: 'shop' } })).toBe(
      'TCP  198.18.0.100:0 wrr persistent 60 mask 255.255.255.0 group shop',
    );
  });

  it("scheduler flags in parentheses after the scheduler, as ipvsadm's; the import reads them back", () => {
    expect(head({ scheduler: 'sh', schedFlags: ['sh-fallback', 'sh-port'] })).toBe(
      'TCP  198.18.0.100:80 sh (sh-fallback,sh-port)',
    );
    expect(head({ scheduler: 'mh', schedFlags: ['mh-port'], persistence: { timeoutSec: 60, prefixLength: 32 } })).toBe(
      'TCP  198.18.0.100:80 mh (mh-port) persistent 60',
    );
  });

  it('IPv6: the mask as a prefix length, none for 128', () => {
    const v6 = { vip: 'fd18:18::100', persistence: { timeoutSec: 300, prefixLength: 64 } };
    expect(head(v6)).toBe('TCP  [fd18:18::100]:80 wrr persistent 300 mask 64');
    expect(head({ ...v6, persistence: { timeoutSec: 300, prefixLength: 128 } })).toBe(
      'TCP  [fd18:18::100]:80 wrr persistent 300',
    );
  });

  it("an idleTimeout as DPVS's ipvsadm prints a service's conn-timeout", () => {
    expect(head({ idleTimeoutSec: 900, persistence: { timeoutSec: 60, prefixLength: 32 } })).toBe(
      'TCP  198.18.0.100:80 wrr persistent 60 conn-timeout 900',
    );
  });

  it('one-packet scheduling as ipvsadm prints it (ops), after the persistence', () => {
    expect(
      head({ protocol: 'UDP', onePacket: true, idleTimeoutSec: 2, persistence: { timeoutSec: 60, prefixLength: 32 } }),
    ).toBe('UDP  198.18.0.100:80 wrr persistent 60 ops conn-timeout 2');
  });

  it("a client ACL's prefixes and a new-sessions cap after the ipvsadm flags, by tunvs's words", () => {
    expect(head({ acl: { allow: ['198.18.100.0/24', 'fd18:18:100::/64'], deny: [] }, maxNewPerSec: 300 })).toBe(
      'TCP  198.18.0.100:80 wrr allow 198.18.100.0/24,fd18:18:100::/64 rate 300',
    );
    expect(head({ acl: { allow: [], deny: ['198.18.100.99/32'] }, quorum: 'lost' })).toBe(
      'TCP  198.18.0.100:80 wrr deny 198.18.100.99/32 quorum lost',
    );
  });

  it('sloppy TCP is named after the ipvsadm flags; a lost quorum last', () => {
    expect(head({ mode: 'dr', scheduler: 'mh', sloppy: true, persistence: { timeoutSec: 30, prefixLength: 32 } })).toBe(
      'TCP  198.18.0.100:80 mh persistent 30 sloppy',
    );
    expect(head({ sloppy: true, quorum: 'lost' })).toBe('TCP  198.18.0.100:80 wrr sloppy quorum lost');
    expect(head({ quorum: 'up' })).toBe('TCP  198.18.0.100:80 wrr');
  });
});

describe('tunvs list: a real server line', () => {
  const server = (o: Partial<RealServerRow>): RealServerRow => ({
    id: 0,
    address: '198.18.20.21',
    port: 8080,
    weight: 1,
    activeConns: 5,
    inactiveConns: 2,
    conns: 7,
    inPackets: 0,
    outPackets: 0,
    inBytes: 0,
    outBytes: 0,
    ...o,
  });
  const line = (o: Partial<RealServerRow>): string =>
    formatList([row({ realServers: [server(o)] })], false).split('\n')[3]!;

  it('ipvsadm -Ln columns; a session cap as cap MAX/MIN', () => {
    expect(line({})).toMatch(/^ {2}-> 198\.18\.20\.21:8080 +FullNat 1 +5 +2 *$/);
    expect(line({ maxConns: 100, minConns: 75 })).toMatch(/ 5 +2 +cap 100\/75$/);
  });

  it('a sorry server is named, at weight 1 while in use', () => {
    expect(line({ weight: 0, sorry: 'standby' })).toMatch(/FullNat 0 +5 +2 +sorry server$/);
    expect(line({ weight: 0, sorry: 'in use' })).toMatch(/FullNat 1 +5 +2 +sorry server \(in use: no quorum\)$/);
  });

  it("a weight set by the check in the weight column, the config's named; a DOWN server's reason", () => {
    expect(line({ checkWeight: 10 })).toMatch(/FullNat 10 +5 +2 +weight from check \(config 1\)$/);
    expect(line({ health: 'down', healthError: 'exec: exited with status 1' })).toMatch(
      / 5 +2 +DOWN \(exec: exited with status 1\)$/,
    );
  });

  it("a TUNNEL server's learned path MTU, before DOWN; the import notes it and leaves it out", () => {
    const text = formatList(
      [row({ mode: 'tunnel', realServers: [server({ port: 80, tunnelMtu: 1400, health: 'down' })] })],
      false,
    );
    expect(text.split('\n')[3]).toMatch(/Tunnel +1 +5 +2 +path mtu 1400 DOWN \(failing\)$/);
    const r = importIpvsadm(text, { laddrs: ['198.18.2.9'] });
    expect(r.config.services[0]!.realServers).toEqual([{ address: '198.18.20.21', port: 80, weight: 1 }]);
    expect(r.notes.join('\n')).toMatch(/198\.18\.20\.21:80's path mtu 1400 is learned state, not a rule: left out/);
  });
});
