/**
 * Cluster mode: which routes a node puts into its TUN device, and with which metric, so that
 * its BGP speaker announces the right things (docs/cluster.md, constants.ts ROUTE_METRIC_*):
 *
 *   VIPs and own local addresses   announced once the node is ready; quiet before, and
 *                                  while it drains on an orderly stop
 *   a VIP its services cannot serve   quiet while route health says so (ha.routeHealth:
 *                                  withdrawnVips), so the routers send its clients to the
 *                                  nodes (or sites) that can
 *   each peer's local addresses    announced as this node's backup for them, prepended by
 *                                  its rank for that peer; quiet before ready
 *
 * and who takes a dead peer's sessions over: the alive node of the best (lowest) rank for
 * it, the one the routers send that peer's local addresses to. Ranks are a rendezvous hash
 * of the two node ids, so every node (and router) agrees without asking anyone.
 */

import type { RouteHealth } from '../config/config.js';
import {
  BACKUP_RANKS_MAX,
  ROUTE_METRIC_ANNOUNCED,
  ROUTE_METRIC_BACKUP_BASE,
  ROUTE_METRIC_QUIET,
} from '../constants.js';

export interface PlannedRoute {
  /** Prefix: address/32 or address/128. */
  prefix: string;
  metric: number;
}

/** A 32-bit mix of two node ids (rendezvous weight of `candidate` for `peer`). */
function weight(peer: number, candidate: number): number {
  let h = Math.imul(peer ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(candidate ^ 0xc2b2ae35, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

/** The nodes other than `peer`, best backup first. */
export function backupOrder(peer: number, nodes: readonly number[]): number[] {
  return nodes.filter((n) => n !== peer).sort((a, b) => weight(peer, b) - weight(peer, a) || a - b);
}

/** Rank of `self` as a backup for `peer` among `nodes` (1 = first), capped at BACKUP_RANKS_MAX. */
export function backupRank(peer: number, self: number, nodes: readonly number[]): number {
  const i = backupOrder(peer, nodes).indexOf(self);
  if (i < 0) throw new RangeError(`node ${self} is not among the nodes`);
  return Math.min(i + 1, BACKUP_RANKS_MAX);
}

/** The node that takes a dead `peer` over: the first alive one in its backup order. */
export function adopterOf(peer: number, nodes: readonly number[], alive: (id: number) => boolean): number | undefined {
  return backupOrder(peer, nodes).find((n) => alive(n));
}

/** A service as route health sees it: its VIP's host prefix and whether it can serve. */
export interface ServiceHealth {
  prefix: string;
  name: string;
  /** It has its quorum, or a sorry server takes its clients meanwhile. */
  serving: boolean;
}

/**
 * Route health injection: the VIPs to keep quiet, each with the services that cannot serve.
 * `any`: a VIP whose services all cannot; `all`: a VIP one of whose services cannot (its
 * other ports go with it, as a VIP is one route). Local addresses are never withdrawn: they
 * carry the replies of the sessions the node has.
 */
export function withdrawnVips(rule: RouteHealth, services: readonly ServiceHealth[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  if (rule === 'off') return out;
  /** Per VIP: its services, and the names of those that cannot serve. */
  const byVip = new Map<string, { services: number; down: string[] }>();
  for (const s of services) {
    let v = byVip.get(s.prefix);
    if (v === undefined) byVip.set(s.prefix, (v = { services: 0, down: [] }));
    v.services++;
    if (!s.serving) v.down.push(s.name);
  }
  for (const [prefix, v] of byVip)
    if (v.down.length > 0 && (rule === 'all' || v.down.length === v.services)) out.set(prefix, v.down);
  return out;
}

export interface RoutePlanInput {
  self: number;
  /** Announce at all: ready, and not draining. */
  announce: boolean;
  /** Prefixes of the VIPs and of this node's own local addresses. */
  own: readonly string[];
  /** Of those, the ones kept quiet even so (withdrawnVips). */
  quiet?: ReadonlySet<string>;
  /** Every peer known to the registry, with its local addresses. */
  peers: readonly { id: number; laddrs: readonly string[] }[];
}

/** The routes the node wants, one per prefix (own beats a peer's if both name it). */
export function planRoutes(p: RoutePlanInput): PlannedRoute[] {
  const nodes = [p.self, ...p.peers.map((x) => x.id)];
  const out = new Map<string, number>();
  for (const prefix of p.own)
    out.set(prefix, p.announce && p.quiet?.has(prefix) !== true ? ROUTE_METRIC_ANNOUNCED : ROUTE_METRIC_QUIET);
  for (const peer of p.peers) {
    const metric = p.announce ? ROUTE_METRIC_BACKUP_BASE + backupRank(peer.id, p.self, nodes) : ROUTE_METRIC_QUIET;
    for (const prefix of peer.laddrs) if (!out.has(prefix)) out.set(prefix, metric);
  }
  return [...out].map(([prefix, metric]) => ({ prefix, metric }));
}
