/**
 * DrLink.plan (control/link.ts): every DR real server on a directly connected network, all
 * on one interface, or the config is refused naming the server. The kernel's routes come
 * from the injected routeTo (native routeGet in tunvs run; test/control/netlink.test.ts
 * reads the real ones).
 */

import { describe, expect, it } from 'vitest';
import { DrLink } from '../../src/control/link.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';

const routes: Record<string, { dev?: string; gateway?: string }> = {
  '198.18.20.11': { dev: 'eth1' },
  '198.18.20.12': { dev: 'eth1' },
  '198.18.30.11': { dev: 'eth2' },
  '198.18.40.11': { dev: 'eth0', gateway: '198.18.10.1' },
};

const link = (): DrLink =>
  new DrLink(
    () => -1,
    () => undefined,
    () => [],
    (address) => routes[address] ?? {},
  );

const dr = (...servers: string[]) =>
  resolveServices(
    [
      serviceWithDefaults({
        vip: '198.18.0.10',
        port: 80,
        mode: 'dr',
        realServers: servers.map((address) => ({ address, port: 80, weight: 1 })),
      }),
      serviceWithDefaults({
        vip: '198.18.0.11',
        port: 80,
        mode: 'nat',
        realServers: [{ address: '198.18.40.11', port: 80, weight: 1 }],
      }),
    ],
    new IdRegistry(),
  );

describe('DrLink.plan', () => {
  it("names the one interface the DR servers are on (other modes' servers do not count)", () => {
    expect(link().plan(dr('198.18.20.11', '198.18.20.12'))).toBe('eth1');
    expect(link().plan(dr('198.18.20.11').slice(1))).toBeUndefined();
  });

  it('refuses a server behind a gateway, one without a route, and a second interface, naming it', () => {
    expect(() => link().plan(dr('198.18.20.11', '198.18.40.11'))).toThrow(
      /services\[0\]\.realServers\[1\]\.address.*198\.18\.40\.11 is routed via 198\.18\.10\.1: DR needs real servers on a network this LB is directly connected to/,
    );
    expect(() => link().plan(dr('198.18.50.11'))).toThrow(/198\.18\.50\.11 is routed via nothing/);
    expect(() => link().plan(dr('198.18.20.11', '198.18.30.11'))).toThrow(
      /realServers\[1\]\.address.*198\.18\.30\.11 is on eth2, other DR real servers on eth1: one link per LB/,
    );
  });
});
