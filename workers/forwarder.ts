/**
 * Forwarder thread: one per TUN queue. Wires the pieces of src/ together and runs them on
 * this thread's own event loop: the native queue fills the ring and calls back once per
 * burst; the engine rewrites the burst in place; the queue writes it back. A timer moves
 * the session table's wheel when traffic is idle. Messages from the main thread: new
 * services (reload) and stop.
 */

import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { BURST_MAX, TIMER_TICK_MS } from '../src/constants.js';
import { Engine } from '../src/dataplane/engine.js';
import { PacketRing } from '../src/dataplane/ring.js';
import { LinuxTunQueue } from '../src/dataplane/tun_device.js';
import type { ForwarderInit, ToForwarder } from '../src/control/forwarder_protocol.js';

const init = workerData as ForwarderInit;
const port = parentPort!;
const now = (): number => performance.timeOrigin + performance.now();

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
  },
  init.services,
);
const ring = new PacketRing(BURST_MAX);
const queue = new LinuxTunQueue(init.fd);

function flushEmitted(): void {
  if (engine.emitCount > 0) {
    queue.writeRing(engine.emit, engine.emitCount);
    engine.clearEmitted();
  }
}

queue.start(ring, (count) => {
  engine.processBurst(ring, count, now());
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
    port.close();
  }
});

port.postMessage({ type: 'ready', tableSab: engine.table.sab, capacity: engine.table.capacity });
