/**
 * DR mode's way out (nat/modes/dr.ts): the LB's link to the real servers of its DR services.
 *
 *   plan      each DR real server must be on a directly connected network (the kernel's
 *             route to it, as `ip route get` finds it, has no gateway: one rtnetlink request
 *             each, native routeGet), all on one interface: else the config is refused,
 *             naming the server. Returns that interface.
 *   open      a send-only packet socket on it (native openLink; PACKET_VNET_HDR with TUN
 *             offloads), shared by every forwarder thread, and the interface's MAC.
 *   refresh   the servers' MACs from the kernel's neighbour table (an rtnetlink dump), every
 *             LINK_REFRESH_MS; a server without an entry is resolved the way the kernel does
 *             it for any packet: tunvs sends it an empty UDP datagram to the discard port (9),
 *             and the kernel resolves the neighbour to send it. Until then its DR packets are
 *             dropped (dr_no_neighbour).
 *   annotate  the services as the forwarders get them: each DR server's MAC, the link's MAC.
 */

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import { AF_INET } from '../packet/headers.js';
import type { ResolvedService } from '../service/service.js';

/** How often the neighbour table is read again (a server's MAC can change: a replaced NIC,
 * a VM moved). */
export const LINK_REFRESH_MS = 2000;
/** How long a replaced link stays open (the forwarders switch on a message). */
const LINK_SWITCH_GRACE_MS = 1000;
/** After sending resolutions, when to read the neighbour table again. */
export const LINK_RESOLVE_RECHECK_MS = 150;
/** The discard port: what the resolving datagram is sent to. */
const DISCARD_PORT = 9;

export class DrLink {
  dev: string | undefined;
  mac: string | undefined;
  fd = -1;
  /** Server address → MAC. */
  private readonly macs = new Map<string, string>();
  /** DR servers the last refresh found no MAC for (a resolution is under way). */
  missing = 0;

  constructor(
    private readonly openLink: (dev: string) => number,
    private readonly closeFd: (fd: number) => void,
    private readonly neighbours: (dev: string) => { dst: string; lladdr: string }[],
    /** The kernel's route to an address: its interface and gateway, {} when none. */
    private readonly routeTo: (address: string) => { gateway?: string; dev?: string },
  ) {}

  /** The interface every DR real server of `services` is directly reachable on (undefined:
   * no DR service). Throws ConfigError naming the server that is not. */
  plan(services: readonly ResolvedService[], path = 'services'): string | undefined {
    let dev: string | undefined;
    services.forEach((s, i) => {
      if (s.mode !== 'dr') return;
      s.realServers.forEach((r, j) => {
        const where = `${path}[${i}].realServers[${j}].address`;
        const route = this.routeTo(r.address);
        if (route.gateway !== undefined || route.dev === undefined)
          throw new ConfigError(
            'TUNVS_ERR_CONFIG_MODE',
            where,
            `${r.address} is routed via ${route.gateway ?? 'nothing'}: DR needs real servers on a network this LB is directly connected to`,
          );
        if (dev !== undefined && route.dev !== dev)
          throw new ConfigError(
            'TUNVS_ERR_CONFIG_MODE',
            where,
            `${r.address} is on ${route.dev}, other DR real servers on ${dev}: one link per LB`,
          );
        dev = route.dev;
      });
    });
    return dev;
  }

  /** The link on `dev` is open. True when it changed. A link it replaces is closed a second
   * later, once the forwarders have the new one: closed at once, its fd number could be
   * reused by another file before they stop writing to it. */
  open(dev: string): boolean {
    if (this.dev === dev && this.fd >= 0) return false;
    const old = this.fd;
    this.fd = this.openLink(dev);
    this.dev = dev;
    this.mac = readFileSync(`/sys/class/net/${dev}/address`, 'utf8').trim();
    if (old >= 0) setTimeout(() => this.closeFd(old), LINK_SWITCH_GRACE_MS).unref();
    return true;
  }

  /** Read the neighbour table; resolve the DR servers without an entry. True when a MAC
   * changed (the forwarders need the services again). */
  refresh(services: readonly ResolvedService[]): boolean {
    if (this.dev === undefined) return false;
    const seen = new Map<string, string>();
    try {
      for (const n of this.neighbours(this.dev)) seen.set(n.dst, n.lladdr);
    } catch {
      // The interface is gone: every DR server counts as unresolved until a reload.
    }
    let changed = false;
    this.missing = 0;
    for (const s of services) {
      if (s.mode !== 'dr') continue;
      for (const r of s.realServers) {
        const mac = seen.get(r.address);
        if (mac === undefined) {
          resolve(r.address, s.af);
          this.missing++;
        }
        if (this.macs.get(r.address) !== mac) {
          changed = true;
          if (mac === undefined) this.macs.delete(r.address);
          else this.macs.set(r.address, mac);
        }
      }
    }
    return changed;
  }

  /** `services` with the DR servers' MACs and the link's own filled in. */
  annotate(services: readonly ResolvedService[]): ResolvedService[] {
    return services.map((s) =>
      s.mode !== 'dr' || this.mac === undefined
        ? s
        : {
            ...s,
            linkMac: this.mac,
            realServers: s.realServers.map((r) => {
              const mac = this.macs.get(r.address);
              return mac === undefined ? r : { ...r, mac };
            }),
          },
    );
  }

  /** No link any more (`later`: the fd is closed after the forwarders were told, as in open). */
  close(later = false): void {
    const fd = this.fd;
    if (fd >= 0) {
      if (later) setTimeout(() => this.closeFd(fd), LINK_SWITCH_GRACE_MS).unref();
      else this.closeFd(fd);
    }
    this.fd = -1;
    this.dev = undefined;
    this.mac = undefined;
  }
}

/** Make the kernel resolve `address`'s link-layer address: send it an empty datagram. */
function resolve(address: string, af: number): void {
  const sock = createSocket(af === AF_INET ? 'udp4' : 'udp6');
  sock.on('error', () => sock.close());
  sock.send(Buffer.alloc(0), DISCARD_PORT, address, () => sock.close());
}
