/**
 * The lab's NAT, TUNNEL and DR services and the real-server side each needs (docs/modes.md),
 * beside the FULLNAT ones:
 *
 *   nat-v4/v6      VIP:8081 → rs1..rs3:8080, NAT: the real servers route the clients'
 *                  networks through the LB (the floating next hop), which turns their replies
 *                  back into VIP → client
 *   tunnel-v4/v6   VIP:8080 → rs1..rs3:8080, TUNNEL (IP-in-IP from the LB's first local
 *                  address): each real server holds the VIPs on lo (arp_ignore 1, arp_announce
 *                  2, as for LVS DR/TUN), takes the tunnel apart with tunvs's XDP
 *                  decapsulator on eth0 (this kernel has no ipip module; `tunvs rs decap`;
 *                  GUE on LAB.guePort too, for services of tunnel.type gue),
 *                  and answers the client directly — here through the LB node's kernel, its
 *                  gateway, never through tunvs. Its routes to the clients carry advmss, so
 *                  clients send segments that fit the tunnel.
 *   dr-v4/v6       198.18.0.101 / fd18:18::101 :8080 → rs1..rs3:8080, DR: frames from lb-a's
 *                  eth1 to the servers' MACs (same bridge); the servers hold those VIPs on lo
 *                  too and answer as for TUNNEL.
 *
 * The cluster (`lab up --cluster N`) has TUNNEL and DR only, with mh and sloppy TCP, on every
 * node, and the real servers answer through the router. `lab up --no-modes` leaves these out.
 * The services' YAML is topology.ts modeServices.
 */

import { LAB } from './topology.js';
import { inNs, ipBatch } from './netns.js';
import { attachDecap } from '../rs/decap.js';
import { nsName } from './state.js';

/** The VIP port of each mode's lab service. */
export const MODE_PORTS = { fullnat: LAB.vport, nat: LAB.natPort, tunnel: LAB.tunnelPort, dr: LAB.tunnelPort } as const;
export type LabMode = keyof typeof MODE_PORTS;

/** The VIP of each mode's lab service (DR has VIPs of its own). */
export function modeVip(mode: LabMode, family: 4 | 6): string {
  if (mode === 'dr') return family === 4 ? LAB.drVip4 : LAB.drVip6;
  return family === 4 ? LAB.vip4 : LAB.vip6;
}

/** advmss of the real servers' routes to the clients: 1500 − outer header − IP − TCP. */
const ADVMSS4 = 1500 - 20 - 20 - 20;
const ADVMSS6 = 1500 - 40 - 40 - 20;
/** The clients' networks (the real servers' way back to them). */
const CLIENTS4 = '198.18.100.0/24';
const CLIENTS6 = 'fd18:18:100::/64';

/** Set the real servers up for NAT, TUNNEL and DR (their gateway back to the clients is
 * `via4` / `via6`: the pair's floating next hop, or the cluster's router). */
export function setupModeServers(prefix: string, via4: string, via6: string): void {
  setupDirectServers(prefix, [LAB.vip4, LAB.vip6, LAB.drVip4, LAB.drVip6], via4, via6);
}

/** Set every real server up to answer clients of `vips` itself (TUNNEL, DR): the VIPs on lo
 * (not answered for by ARP), the tunnel taken apart, its replies to the clients through
 * `via4` / `via6` with room for the tunnel. Tests use it on the labs without mode services. */
export function setupDirectServers(
  prefix: string,
  vips: readonly string[],
  via4: string = LAB.float.rs4,
  via6: string = LAB.float.rs6,
): void {
  for (const rs of LAB.realServers) {
    const ns = nsName(prefix, rs.name);
    serverRoutes(prefix, rs.name, true, via4, via6);
    ipBatch(
      vips.map((v) => `addr add ${v}/${v.includes(':') ? 128 : 32} dev lo`),
      ns,
    );
    inNs(ns, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=1', 'net.ipv4.conf.all.arp_announce=2']);
    attachDecap('eth0', ns, undefined, [LAB.guePort]);
  }
}

/** Real server `name`'s routes to the clients, through the LB, with advmss or (to show path
 * MTU discovery through the tunnel) without. */
export function serverRoutes(
  prefix: string,
  name: string,
  advmss: boolean,
  via4: string = LAB.float.rs4,
  via6: string = LAB.float.rs6,
): void {
  ipBatch(
    [
      `route replace ${CLIENTS4} via ${via4}${advmss ? ` advmss ${ADVMSS4}` : ''}`,
      `route replace ${CLIENTS6} via ${via6}${advmss ? ` advmss ${ADVMSS6}` : ''}`,
    ],
    nsName(prefix, name),
  );
}

/** A TUNNEL service to the real servers' echo port with sloppy TCP and mh (docs/modes.md,
 * "Sloppy TCP"), as an admin `add-service` takes it: what the HA tests add at run time to
 * measure connections too young to be synced. `laddr`: the node's tunnel source. */
export function sloppyTunnelEcho(vip: string, laddr: string): Record<string, unknown> {
  return {
    name: 'tunnel-echo',
    vip,
    port: LAB.echoPort,
    mode: 'tunnel',
    scheduler: 'mh',
    sloppy: true,
    localAddresses: [laddr],
    realServers: LAB.realServers.map((r) => ({ address: r.v4, port: LAB.echoPort, weight: 1 })),
  };
}
