/**
 * An HaWorkerLink to an Engine in the same thread: what the forwarder threads do over
 * messages (workers/forwarder.ts), done by direct calls, so tests and the sync benchmark run
 * real HaNodes against real engines without threads or a TUN device.
 */

import type { Engine } from '../dataplane/engine.js';
import type { HaWorkerLink } from './session_sync.js';

export function engineLink(e: Engine): HaWorkerLink {
  const sync = e.sync;
  if (!sync) throw new Error('engineLink: the engine runs without ha options');
  return {
    ring: sync.ring,
    install: (events, count) => void e.queueInstall(events, count),
    snapshot: () => e.syncSnapshot(),
    markStale: async (owner) => void (await e.markSynced(owner)),
    sweepStale: async (owner) => void (await e.sweepSynced(owner)),
    adopt: async (owner) => void (await e.adoptSynced(owner)),
    reconcile: (othersTo) => e.reconcileSynced(othersTo),
    publishYoung: () => e.publishYoungSynced(),
    peerLocalAddresses: (addrs) => e.setPeerLocalAddresses(addrs),
    peerWorkers: (counts) => e.setPeerWorkers(counts),
  };
}
