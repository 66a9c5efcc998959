/**
 * Changes tunvs makes to the host, each recorded with its undo so that shutdown (and a
 * failed start-up) leaves the network namespace as it was: routes of the VIPs and local
 * addresses into the TUN device, and the sysctls forwarding needs.
 */

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { AF_INET } from '../packet/headers.js';
import { formatAddress } from '../service/addr.js';
import type { ResolvedService } from '../service/service.js';

export class SystemChanges {
  private readonly undo: (() => void)[] = [];
  private readonly routes = new Map<string, Route>();

  constructor(private readonly log: (msg: string) => void) {}

  /** Set a sysctl (path under /proc/sys, dotted or slashed), remembering the old value. */
  sysctl(name: string, value: string): void {
    const file = `/proc/sys/${name.replace(/\./g, '/')}`;
    let old: string;
    try {
      old = readFileSync(file, 'utf8').trim();
    } catch {
      if (name.startsWith('net.ipv6.')) return; // no IPv6 in this namespace
      throw new Error(`cannot read sysctl ${name}`);
    }
    if (old === value) return;
    try {
      writeFileSync(file, value);
    } catch (e) {
      throw new Error(`cannot set ${name}=${value} (${(e as Error).message}); in a container, give it that sysctl`);
    }
    this.undo.push(() => writeFileSync(file, old));
  }

  /** Set a sysctl of a device tunvs created: it goes away with the device, no undo.
   * In a container /proc/sys is read-only: a value that is already right (inherited from
   * the `default` settings the container was given) is fine, and IPv6 settings do not
   * matter where IPv6 is off; anything else is an error that says what to set. */
  deviceSysctl(dev: string, name: string, value: string): void {
    const file = `/proc/sys/${name.replace('{dev}', dev)}`;
    try {
      if (readFileSync(file, 'utf8').trim() === value) return;
      writeFileSync(file, value);
    } catch (e) {
      const ipv6Off = (): boolean => {
        try {
          return readFileSync(`/proc/sys/net/ipv6/conf/${dev}/disable_ipv6`, 'utf8').trim() === '1';
        } catch {
          return true; // no IPv6 at all
        }
      };
      if (name.startsWith('net/ipv6/') && ipv6Off()) return;
      const dotted = name.replace('{dev}', dev).replace(/\//g, '.');
      throw new Error(
        `cannot set ${dotted}=${value} (${(e as Error).message}); in a container, give it the sysctl ${dotted.replace(dev, 'default')}=${value}`,
      );
    }
  }

  /** Route one address (/32 or /128) into the device. */
  route(af: number, words: ArrayLike<number>, dev: string): void {
    const r = routeOf(af, words, dev);
    if (this.routes.has(r.key)) return;
    execFileSync('ip', [r.family, 'route', 'replace', r.prefix, 'dev', dev], { stdio: 'pipe' });
    this.routes.set(r.key, r);
  }

  /** Exactly the routes of every VIP and local address of `services`: new ones added, those
   * no service uses any more (a reload or edit removed them) withdrawn. */
  routeServices(services: readonly ResolvedService[], dev: string): void {
    const wanted = new Set<string>();
    for (const s of services) {
      for (const a of [s.vip, ...s.laddrs]) {
        this.route(s.af, a, dev);
        wanted.add(routeOf(s.af, a, dev).key);
      }
    }
    for (const [key, r] of this.routes) {
      if (r.dev === dev && !wanted.has(key)) this.withdraw(r);
    }
  }

  private withdraw(r: Route): void {
    try {
      execFileSync('ip', [r.family, 'route', 'del', r.prefix, 'dev', r.dev], { stdio: 'pipe' });
    } catch {
      // Gone with the device already.
    }
    this.routes.delete(r.key);
  }

  /** Undo everything: the routes, then the rest newest first. Never throws. */
  restore(): void {
    for (const r of this.routes.values()) this.withdraw(r);
    while (this.undo.length > 0) {
      const f = this.undo.pop()!;
      try {
        f();
      } catch (e) {
        this.log(`restore: ${(e as Error).message}`);
      }
    }
  }
}

interface Route {
  key: string;
  family: '-4' | '-6';
  prefix: string;
  dev: string;
}

function routeOf(af: number, words: ArrayLike<number>, dev: string): Route {
  const addr = formatAddress(af, words);
  const prefix = af === AF_INET ? `${addr}/32` : `${addr}/128`;
  return { key: `${prefix} ${dev}`, family: af === AF_INET ? '-4' : '-6', prefix, dev };
}
