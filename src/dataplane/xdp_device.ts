/**
 * The AF_XDP queue of one forwarder (config `io: xdp`, docs/xdp.md): its sockets on every XDP
 * interface (one per interface, bound to the receive queue numbered like the forwarder),
 * sharing one UMEM that is also the forwarder's burst ring. The native side is native/xdp.c;
 * the program that steers frames here is xdp_program.ts, attached by the runtime.
 *
 * It is a TunQueue: `start(ring, onBurst)` takes the ring this queue made (`ring`), FORWARD
 * slots are sent after the callback returns, and `writeRing` sends a plain ring's FORWARD
 * slots (generated packets, hand-overs). What it cannot send itself (no route through an XDP
 * interface, a neighbour not resolved yet) goes into the TUN device, for the kernel to send.
 */

import { ETH_HEADER_LEN } from '../packet/headers.js';
import { XDP_BURST, XDP_FRAME_BYTES, XDP_FRAMES, XDP_RX_HEADROOM_BYTES } from '../constants.js';
import { PacketRing } from './ring.js';
import { emptyQueueStats, nativeAddon, type QueueStats, type TunQueue } from './tun_device.js';

/** One interface as a forwarder's queue sees it. */
export interface XdpPort {
  ifindex: number;
  /** The receive queue this forwarder's socket is bound to. */
  queue: number;
  /** The interface's XSKMAP (the runtime made it; the socket is put in at `queue`). */
  mapFd: number;
  /** The interface's own MAC (the source of every frame sent there). */
  mac: Uint8Array;
}

export interface NativeXdpQueue {
  readonly buffer: ArrayBuffer;
  start(): void;
  close(): void;
  writeRing(ringBytes: Uint8Array, slotSize: number, slots: number, count: number): void;
  stats(): QueueStats;
  setLink(fd: number): void;
}

/** The AF_XDP half of the native addon (native/xdp.c). */
export interface XdpAddon {
  XdpQueue: new (
    ports: XdpPort[],
    options: { tunFd: number; frames: number; frameSize: number; burst: number; zeroCopy: number },
    onBurst: (n: number) => void,
  ) => NativeXdpQueue;
  xdpXskMap(entries: number): number;
  xdpLoad(insns: Uint8Array): number;
  /** Attach through a bpf_link (returns its fd; closing it detaches). */
  xdpAttach(ifindex: number, progFd: number, generic: boolean): number;
  xdpReplace(linkFd: number, progFd: number): void;
  xdpMapSet(mapFd: number, key: number, fd: number): void;
  /** Close an fd (a map, program or link). */
  xdpClose(fd: number): void;
}

export function xdpAddon(): XdpAddon {
  const addon = nativeAddon();
  return { ...(addon as unknown as XdpAddon), xdpClose: (fd) => addon.closeFd(fd) };
}

/** The UMEM frame size for an MTU: the packet, its Ethernet header and a DR frame's second
 * one behind the kernel's receive headroom. */
export function xdpFrameBytes(mtu: number): number {
  return XDP_RX_HEADROOM_BYTES + 2 * ETH_HEADER_LEN + mtu <= XDP_FRAME_BYTES ? XDP_FRAME_BYTES : 2 * XDP_FRAME_BYTES;
}

export class XdpQueue implements TunQueue {
  readonly ring: PacketRing;
  private readonly q: NativeXdpQueue;
  private burstHandler: (count: number) => void = () => {};
  private started = false;

  constructor(ports: XdpPort[], tunFd: number, mtu: number, zeroCopy: boolean) {
    const frameSize = xdpFrameBytes(mtu);
    const Ctor = xdpAddon().XdpQueue;
    this.q = new Ctor(
      ports,
      { tunFd, frames: XDP_FRAMES, frameSize, burst: XDP_BURST, zeroCopy: zeroCopy ? 1 : 0 },
      (n: number) => this.burstHandler(n),
    );
    this.ring = PacketRing.overFrames(
      this.q.buffer,
      XDP_FRAMES * frameSize,
      XDP_BURST,
      frameSize - XDP_RX_HEADROOM_BYTES - ETH_HEADER_LEN,
    );
  }

  start(ring: PacketRing, onBurst: (count: number) => void): void {
    if (ring !== this.ring) throw new Error('an XDP queue bursts into its own ring (XdpQueue.ring)');
    if (this.started) throw new Error('queue already started');
    this.started = true;
    this.burstHandler = onBurst;
    this.q.start();
  }

  writeRing(ring: PacketRing, count: number): void {
    if (count > 0) this.q.writeRing(ring.whole, ring.slotSize, ring.slots, count);
  }

  setLink(fd: number): void {
    this.q.setLink(fd);
  }

  stats(): QueueStats {
    return { ...emptyQueueStats(), ...this.q.stats() };
  }

  close(): void {
    this.q.close();
  }
}
