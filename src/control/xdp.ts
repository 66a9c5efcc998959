/**
 * The AF_XDP path's programs (config `io: xdp`, docs/xdp.md), on the main thread:
 *
 *   open      each interface of `xdp.interfaces` read from sysfs (index, MAC, MTU, receive
 *             queues) and given its XSKMAP; a missing interface is a config error naming it;
 *   portsFor  forwarder w's sockets: one on each interface that has a receive queue w (the
 *             forwarder binds it and puts it in the map);
 *   update    the XDP program (dataplane/xdp_program.ts) for the current VIPs and local
 *             addresses, attached on every interface through a bpf_link the first time and
 *             swapped on the link after (reload, cluster peers);
 *   close     links, programs and maps closed: the kernel detaches the programs. It does the
 *             same when tunvs dies, since the links die with the process.
 */

import { readdirSync, readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import type { XdpConfig } from '../config/config.js';
import type { ParsedAddress } from '../service/addr.js';
import { xdpAddon, type XdpPort } from '../dataplane/xdp_device.js';
import { xdpProgram } from '../dataplane/xdp_program.js';

interface XdpInterface {
  name: string;
  ifindex: number;
  mac: Uint8Array;
  mtu: number;
  rxQueues: number;
  mapFd: number;
  progFd: number;
  linkFd: number;
}

function sysfs(dev: string, file: string): string {
  return readFileSync(`/sys/class/net/${dev}/${file}`, 'utf8').trim();
}

export class XdpPrograms {
  private readonly ifs: XdpInterface[] = [];
  /** How each interface's program was attached (generic: the kernel's skb-mode XDP). */
  generic = false;

  constructor(private readonly config: XdpConfig) {}

  open(): void {
    const addon = xdpAddon();
    this.generic = this.config.mode === 'generic';
    this.config.interfaces.forEach((name, i) => {
      let ifindex: number;
      try {
        ifindex = Number(sysfs(name, 'ifindex'));
      } catch {
        throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', `xdp.interfaces[${i}]`, `no interface ${name} on this host`);
      }
      const mac = Uint8Array.from(sysfs(name, 'address').split(':'), (h) => parseInt(h, 16));
      if (mac.length !== 6)
        throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', `xdp.interfaces[${i}]`, `${name} is not an Ethernet interface`);
      const rxQueues = readdirSync(`/sys/class/net/${name}/queues`).filter((q) => q.startsWith('rx-')).length;
      const mapFd = addon.xdpXskMap(Math.max(rxQueues, 1));
      this.ifs.push({ name, ifindex, mac, mtu: Number(sysfs(name, 'mtu')), rxQueues, mapFd, progFd: -1, linkFd: -1 });
    });
  }

  /** The smallest MTU of the interfaces (the engine's MTU for what it sends there). */
  get mtu(): number {
    return Math.min(...this.ifs.map((f) => f.mtu));
  }

  portsFor(worker: number): XdpPort[] {
    return this.ifs
      .filter((f) => worker < f.rxQueues)
      .map((f) => ({ ifindex: f.ifindex, queue: worker, mapFd: f.mapFd, mac: f.mac }));
  }

  /** Interfaces with fewer receive queues than forwarders (their frames reach only some). */
  fewQueues(workers: number): string[] {
    return this.ifs.filter((f) => f.rxQueues < workers).map((f) => `${f.name} (${f.rxQueues})`);
  }

  update(addresses: readonly ParsedAddress[]): void {
    const addon = xdpAddon();
    for (const f of this.ifs) {
      const prog = addon.xdpLoad(xdpProgram(f.mapFd, addresses));
      try {
        if (f.linkFd < 0) f.linkFd = addon.xdpAttach(f.ifindex, prog, this.generic);
        else addon.xdpReplace(f.linkFd, prog);
      } catch (e) {
        addon.xdpClose(prog);
        throw new Error(`XDP on ${f.name}: ${(e as Error).message}`);
      }
      if (f.progFd >= 0) addon.xdpClose(f.progFd);
      f.progFd = prog;
    }
  }

  close(): void {
    const addon = xdpAddon();
    for (const f of this.ifs) {
      for (const fd of [f.linkFd, f.progFd, f.mapFd]) if (fd >= 0) addon.xdpClose(fd);
      f.linkFd = f.progFd = f.mapFd = -1;
    }
    this.ifs.length = 0;
  }

  describe(): { interface: string; ifindex: number; rxQueues: number; attached: boolean }[] {
    return this.ifs.map((f) => ({
      interface: f.name,
      ifindex: f.ifindex,
      rxQueues: f.rxQueues,
      attached: f.linkFd >= 0,
    }));
  }
}
