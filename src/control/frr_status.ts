/**
 * What the node's BGP speaker (FRR) says, for `tunvs cluster status`: BGP sessions with their
 * prefix counts, and BFD peers. Read with vtysh (optionally against a socket directory, as
 * the lab's per-namespace FRR needs); any failure is reported, never thrown.
 */

import { execFileSync } from 'node:child_process';
import { ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE, ROUTE_METRIC_QUIET } from '../constants.js';

/** vtysh, against the FRR whose sockets are in `dir` (or the system's); returns stdout. */
export function vtysh(dir: string | undefined, ...commands: string[]): string {
  return execFileSync('vtysh', [...(dir ? ['--vty_socket', dir] : []), ...commands.flatMap((c) => ['-c', c])], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 10_000,
  });
}

interface BgpPeer {
  state?: string;
  pfxRcd?: number;
  pfxSnt?: number;
  peerUptime?: string;
}

/** Lines about BGP and BFD, or one line saying why they could not be read. */
export function frrStatusLines(dir?: string): string[] {
  try {
    const bgp = JSON.parse(vtysh(dir, 'show bgp summary json')) as Record<string, { peers?: Record<string, BgpPeer> }>;
    const lines: string[] = [];
    for (const [family, sum] of Object.entries(bgp)) {
      for (const [peer, p] of Object.entries(sum.peers ?? {})) {
        lines.push(
          `  bgp ${family.padEnd(12)} ${peer.padEnd(26)} ${(p.state ?? '?').padEnd(12)} sent ${p.pfxSnt ?? 0}, received ${p.pfxRcd ?? 0}, up ${p.peerUptime ?? '-'}`,
        );
      }
    }
    const bfd = JSON.parse(vtysh(dir, 'show bfd peers json')) as { peer: string; status: string; uptime?: number }[];
    for (const b of bfd) lines.push(`  bfd ${b.peer.padEnd(39)} ${b.status}`);
    return lines.length > 0 ? lines : ['  (FRR has no BGP or BFD peers)'];
  } catch (e) {
    return [`  (FRR not readable: ${(e as Error).message.split('\n')[0]}; --vtysh-socket DIR for a non-default FRR)`];
  }
}

/** What a route's metric means for the announcement (ha/announce.ts). */
export function routeMeaning(metric: number | undefined, cannotServe?: readonly string[]): string {
  if (metric === undefined) return 'routed (not a cluster)';
  if (metric === ROUTE_METRIC_ANNOUNCED) return 'announced';
  if (metric === ROUTE_METRIC_QUIET && cannotServe !== undefined)
    return `not announced: route health (${cannotServe.join(', ')} cannot serve)`;
  if (metric === ROUTE_METRIC_QUIET) return 'not announced (not ready, or draining)';
  if (metric > ROUTE_METRIC_BACKUP_BASE) return `announced as backup, rank ${metric - ROUTE_METRIC_BACKUP_BASE}`;
  return `metric ${metric}`;
}
