/** Engines of an HA pair without Redis: a node's engine, its promotion, its sync ring drained. */

import type { Engine } from '../../src/dataplane/engine.js';
import { HaControl } from '../../src/ha/role.js';
import { EVENT_WORDS, OP_UPSERT, SYNC_WORDS, SyncRing } from '../../src/ha/session_sync.js';
import { labServices, makeEngine } from './engine.js';

export const MASTER = true;
export const BACKUP = false;

/** An engine of HA node `nodeId` (A = 1, B = 2) that forwards and publishes when `master`. */
export function haEngine(
  master: boolean,
  syncAfterMs = 2000,
  nodeId = master ? 1 : 2,
  specs = labServices(),
): { engine: Engine; ring: SyncRing; control: HaControl } {
  const control = new HaControl();
  control.set(master, master);
  const ring = new SyncRing(1024);
  const engine = makeEngine(specs, {
    ha: { nodeId, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs, refreshSec: 30 },
    timeouts: { established: 60 },
  });
  return { engine, ring, control };
}

/** A pair's standby becomes master the way ha/node.ts does it: forwarding and publishing
 * on, and the sessions it installed are its own now. */
export async function promote(n: { engine: Engine; control: HaControl }): Promise<void> {
  n.control.set(true, true);
  await n.engine.adoptSynced(0);
}

/** The events waiting in `ring` (up to 1024). */
export function drain(ring: SyncRing): { events: Int32Array; n: number } {
  const events = new Int32Array(1024 * EVENT_WORDS);
  return { events, n: ring.drain(events, 1024) };
}

/** What a full resync of `engine` writes (its workers' snapshots), as the upsert events a node
 * loading it installs. */
export async function snapshotEvents(engine: Engine): Promise<{ events: Int32Array; n: number }> {
  const snap = await engine.syncSnapshot();
  const records = new Int32Array(snap.records.reduce((k, r) => k + r.length, 0));
  snap.records.reduce((at, r) => (records.set(r, at), at + r.length), 0);
  const n = records.length / SYNC_WORDS;
  const events = new Int32Array(n * EVENT_WORDS);
  for (let i = 0; i < n; i++) {
    events[i * EVENT_WORDS] = OP_UPSERT;
    events.set(records.subarray(i * SYNC_WORDS, (i + 1) * SYNC_WORDS), i * EVENT_WORDS + 1);
  }
  return { events, n };
}
