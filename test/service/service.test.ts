/** Service validation: each message names the field, the value and what is allowed. */

import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/errors.js';
import { formatAddress, parseAddress } from '../../src/service/addr.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';

const good = (): ServiceSpec =>
  serviceWithDefaults({
    vip: '198.18.0.100',
    port: 80,
    realServers: [{ address: '198.18.1.11', port: 8080, weight: 1 }],
    localAddresses: ['198.18.2.1'],
  });

function errorOf(mutate: (s: ServiceSpec) => void, extra?: ServiceSpec): ConfigError {
  const s = good();
  mutate(s);
  try {
    resolveServices(extra ? [s, extra] : [s], new IdRegistry());
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('no error');
}

type Case = [string, (s: ServiceSpec) => unknown, string, string];

describe('resolveServices', () => {
  it.each<Case>([
    [
      'bad VIP',
      (s: ServiceSpec) => (s.vip = '198.18.0.300'),
      'TUNVS_ERR_CONFIG_ADDRESS',
      'services[0].vip: "198.18.0.300" is not an IPv4 or IPv6 address',
    ],
    [
      'port 65536',
      (s: ServiceSpec) => (s.port = 65536),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].port: 65536 is not a port: use an integer 1..65535, or 0 for every port of the VIP',
    ],
    [
      'all ports, not persistent',
      (s: ServiceSpec) => ((s.port = 0), (s.realServers[0]!.port = 0)),
      'TUNVS_ERR_CONFIG_MISSING',
      'services[0].persistence: an all-ports service (port 0) must be persistent, as in IPVS: give persistence (ipvsadm -p)',
    ],
    [
      'all ports, a server with a port',
      (s: ServiceSpec) => ((s.port = 0), (s.persistence = { timeoutSec: 300, netmask: 32, prefix6: 128 })),
      'TUNVS_ERR_CONFIG_MODE',
      'services[0].realServers[0].port: 8080: a server of an all-ports service (port 0) takes each connection on the port the client asked for: give port 0',
    ],
    [
      'all ports, NAT',
      (s: ServiceSpec) => (
        (s.port = 0),
        (s.persistence = { timeoutSec: 300, netmask: 32, prefix6: 128 }),
        (s.mode = 'nat'),
        (s.localAddresses = []),
        (s.realServers[0]!.port = 0)
      ),
      'TUNVS_ERR_CONFIG_MODE',
      "services[0].port: a NAT service's replies are told apart by the real server's port, so a NAT service has one port: use FULLNAT, TUNNEL or DR for all ports, or a service per port",
    ],
    [
      'all ports, a check without a port',
      (s: ServiceSpec) => (
        (s.port = 0),
        (s.persistence = { timeoutSec: 300, netmask: 32, prefix6: 128 }),
        (s.realServers[0]!.port = 0),
        (s.healthCheck = { type: 'tcp', interval: 2, timeout: 1, rise: 1, fall: 3 } as ServiceSpec['healthCheck'])
      ),
      'TUNVS_ERR_CONFIG_MISSING',
      'services[0].healthCheck.port: the servers of an all-ports service have no port of their own (0): give the port to check',
    ],
    [
      'all ports, a sorry server with a port',
      (s: ServiceSpec) => (
        (s.port = 0),
        (s.persistence = { timeoutSec: 300, netmask: 32, prefix6: 128 }),
        (s.realServers[0]!.port = 0),
        (s.sorryServer = { address: '198.18.1.99', port: 80 })
      ),
      'TUNVS_ERR_CONFIG_MODE',
      'services[0].sorryServer.port: 80: a server of an all-ports service (port 0) takes each connection on the port the client asked for: give port 0',
    ],
    [
      'protocol',
      (s: ServiceSpec) => ((s as { protocol: string }).protocol = 'sctp'),
      'TUNVS_ERR_CONFIG_UNKNOWN',
      'services[0].protocol: "sctp" is not supported: use "tcp" or "udp"',
    ],
    [
      'scheduler',
      (s: ServiceSpec) => ((s as { scheduler: string }).scheduler = 'fastest'),
      'TUNVS_ERR_CONFIG_UNKNOWN',
      'services[0].scheduler: "fastest" is not a scheduler: use one of rr, wrr, lc, wlc, sed, nq, twos, fo, ovf, sh, mh',
    ],
    [
      'maglev size',
      (s: ServiceSpec) => ((s.scheduler = 'mh'), (s.maglevTableSize = 1000)),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].maglevTableSize: 1000 must be a prime up to 1048573 (e.g. 251, 65537)',
    ],
    [
      'maglev size past the largest',
      (s: ServiceSpec) => ((s.scheduler = 'mh'), (s.maglevTableSize = 2147483647)),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].maglevTableSize: 2147483647 must be a prime up to 1048573 (e.g. 251, 65537)',
    ],
    [
      'toa kind',
      (s: ServiceSpec) => (s.toa.kind = 1),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].toa.kind: 1 is not a TCP option kind: use an integer 2..255 (254 is the usual TOA kind)',
    ],
    [
      'no LIPs',
      (s: ServiceSpec) => (s.localAddresses = []),
      'TUNVS_ERR_CONFIG_MISSING',
      'services[0].localAddresses: FULLNAT needs at least one local address of the VIP family',
    ],
    [
      'LIP family',
      (s: ServiceSpec) => (s.localAddresses = ['fd00::1']),
      'TUNVS_ERR_CONFIG_FAMILY',
      "services[0].localAddresses[0]: fd00::1 is IPv6 but the VIP is IPv4: use local addresses of the VIP's family",
    ],
    [
      'RS family',
      (s: ServiceSpec) => (s.realServers[0]!.address = 'fd00::2'),
      'TUNVS_ERR_CONFIG_FAMILY',
      'services[0].realServers[0].address: fd00::2 is IPv6 but the VIP is IPv4: tunvs forwards within one family',
    ],
    [
      'RS weight',
      (s: ServiceSpec) => (s.realServers[0]!.weight = -1),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].realServers[0].weight: -1 is not a weight: use an integer 0..65535 (0 drains)',
    ],
    [
      'RS port',
      (s: ServiceSpec) => (s.realServers[0]!.port = 70000),
      'TUNVS_ERR_CONFIG_RANGE',
      'services[0].realServers[0].port: 70000 is not a port: use an integer 1..65535',
    ],
    [
      'RS twice',
      (s: ServiceSpec) => s.realServers.push({ ...s.realServers[0]! }),
      'TUNVS_ERR_CONFIG_DUPLICATE',
      'services[0].realServers[1]: real server 198.18.1.11:8080 is listed twice',
    ],
    [
      'LIP = VIP',
      (s: ServiceSpec) => (s.localAddresses = ['198.18.0.100']),
      'TUNVS_ERR_CONFIG_DUPLICATE',
      'services[0].localAddresses[0]: a local address must not also be a VIP: replies to it could not be told from client traffic',
    ],
  ])('%s', (_n, mutate, code, message) => {
    const e = errorOf(mutate);
    expect(e.code).toBe(code);
    expect(e.message).toBe(message);
  });

  it('an all-ports service (port 0) beside a service of one port on the same VIP', () => {
    const all = serviceWithDefaults({
      vip: '198.18.0.100',
      port: 0,
      realServers: [{ address: '198.18.1.12', port: 0, weight: 1 }],
      localAddresses: ['198.18.2.1'],
      persistence: { timeoutSec: 300, netmask: 32, prefix6: 128 },
      sorryServer: { address: '198.18.1.99', port: 0 },
    });
    const [one, every] = resolveServices([good(), all], new IdRegistry());
    expect(one!.port).toBe(80);
    expect(every!.port).toBe(0);
    expect(every!.realServers.map((r) => r.port)).toEqual([0, 0]);
  });

  it('a service configured twice', () => {
    const e = errorOf(() => undefined, good());
    expect(e.code).toBe('TUNVS_ERR_CONFIG_DUPLICATE');
    expect(e.message).toBe('services[1]: service tcp 198.18.0.100:80 is configured twice');
  });

  it('ids are stable across reloads and never reused', () => {
    const ids = new IdRegistry();
    const a = good();
    const b = serviceWithDefaults({ ...good(), port: 443 });
    const first = resolveServices([a, b], ids);
    const second = resolveServices([b], ids);
    const third = resolveServices([b, a], ids);
    expect(second[0]!.id).toBe(first[1]!.id);
    expect(third[1]!.id).toBe(first[0]!.id);
    expect(third[0]!.realServers[0]!.id).toBe(first[1]!.realServers[0]!.id);
  });
});

describe('addresses', () => {
  it.each([
    ['198.18.0.1', 4, '198.18.0.1'],
    ['fd00:18::100', 6, 'fd00:18::100'],
    ['::', 6, '::'],
    ['::1', 6, '::1'],
    ['fd00:0:0:1::', 6, 'fd00:0:0:1::'],
    ['::ffff:198.18.0.1', 6, '::ffff:c612:1'],
    ['1:2:3:4:5:6:7:8', 6, '1:2:3:4:5:6:7:8'],
  ])('%s', (text, af, formatted) => {
    const a = parseAddress(text)!;
    expect(a.af).toBe(af);
    expect(formatAddress(a.af, a.words)).toBe(formatted);
  });
  it.each(['', '1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fd00::g', ' 1.2.3.4'])(
    'rejects %j',
    (text) => expect(parseAddress(text)).toBeUndefined(),
  );
});
