/**
 * The TUN device as the data plane sees it: open a multi-queue device, and per queue a
 * burst interface (`start(onBurst)` fills a ring and calls back once per burst; FORWARD
 * slots are written back after the callback returns). The Linux implementation is the
 * native addon (native/tun.c); tun_fake.ts is the stand-in for tests without root.
 */

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';
import type { PacketRing } from './ring.js';

export interface QueueStats {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  readErrors: number;
  writeErrors: number;
  /** Writes refused because the kernel queue was full (EAGAIN/ENOBUFS). */
  writeDropped: number;
  wakeups: number;
  /** DR: frames sent to the real servers' link, and sends that failed. */
  linkPackets: number;
  linkErrors: number;
  /** io: xdp — packets the AF_XDP queue could not send itself (no route through an XDP
   * interface, neighbour not resolved) and wrote into the TUN device for the kernel. */
  kernelPackets: number;
  /** io: xdp — frames the kernel dropped before the queue (RX ring full, no fill frame) and
   * TX descriptors it refused. */
  rxDropped: number;
  /** io: xdp — received TCP/UDP checksums the sender had left partial, completed. */
  csumCompleted: number;
  /** io: xdp — next hops asked of the kernel (rtnetlink) on a cache miss. */
  nextHopLookups: number;
}

export interface TunQueue {
  /** Begin reading into `ring`; `onBurst(count)` runs once per burst of `count` slots. */
  start(ring: PacketRing, onBurst: (count: number) => void): void;
  /** Write the FORWARD slots among the first `count` of another ring (and LINK slots to the
   * link, when one is set). */
  writeRing(ring: PacketRing, count: number): void;
  /** DR: send slots whose verdict is LINK through packet socket `fd` (−1: none). */
  setLink(fd: number): void;
  stats(): QueueStats;
  close(): void;
}

/** All-zero stats (a queue that has not started). */
export function emptyQueueStats(): QueueStats {
  return {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    readErrors: 0,
    writeErrors: 0,
    writeDropped: 0,
    wakeups: 0,
    linkPackets: 0,
    linkErrors: 0,
    kernelPackets: 0,
    rxDropped: 0,
    csumCompleted: 0,
    nextHopLookups: 0,
  };
}

/** Field-by-field sum (a forwarder with a TUN queue and an AF_XDP queue). */
export function addQueueStats(a: QueueStats, b: QueueStats): QueueStats {
  const out = { ...a };
  for (const k of Object.keys(out) as (keyof QueueStats)[]) out[k] += b[k] ?? 0;
  return out;
}

interface NativeQueue {
  start(): void;
  close(): void;
  writeRing(ringBytes: Uint8Array, slotSize: number, slots: number, count: number): void;
  stats(): QueueStats;
  setLink(fd: number): void;
}

/** A route to a host prefix as native/tun.c hostRoutes lists it (the fields `ip -j route`
 * gives it; those the route lacks absent). */
export interface HostRoute {
  prefix: string;
  /** unicast, blackhole, unreachable, prohibit, ... */
  type: string;
  dev?: string;
  gateway?: string;
  metric?: number;
  /** How many next hops, when the route has several. */
  nexthops?: number;
  /** The nexthop object the route uses (`ip nexthop`). */
  nhid?: number;
}

export interface NativeAddon {
  open(name: string, queues: number, vnetHdr: boolean): { name: string; fds: number[] };
  configure(name: string, mtu: number, txqueuelen: number): void;
  closeFd(fd: number): void;
  setOffload(fd: number, flags: number): void;
  attachSteering(fd: number, insns: Uint8Array): void;
  /** DR: a send-only packet socket on interface `name` (native/tun.c openLink). */
  openLink(name: string, vnetHdr: boolean): number;
  /** DR: the usable neighbour entries of interface `name` (native/tun.c neighbours). */
  neighbours(name: string): { dst: string; lladdr: string }[];
  /** The local table's `local` routes, "ADDRESS/LENGTH", both families (native/tun.c
   * localRoutes): the host's own addresses. */
  localRoutes(): string[];
  /** The kernel's route to one address: its interface and gateway, {} when there is none
   * (native/tun.c routeGet). */
  routeGet(address: string): { dev?: string; gateway?: string };
  /** A table's routes to host prefixes (/32, /128), both families (table 0: main;
   * native/tun.c hostRoutes). */
  hostRoutes(table: number): HostRoute[];
  /** One route into a device ('': a blackhole) replaced or deleted (metric -1: the kernel's
   * default; table 0: main): undefined when done, else the kernel's reason (native/tun.c
   * routeChange). */
  routeChange(replace: boolean, prefix: string, dev: string, metric: number, table: number): string | undefined;
  /** One policy rule added or deleted (family 4 or 6; table, from, proto, sport 0 or '': not
   * matched on): undefined when done, else the kernel's reason (native/tun.c ruleChange). */
  ruleChange(
    add: boolean,
    family: 4 | 6,
    priority: number,
    table: number,
    from: string,
    proto: number,
    sport: number,
  ): string | undefined;
  /** The main thread's stall probe (native/stall.c; control/loop_watch.ts). */
  stallStart(lateMs: number, periodMs: number): void;
  stallBeat(): { cpuMs?: number; waitMs?: number; samples?: [string, number][] };
  stallStop(): void;
  Queue: new (
    fd: number,
    ringBytes: Uint8Array,
    slotSize: number,
    slots: number,
    onBurst: (n: number) => void,
  ) => NativeQueue;
}

let addon: NativeAddon | undefined;

/** The native addon, built by `npm ci` (scripts/build-native.mjs). */
export function nativeAddon(): NativeAddon {
  if (addon) return addon;
  const file = join(packageRoot(), 'native', 'build', 'Release', 'tunvs_native.node');
  if (!existsSync(file)) {
    throw new Error(`native addon not built (${file} missing): run npm ci, or node scripts/build-native.mjs`);
  }
  addon = createRequire(import.meta.url)(file) as NativeAddon;
  return addon;
}

/** One queue fd of a TUN device, driven by the native addon on this thread's event loop. */
export class LinuxTunQueue implements TunQueue {
  private q: NativeQueue | undefined;
  private linkFd = -1;

  constructor(readonly fd: number) {}

  start(ring: PacketRing, onBurst: (count: number) => void): void {
    if (this.q) throw new Error('queue already started');
    this.q = new (nativeAddon().Queue)(this.fd, ring.whole, ring.slotSize, ring.slots, onBurst);
    this.q.setLink(this.linkFd);
    this.q.start();
  }

  setLink(fd: number): void {
    this.linkFd = fd;
    this.q?.setLink(fd);
  }

  writeRing(ring: PacketRing, count: number): void {
    if (count > 0) this.q?.writeRing(ring.whole, ring.slotSize, ring.slots, count);
  }

  stats(): QueueStats {
    // The native TUN queue has no AF_XDP figures: they read 0.
    return { ...emptyQueueStats(), ...this.q?.stats() };
  }

  close(): void {
    this.q?.close();
    this.q = undefined;
  }
}

/** TUNSETOFFLOAD flags (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
