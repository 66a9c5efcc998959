/** Cluster announcements (ha/announce.ts): ranks every node agrees on, the plan of routes. */

import { describe, expect, it } from 'vitest';
import {
  BACKUP_RANKS_MAX,
  ROUTE_METRIC_ANNOUNCED,
  ROUTE_METRIC_BACKUP_BASE,
  ROUTE_METRIC_QUIET,
} from '../../src/constants.js';
import { routeMeaning } from '../../src/control/frr_status.js';
import { adopterOf, backupOrder, backupRank, planRoutes, withdrawnVips } from '../../src/ha/announce.js';

describe('backup ranks', () => {
  const nodes = [1, 2, 3, 4, 5];
  it('give each peer a full order of the other nodes, the same whoever computes it', () => {
    for (const peer of nodes) {
      const order = backupOrder(peer, nodes);
      expect([...order].sort()).toEqual(nodes.filter((n) => n !== peer));
      expect(backupOrder(peer, [...nodes].reverse())).toEqual(order); // input order does not matter
      order.forEach((n, i) => expect(backupRank(peer, n, nodes)).toBe(i + 1));
    }
  });

  it('spread the first backups over the nodes (not one node backing up everyone)', () => {
    const ids = Array.from({ length: 40 }, (_, i) => i + 1);
    const firsts = new Set(ids.map((p) => backupOrder(p, ids)[0]));
    expect(firsts.size).toBeGreaterThan(15);
  });

  it('a node added or removed moves only the ranks it takes or leaves (rendezvous)', () => {
    const before = backupOrder(3, [1, 2, 3, 4]);
    const after = backupOrder(3, [1, 2, 3, 4, 9]);
    expect(after.filter((n) => n !== 9)).toEqual(before);
  });

  it('are capped where the routers stop telling them apart', () => {
    const ids = Array.from({ length: 20 }, (_, i) => i + 1);
    expect(Math.max(...ids.filter((n) => n !== 1).map((n) => backupRank(1, n, ids)))).toBe(BACKUP_RANKS_MAX);
  });

  it('the adopter of a dead peer is its first live backup', () => {
    const order = backupOrder(2, nodes);
    expect(adopterOf(2, nodes, () => true)).toBe(order[0]);
    expect(adopterOf(2, nodes, (n) => n !== order[0])).toBe(order[1]);
    expect(adopterOf(2, nodes, () => false)).toBeUndefined();
  });
});

describe('route plan', () => {
  const peers = [
    { id: 2, laddrs: ['198.18.2.21/32', 'fd18:18:2::21/128'] },
    { id: 3, laddrs: ['198.18.2.31/32'] },
  ];
  const own = ['198.18.0.100/32', '198.18.2.11/32'];

  it('announces the VIPs and own addresses, and every peer’s addresses prepended by rank', () => {
    const plan = planRoutes({ self: 1, announce: true, own, peers });
    const metric = (p: string): number | undefined => plan.find((r) => r.prefix === p)?.metric;
    expect(metric('198.18.0.100/32')).toBe(ROUTE_METRIC_ANNOUNCED);
    expect(metric('198.18.2.11/32')).toBe(ROUTE_METRIC_ANNOUNCED);
    expect(metric('198.18.2.21/32')).toBe(ROUTE_METRIC_BACKUP_BASE + backupRank(2, 1, [1, 2, 3]));
    expect(metric('fd18:18:2::21/128')).toBe(metric('198.18.2.21/32'));
    expect(metric('198.18.2.31/32')).toBe(ROUTE_METRIC_BACKUP_BASE + backupRank(3, 1, [1, 2, 3]));
    expect(plan.length).toBe(5);
  });

  it('before ready (and while draining) everything is routed but nothing announced', () => {
    const plan = planRoutes({ self: 1, announce: false, own, peers });
    expect(plan.length).toBe(5);
    expect(plan.every((r) => r.metric === ROUTE_METRIC_QUIET)).toBe(true);
  });

  it('an address that is both own and a peer’s is announced as own', () => {
    const plan = planRoutes({ self: 1, announce: true, own, peers: [{ id: 2, laddrs: ['198.18.2.11/32'] }] });
    expect(plan).toEqual([
      { prefix: '198.18.0.100/32', metric: ROUTE_METRIC_ANNOUNCED },
      { prefix: '198.18.2.11/32', metric: ROUTE_METRIC_ANNOUNCED },
    ]);
  });
});

describe('route health (ha.routeHealth)', () => {
  const services = [
    { prefix: '198.18.0.100/32', name: 'web', serving: false },
    { prefix: '198.18.0.100/32', name: 'api', serving: true },
    { prefix: '198.18.0.101/32', name: 'dns', serving: false },
    { prefix: 'fd18:18::100/128', name: 'web6', serving: true },
  ];

  it('off withdraws nothing; any a VIP none of whose services can serve; all a VIP one of them cannot', () => {
    expect(withdrawnVips('off', services).size).toBe(0);
    expect([...withdrawnVips('any', services)]).toEqual([['198.18.0.101/32', ['dns']]]);
    expect([...withdrawnVips('all', services)]).toEqual([
      ['198.18.0.100/32', ['web']],
      ['198.18.0.101/32', ['dns']],
    ]);
  });

  it('tunvs cluster status says why a route is quiet', () => {
    expect(routeMeaning(ROUTE_METRIC_QUIET)).toBe('not announced (not ready, or draining)');
    expect(routeMeaning(ROUTE_METRIC_QUIET, ['web', 'api'])).toBe(
      'not announced: route health (web, api cannot serve)',
    );
    expect(routeMeaning(ROUTE_METRIC_ANNOUNCED, [])).toBe('announced');
  });

  it('a withdrawn VIP is routed quiet; the local addresses and the peers’ stay announced', () => {
    const plan = planRoutes({
      self: 1,
      announce: true,
      own: ['198.18.0.100/32', '198.18.0.101/32', '198.18.2.11/32'],
      quiet: new Set(['198.18.0.101/32']),
      peers: [{ id: 2, laddrs: ['198.18.2.21/32'] }],
    });
    expect(plan).toEqual([
      { prefix: '198.18.0.100/32', metric: ROUTE_METRIC_ANNOUNCED },
      { prefix: '198.18.0.101/32', metric: ROUTE_METRIC_QUIET },
      { prefix: '198.18.2.11/32', metric: ROUTE_METRIC_ANNOUNCED },
      { prefix: '198.18.2.21/32', metric: ROUTE_METRIC_BACKUP_BASE + backupRank(2, 1, [1, 2]) },
    ]);
  });
});
