/**
 * FRR (Debian's frr: zebra, bfdd, bgpd) in the cluster lab: the configuration of the router
 * and of each LB node, and how the lab runs the daemons in a namespace — in the foreground,
 * each recorded by PID like everything the lab starts, with sockets, logs and configuration
 * in a directory of their own. docs/cluster.md shows the same configuration for real routers.
 */

import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { BACKUP_RANKS_MAX, ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE } from '../constants.js';
import { waitFor } from './state.js';
import { CLUSTER, clusterNode } from './topology.js';

const FRR_DIR = '/usr/lib/frr';
/** BFD every 100 ms, down after 3 missed: a silent node is out in ~0.3 s (measured 327 ms). */
const BFD_PROFILE = `bfd
 profile lab
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 exit
exit
`;
const TIMERS = (n: string): string => ` neighbor ${n} timers 3 9
 neighbor ${n} timers connect 1
 neighbor ${n} bfd profile lab
`;

/**
 * The node's announcement policy: only kernel routes into the TUN device, with the metric
 * tunvs gives them (constants.ts ROUTE_METRIC_*): announced as they are, or as a backup with
 * the AS path prepended by rank; everything else (quiet routes, blackholes) is not.
 */
export function announcePolicy(tun: string, asn: number): string {
  const entries = [
    `route-map TUNVS permit 10
 match interface ${tun}
 match metric ${ROUTE_METRIC_ANNOUNCED}
exit`,
  ];
  for (let rank = 1; rank <= BACKUP_RANKS_MAX; rank++) {
    entries.push(`route-map TUNVS permit ${100 + rank}
 match interface ${tun}
 match metric ${ROUTE_METRIC_BACKUP_BASE + rank}
 set as-path prepend ${Array(rank).fill(String(asn)).join(' ')}
exit`);
  }
  entries.push('route-map TUNVS deny 1000\nexit');
  return `${entries.join('\n')}\n`;
}

/** bgpd on LB node `node`: one session per family to the router, BFD, the policy above. */
export function nodeBgpConfig(node: string, tun = 'tunvs0'): string {
  const a = clusterNode(node);
  return `${announcePolicy(tun, CLUSTER.asNodes)}router bgp ${CLUSTER.asNodes}
 bgp router-id ${a.up4}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor ${CLUSTER.routerUp4} remote-as ${CLUSTER.asRouter}
${TIMERS(CLUSTER.routerUp4)} neighbor ${CLUSTER.routerUp6} remote-as ${CLUSTER.asRouter}
${TIMERS(CLUSTER.routerUp6)} address-family ipv4 unicast
  neighbor ${CLUSTER.routerUp4} activate
  redistribute kernel route-map TUNVS
 exit-address-family
 address-family ipv6 unicast
  neighbor ${CLUSTER.routerUp6} activate
  redistribute kernel route-map TUNVS
 exit-address-family
exit
`;
}

/** bgpd on the router: every possible node in two peer groups, ECMP over up to 8 paths. */
export function routerBgpConfig(): string {
  const nodes = CLUSTER.nodes.map(clusterNode);
  return `router bgp ${CLUSTER.asRouter}
 bgp router-id ${CLUSTER.routerUp4}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor NODES4 peer-group
 neighbor NODES4 remote-as ${CLUSTER.asNodes}
${TIMERS('NODES4')} neighbor NODES6 peer-group
 neighbor NODES6 remote-as ${CLUSTER.asNodes}
${TIMERS('NODES6')}${nodes.map((n) => ` neighbor ${n.up4} peer-group NODES4\n neighbor ${n.up6} peer-group NODES6\n`).join('')} address-family ipv4 unicast
  neighbor NODES4 activate
  maximum-paths 8
 exit-address-family
 address-family ipv6 unicast
  neighbor NODES6 activate
  maximum-paths 8
 exit-address-family
exit
`;
}

/** Where a namespace's FRR keeps its files (sockets: vtysh --vty_socket this). */
export function frrDir(labDir: string, name: string): string {
  return join(labDir, `frr-${name}`);
}

/**
 * Start zebra, bfdd and bgpd for `name` in namespace `ns` with the given bgpd configuration,
 * each through `start` (the lab's recorded starter). The daemons drop to the frr user as
 * packaged, so their directory is theirs.
 */
export async function startFrr(
  labDir: string,
  name: string,
  ns: string,
  bgpConf: string,
  start: (proc: string, ns: string, args: string[], program: string) => void,
): Promise<string> {
  const dir = frrDir(labDir, name);
  mkdirSync(dir, { recursive: true });
  const log = `hostname ${name}\nlog file ${join(dir, 'frr.log')} informational\n`;
  writeFileSync(join(dir, 'zebra.conf'), log);
  writeFileSync(join(dir, 'bfdd.conf'), log + BFD_PROFILE);
  writeFileSync(join(dir, 'bgpd.conf'), log + bgpConf);
  const frr = frrUser();
  chownSync(dir, frr.uid, frr.gid);
  for (const daemon of ['zebra', 'bfdd', 'bgpd']) {
    // bgpd and bfdd only once zebra listens: a daemon that finds no zebra retries with a
    // back-off (seconds), and a bgpd that does not know its interfaces yet refuses updates
    // with IPv6 link-local next hops as malformed (a withdrawal that sticks).
    if (daemon !== 'zebra')
      await waitFor('zebra to listen', () => existsSync(join(dir, 'zserv.api')), 10_000, join(dir, 'frr.log'));
    start(
      `frr-${daemon}-${name}`,
      ns,
      [
        '-f',
        join(dir, `${daemon}.conf`),
        '-i',
        join(dir, `${daemon}.pid`),
        '-z',
        join(dir, 'zserv.api'),
        '--vty_socket',
        dir,
        '-P',
        '0', // no TCP vty: vtysh talks over the socket directory
      ],
      join(FRR_DIR, daemon),
    );
  }
  return dir;
}

function frrUser(): { uid: number; gid: number } {
  try {
    const out = execFileSync('id', ['-u', 'frr'], { encoding: 'utf8' }).trim();
    const gid = execFileSync('id', ['-g', 'frr'], { encoding: 'utf8' }).trim();
    return { uid: Number(out), gid: Number(gid) };
  } catch {
    throw new Error(`FRR is not installed (no frr user; running as ${userInfo().username}): apt-get install frr`);
  }
}
