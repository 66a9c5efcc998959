/**
 * Forwarder thread: one per TUN queue. Wires the pieces of src/ together and runs them on
 * this thread's own event loop: the native queue fills the ring and calls back once per
 * burst; the engine rewrites the burst in place; the queue writes it back. A timer moves
 * the session table's wheel when traffic is idle. Messages from the main thread: new
 * services (reload) and stop.
 */

import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import {
  BURST_MAX,
  GSO_BURST_MAX,
  GSO_SLOT_SIZE_BYTES,
  SLOT_SIZE_BYTES,
  TIMER_TICK_MS,
  VNET_HDR_LEN,
} from '../src/constants.js';
import { Engine } from '../src/dataplane/engine.js';
import { PacketRing } from '../src/dataplane/ring.js';
import { HandoffRing } from '../src/dataplane/handoff.js';
import { LinuxTunQueue } from '../src/dataplane/tun_device.js';
import { DROP_REDIRECT_FULL, VERDICT_DROP, VERDICT_REDIRECT } from '../src/nat/verdict.js';
import type { ForwarderInit, ToForwarder } from '../src/control/forwarder_protocol.js';

const init = workerData as ForwarderInit;

// Forwarding is latency-critical work that must not queue behind other processes on the
// node: raise this thread's priority (setpriority on its own TID; needs CAP_SYS_NICE).
if (init.nice !== 0) {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    setPriority(tid, init.nice);
  } catch {
    // Not permitted here: run at the default priority.
  }
}
const port = parentPort!;
const now = (): number => performance.timeOrigin + performance.now();

// With offloads each slot holds a virtio_net_hdr and up to a 64 KiB GSO super-packet.
const headroom = init.offload ? VNET_HDR_LEN : 0;
const engine = new Engine(
  {
    worker: init.worker,
    workers: init.workers,
    capacity: init.capacity,
    mtu: init.mtu,
    timeouts: init.timeouts,
    rstOnExpire: init.rstOnExpire,
    nowMs: now(),
    countersSab: init.countersSab,
    connCountsSab: init.connCountsSab,
    headroom,
  },
  init.services,
);
const ring = init.offload
  ? new PacketRing(GSO_BURST_MAX, GSO_SLOT_SIZE_BYTES, undefined, headroom)
  : new PacketRing(BURST_MAX);
const queue = new LinuxTunQueue(init.fd);

function flushEmitted(): void {
  if (engine.emitCount > 0) {
    queue.writeRing(engine.emit, engine.emitCount);
    engine.clearEmitted();
  }
}

// Hand-over to other workers: the rare packets the kernel could not steer to their owner.
const handoffTo = init.handoffTo.map((sab) => (sab ? new HandoffRing(sab) : null));
const handoffFrom = init.handoffFrom.map((sab) => (sab ? new HandoffRing(sab) : null));
const handoffRing = new PacketRing(64, SLOT_SIZE_BYTES, undefined, headroom);

function handOver(from: PacketRing, count: number): void {
  for (let i = 0; i < count; i++) {
    if (from.verdicts[i] !== VERDICT_REDIRECT) continue;
    const owner = from.aux[i]!;
    const out = handoffTo[owner];
    if (!out || !out.push(from, i)) {
      engine.countDrop(DROP_REDIRECT_FULL);
      continue;
    }
    if (out.claimWake()) init.wakePorts[owner]!.postMessage(0);
  }
}

function drainFrom(sender: number): void {
  const inbox = handoffFrom[sender];
  if (!inbox) return;
  for (;;) {
    const n = inbox.drain(handoffRing);
    if (n === 0) return;
    engine.processBurst(handoffRing, n, now());
    // These are ours by the same function that sent them; never bounce one back.
    for (let i = 0; i < n; i++) {
      if (handoffRing.verdicts[i] === VERDICT_REDIRECT) {
        handoffRing.verdicts[i] = VERDICT_DROP;
        engine.countDrop(DROP_REDIRECT_FULL);
      }
    }
    queue.writeRing(handoffRing, n);
    flushEmitted();
  }
}

init.wakePorts.forEach((p, sender) => p?.on('message', () => drainFrom(sender)));

queue.start(ring, (count) => {
  engine.processBurst(ring, count, now());
  if (engine.lastBurstRedirects > 0) handOver(ring, count);
  flushEmitted();
});

const timer = setInterval(() => {
  engine.advanceTimers(now());
  flushEmitted();
}, TIMER_TICK_MS);

port.on('message', (m: ToForwarder) => {
  if (m.type === 'services') {
    engine.applyServices(m.services);
  } else if (m.type === 'stats') {
    port.postMessage({ type: 'stats', id: m.id, queue: queue.stats(), sessions: engine.sessionCount });
  } else if (m.type === 'stop') {
    clearInterval(timer);
    queue.close();
    for (const p of init.wakePorts) p?.close();
    port.close();
  }
});

port.postMessage({ type: 'ready', tableSab: engine.table.sab, capacity: engine.table.capacity });
