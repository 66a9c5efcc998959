/**
 * One forwarder: a TUN queue, the engine of its shard, and the hand-off rings to the other
 * forwarders. The thread entry (workers/forwarder.ts) only wires this to the native queue
 * and to messages; tests wire it to the fake queue (tun_fake.ts). With `io: xdp` the main
 * queue is the AF_XDP queue (xdp_device.ts), which also sends what the engine generates,
 * and the TUN queue is a second input (`addInput`) for what the kernel still routes there.
 *
 *   burst from the queue → engine.processBurst → packets owned elsewhere into hand-off
 *   rings (owner woken once per drain cycle) → FORWARD slots written back by the queue →
 *   generated packets (RSTs) written.
 *   wake-up from another forwarder, or after each burst of our own when its ring has
 *   packets → drain it → process → write back.
 */

import { setImmediate as nextTurn } from 'node:timers/promises';
import { HANDOFF_DRAIN_SLOTS, SLOT_SIZE_BYTES } from '../constants.js';
import { DROP_REDIRECT_FULL, VERDICT_DROP, VERDICT_REDIRECT } from '../nat/verdict.js';
import type { Engine } from './engine.js';
import { HandoffRing } from './handoff.js';
import { PacketRing } from './ring.js';
import { addQueueStats, type QueueStats, type TunQueue } from './tun_device.js';

export interface ForwarderLinks {
  /** Hand-off rings to each owner / from each sender (null at this forwarder's index). */
  to: (SharedArrayBuffer | null)[];
  from: (SharedArrayBuffer | null)[];
  /** Tell forwarder `owner` that its ring from us has packets. */
  wake: (owner: number) => void;
}

export class Forwarder {
  private readonly to: (HandoffRing | null)[];
  private readonly from: (HandoffRing | null)[];
  private readonly inbox: PacketRing;
  private readonly extra: TunQueue[] = [];

  constructor(
    readonly engine: Engine,
    readonly queue: TunQueue,
    readonly ring: PacketRing,
    private readonly links: ForwarderLinks,
    private readonly now: () => number,
  ) {
    this.to = links.to.map((sab) => (sab ? new HandoffRing(sab) : null));
    this.from = links.from.map((sab) => (sab ? new HandoffRing(sab) : null));
    // Slots that hold whatever the senders' queues deliver (theirs are like ours): a GSO
    // super-packet with offloads, a frame on AF_XDP.
    const inboxSlot = Math.max(SLOT_SIZE_BYTES, (ring.slotSize + 7) & ~7);
    this.inbox = new PacketRing(HANDOFF_DRAIN_SLOTS, inboxSlot, undefined, ring.headroom);
  }

  start(): void {
    this.queue.start(this.ring, (count) => this.onBurst(count));
  }

  /** A second queue and its ring: bursts from it are processed like the main queue's, and
   * its FORWARD slots go back out through it. */
  addInput(queue: TunQueue, ring: PacketRing): void {
    this.extra.push(queue);
    queue.start(ring, (count) => this.onBurst(count, ring));
  }

  private onBurst(count: number, ring = this.ring): void {
    this.engine.processBurst(ring, count, this.now());
    if (this.engine.lastBurstRedirects > 0) this.handOver(ring, count);
    if (this.engine.handovers.length > 0) this.handOverFragments(ring.headroom);
    this.flushEmitted();
    // A busy forwarder returns to its event loop (and the wake-up message) only after several
    // bursts: take what the others handed over now, before their rings fill.
    for (let s = 0; s < this.from.length; s++) if (this.from[s] && this.from[s]!.pending > 0) this.drainFrom(s);
  }

  /** The queues' counters, summed. */
  queueStats(): QueueStats {
    return this.extra.reduce((sum, q) => addQueueStats(sum, q.stats()), this.queue.stats());
  }

  /** Move the timers on (call every tick while idle) and write what they generated. */
  tick(): void {
    this.engine.advanceTimers(this.now());
    this.flushEmitted();
  }

  private flushEmitted(): void {
    if (this.engine.emitCount > 0) {
      this.queue.writeRing(this.engine.emit, this.engine.emitCount);
      this.engine.clearEmitted();
    }
  }

  private handOver(from: PacketRing, count: number): void {
    for (let i = 0; i < count; i++) {
      if (from.verdicts[i] !== VERDICT_REDIRECT) continue;
      const owner = from.aux[i]!;
      const out = this.to[owner];
      if (!out || !out.push(from, i)) {
        this.engine.countDrop(DROP_REDIRECT_FULL);
        continue;
      }
      if (out.claimWake()) this.links.wake(owner);
    }
  }

  /** The fragments of datagrams that another worker owns (Engine.handovers). */
  private handOverFragments(headroom: number): void {
    for (const { owner, fragments } of this.engine.handovers) {
      const out = this.to[owner];
      let sent = 0;
      for (const f of fragments) if (out?.pushBytes(f, headroom)) sent++;
      if (sent < fragments.length) this.engine.countDrop(DROP_REDIRECT_FULL, fragments.length - sent);
      if (sent > 0 && out!.claimWake()) this.links.wake(owner);
    }
    this.engine.handedOver();
  }

  /** Another forwarder (`sender`) handed packets over: process and write them. */
  drainFrom(sender: number): void {
    const inbox = this.from[sender];
    if (!inbox) return;
    for (;;) {
      const n = inbox.drain(this.inbox);
      if (n === 0) return;
      this.engine.processBurst(this.inbox, n, this.now());
      // These are ours by the same function that sent them; never bounce one back.
      if (this.engine.handovers.length > 0) {
        for (const { fragments } of this.engine.handovers) this.engine.countDrop(DROP_REDIRECT_FULL, fragments.length);
        this.engine.handedOver();
      }
      for (let i = 0; i < n; i++) {
        if (this.inbox.verdicts[i] === VERDICT_REDIRECT) {
          this.inbox.verdicts[i] = VERDICT_DROP;
          this.engine.countDrop(DROP_REDIRECT_FULL);
        }
      }
      this.queue.writeRing(this.inbox, n);
      this.flushEmitted();
    }
  }

  /**
   * End every session of real server `rsId` with RSTs to both sides (health check failed),
   * a round of RSTs at a time with the queue served in between: ending 64k sessions takes
   * ~30 ms, too long to hold every other flow of this worker. The server is already out of
   * the scheduler (the services update comes first), so no new session of it appears
   * behind the scan.
   */
  async resetServer(rsId: number): Promise<number> {
    let ended = 0;
    for (let from = 0; from >= 0;) {
      const r = this.engine.resetServer(rsId, from);
      ended += r.ended;
      this.flushEmitted();
      from = r.next;
      if (from >= 0) await nextTurn();
    }
    return ended;
  }

  close(): void {
    this.queue.close();
    for (const q of this.extra) q.close();
  }
}
