/**
 * An in-memory TUN queue for tests: `inject()` queues packets as if the kernel had routed
 * them into the device, `deliver()` runs one burst through the callback, and every packet
 * the data plane writes back lands in `written` (DR frames for the link in `linked`).
 */

import { VERDICT_FORWARD, VERDICT_LINK } from '../nat/verdict.js';
import type { PacketRing } from './ring.js';
import { emptyQueueStats, type QueueStats, type TunQueue } from './tun_device.js';

export class FakeTunQueue implements TunQueue {
  readonly written: Uint8Array[] = [];
  readonly linked: Uint8Array[] = [];
  private linkFd = -1;
  private readonly pending: { packet: Uint8Array; header?: Uint8Array }[] = [];
  private ring: PacketRing | undefined;
  private onBurst: ((count: number) => void) | undefined;
  private readonly s: QueueStats = emptyQueueStats();

  start(ring: PacketRing, onBurst: (count: number) => void): void {
    this.ring = ring;
    this.onBurst = onBurst;
  }

  inject(...packets: Uint8Array[]): void {
    for (const packet of packets) this.pending.push({ packet });
  }

  /** Queue a packet behind a virtio_net_hdr (a ring with offloads: GSO, partial checksums). */
  injectWithHeader(header: Uint8Array, packet: Uint8Array): void {
    this.pending.push({ packet, header });
  }

  /** Hand up to one ring of pending packets to the callback; returns how many. */
  deliver(): number {
    const ring = this.ring;
    if (!ring || !this.onBurst) throw new Error('queue not started');
    let n = 0;
    while (n < ring.slots && this.pending.length > 0) {
      const { packet: p, header } = this.pending.shift()!;
      ring.put(n, p.subarray(0, Math.min(p.length, ring.slotSize - ring.headroom)), header);
      this.s.rxPackets++;
      this.s.rxBytes += p.length;
      n++;
    }
    if (n === 0) return 0;
    this.s.wakeups++;
    this.onBurst(n);
    this.writeRing(ring, n);
    return n;
  }

  setLink(fd: number): void {
    this.linkFd = fd;
  }

  writeRing(ring: PacketRing, count: number): void {
    for (let i = 0; i < count; i++) {
      if (ring.verdicts[i] === VERDICT_LINK) {
        if (this.linkFd >= 0) this.linked.push(ring.get(i));
        else this.s.writeErrors++;
        continue;
      }
      if (ring.verdicts[i] !== VERDICT_FORWARD) continue;
      const p = ring.get(i);
      this.written.push(p);
      this.s.txPackets++;
      this.s.txBytes += p.length;
    }
  }

  stats(): QueueStats {
    return { ...this.s };
  }

  close(): void {
    this.ring = undefined;
    this.onBurst = undefined;
  }
}
