/**
 * Forwarder thread: one per TUN queue (and with io: xdp, its AF_XDP sockets). Wires
 * src/dataplane/forwarder.ts to the native queues on this thread's own event loop, to the
 * wake-up ports of the other forwarders and to the main thread's messages (new services on
 * reload, stats, stop).
 */

import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { BURST_MAX, GSO_BURST_MAX, GSO_SLOT_SIZE_BYTES, TIMER_TICK_MS, VNET_HDR_LEN } from '../src/constants.js';
import { Engine } from '../src/dataplane/engine.js';
import { ASK_PROGRESS_MS } from '../src/control/ask.js';
import { fullGc, heapBytes } from '../src/control/memory.js';
import { collectConns } from '../src/control/conns.js';
import { PacketRing } from '../src/dataplane/ring.js';
import { Forwarder } from '../src/dataplane/forwarder.js';
import { LinuxTunQueue, type TunQueue } from '../src/dataplane/tun_device.js';
import { XdpQueue } from '../src/dataplane/xdp_device.js';
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
    isnKey: init.isnKey,
    nowMs: now(),
    countersSab: init.countersSab,
    connCountsSab: init.connCountsSab,
    nodeConnCountsSabs: init.nodeConnCountsSabs,
    templatesSab: init.templatesSab,
    tunnelMtuSab: init.tunnelMtuSab,
    headroom,
    ...(init.ha ? { ha: init.ha } : {}),
  },
  init.services,
);
const ring = init.offload
  ? new PacketRing(GSO_BURST_MAX, GSO_SLOT_SIZE_BYTES, undefined, headroom)
  : new PacketRing(BURST_MAX);
const tunQueue = new LinuxTunQueue(init.fd);
// io: xdp — the AF_XDP queue is the main one (it also sends what the engine generates); the
// TUN queue stays an input for what the kernel routes there.
let xdpError: string | undefined;
function openXdp(): XdpQueue | undefined {
  if (!init.xdp || init.xdp.ports.length === 0) return undefined;
  try {
    return new XdpQueue(init.xdp.ports, init.fd, init.mtu, init.xdp.zeroCopy);
  } catch (e) {
    xdpError = (e as Error).message; // the runtime falls back to TUN for every forwarder
    return undefined;
  }
}
const xdp = openXdp();
const queues: TunQueue[] = xdp ? [xdp, tunQueue] : [tunQueue];
for (const q of queues) q.setLink(init.linkFd);
const forwarder = new Forwarder(
  engine,
  xdp ?? tunQueue,
  xdp?.ring ?? ring,
  { to: init.handoffTo, from: init.handoffFrom, wake: (owner) => init.wakePorts[owner]!.postMessage(0) },
  now,
);
init.wakePorts.forEach((p, sender) => p?.on('message', () => forwarder.drainFrom(sender)));
forwarder.start();
if (xdp) forwarder.addInput(tunQueue, ring);
const timer = setInterval(() => forwarder.tick(), TIMER_TICK_MS);

/** The asks this thread is on; while there are any, it says so every ASK_PROGRESS_MS (the
 * main thread's deadline is for silence: control/ask.ts). A timer that fires shows the
 * thread is alive: its jobs yield between slices. */
const working = new Set<number>();
let progress: NodeJS.Timeout | undefined;
function answer<T>(id: number, job: Promise<T>, reply: (r: T) => void): void {
  working.add(id);
  progress ??= setInterval(() => port.postMessage({ type: 'progress', ids: [...working] }), ASK_PROGRESS_MS);
  void job.then(reply).finally(() => {
    working.delete(id);
    if (working.size === 0) {
      clearInterval(progress);
      progress = undefined;
    }
  });
}

port.on('message', (m: ToForwarder) => {
  if (m.type === 'services') {
    engine.applyServices(m.services);
  } else if (m.type === 'peer-laddrs') {
    engine.setPeerLocalAddresses(m.laddrs);
  } else if (m.type === 'peer-workers') {
    engine.setPeerWorkers(m.counts);
  } else if (m.type === 'link') {
    for (const q of queues) q.setLink(m.fd);
  } else if (m.type === 'stats') {
    if (m.gc === true) fullGc();
    port.postMessage({
      type: 'stats',
      id: m.id,
      queue: forwarder.queueStats(),
      sessions: engine.sessionCount,
      heapBytes: heapBytes(),
    });
  } else if (m.type === 'sync-install') {
    void engine.queueInstall(m.events, m.count);
  } else if (m.type === 'sync-snapshot') {
    answer(m.id, engine.syncSnapshot(), ({ records, writeCount }) =>
      port.postMessage(
        { type: 'sync-snapshot', id: m.id, records, writeCount },
        records.map((r) => r.buffer as ArrayBuffer),
      ),
    );
  } else if (m.type === 'sync-mark') {
    answer(m.id, engine.markSynced(m.owner), (marked) => port.postMessage({ type: 'sync-marked', id: m.id, marked }));
  } else if (m.type === 'sync-sweep') {
    answer(m.id, engine.sweepSynced(m.owner), (removed) => port.postMessage({ type: 'sync-swept', id: m.id, removed }));
  } else if (m.type === 'sync-adopt') {
    answer(m.id, engine.adoptSynced(m.owner), (adopted) =>
      port.postMessage({ type: 'sync-adopted', id: m.id, adopted }),
    );
  } else if (m.type === 'sync-reconcile') {
    answer(m.id, engine.reconcileSynced(m.othersTo), (r) =>
      port.postMessage({ type: 'sync-reconciled', id: m.id, ...r }),
    );
  } else if (m.type === 'sync-publish-young') {
    answer(m.id, engine.publishYoungSynced(), (published) =>
      port.postMessage({ type: 'sync-published-young', id: m.id, published }),
    );
  } else if (m.type === 'reset-server') {
    answer(m.id, forwarder.resetServer(m.serverId), (ended) =>
      port.postMessage({ type: 'server-reset', id: m.id, ended }),
    );
  } else if (m.type === 'conns') {
    answer(m.id, collectConns(engine, m.filter, m.limit), (r) => port.postMessage({ type: 'conns', id: m.id, ...r }));
  } else if (m.type === 'stop') {
    clearInterval(timer);
    clearInterval(progress);
    forwarder.close();
    for (const p of init.wakePorts) p?.close();
    port.close();
  }
});

port.postMessage({
  type: 'ready',
  tableSab: engine.table.sab,
  capacity: engine.table.capacity,
  ...(xdpError !== undefined ? { xdpError } : {}),
});
