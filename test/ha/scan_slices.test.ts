/** The HA scans of a forwarder's whole table, a slice at a time with its packets served
 * between them, one scan after the other:
 *   snapshot        sessions made behind the scan come with the events after its ring
 *                   position; the snapshot and those events carry every session published;
 *   adopt, then a   the snapshot, asked for while the adopt runs, waits for it and carries
 *   snapshot        every adopted session;
 *   mark, sweep     a reload that brings nothing again removes every copy, in slices. */

import { describe, expect, it } from 'vitest';
import { openSessions, services } from '../../bench/lib/sessions.js';
import { SNAPSHOT_SLICE_RECORDS, SYNC_SCAN_SLICE_RECORDS } from '../../src/constants.js';
import { Engine } from '../../src/dataplane/engine.js';
import { HaControl } from '../../src/ha/role.js';
import { EVENT_WORDS, OP_UPSERT, SYNC_WORDS, SyncRing } from '../../src/ha/session_sync.js';

/** A cluster node's engine (node `id`), its sync ring room for `capacity` events. */
function node(id: number, capacity: number): { engine: Engine; ring: SyncRing } {
  const control = new HaControl();
  control.set(true, true);
  const ring = new SyncRing(capacity);
  const engine = new Engine(
    {
      capacity,
      workers: 1,
      nowMs: 0,
      ha: { nodeId: id, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 3600 },
    },
    services(),
  );
  return { engine, ring };
}

/** Whether `p` has settled by the next turn of the event loop. */
async function settledByNextTurn(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  void p.then(() => (settled = true));
  await new Promise((resolve) => setImmediate(resolve));
  return settled;
}

/** Node 1's `n` sessions as batches of install events (from its snapshot), and node 2. */
async function peerBatches(n: number): Promise<{ b: { engine: Engine; ring: SyncRing }; batches: Int32Array[] }> {
  const a = node(1, n + 1024);
  openSessions(a.engine, n, 0);
  for (let t = 100; t <= 500; t += 100) a.engine.advanceTimers(t);
  const b = node(2, n + 1024);
  b.engine.advanceTimers(500);
  const batches = (await a.engine.syncSnapshot()).records.map((r) => {
    const k = r.length / SYNC_WORDS;
    const events = new Int32Array(k * EVENT_WORDS);
    for (let i = 0; i < k; i++) {
      events[i * EVENT_WORDS] = OP_UPSERT;
      events.set(r.subarray(i * SYNC_WORDS, (i + 1) * SYNC_WORDS), i * EVENT_WORDS + 1);
    }
    return events;
  });
  return { b, batches: batches.filter((e) => e.length > 0) };
}

/** Node 2 holding `n` sessions of node 1 as copies (installed from node 1's snapshot). */
async function peerCopies(n: number): Promise<{ engine: Engine; ring: SyncRing }> {
  const { b, batches } = await peerBatches(n);
  for (const events of batches) b.engine.installSynced(events, events.length / EVENT_WORDS);
  return b;
}

const count = (records: Int32Array[]): number => records.reduce((k, r) => k + r.length / SYNC_WORDS, 0);

describe('a full resync snapshot in slices', () => {
  it('yields between slices; with the events from its ring position it carries every published session', async () => {
    const n = 2 * SNAPSHOT_SLICE_RECORDS + 500;
    const { engine, ring } = node(2, 4 * n);
    let now = 0;
    const publish = (): void => {
      for (let i = 0; i < 5; i++) engine.advanceTimers((now += 100));
    };
    openSessions(engine, n, now);
    publish();
    const drained = new Int32Array(4 * n * EVENT_WORDS);
    expect(ring.drain(drained, 4 * n)).toBe(n); // each published once
    // After the first slice, 300 more sessions are made and published (behind or in front of
    // the scan, wherever the table puts them).
    let done = false;
    let doneBeforeOurTurn = true;
    const taking = engine.syncSnapshot().then((s) => ((done = true), s));
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        doneBeforeOurTurn = done;
        openSessions(engine, 300, now, n);
        publish();
        resolve();
      }),
    );
    const snap = await taking;
    expect(doneBeforeOurTurn).toBe(false); // the thread had its turn in the middle of it
    const inSnapshot = count(snap.records);
    expect(snap.records.length).toBeGreaterThanOrEqual(3); // one chunk per slice (+ templates)
    expect(ring.writeCount - snap.writeCount).toBe(300); // the new sessions' upserts follow it
    expect(inSnapshot).toBeGreaterThanOrEqual(n);
    expect(inSnapshot).toBeLessThanOrEqual(n + 300);
    // Unchanged, a second snapshot has them all.
    const again = await engine.syncSnapshot();
    expect(count(again.records)).toBe(n + 300);
  });

  it("a dead peer's copies adopted in slices; a snapshot asked for meanwhile follows the adopt; a reload's mark and sweep", async () => {
    const n = 3 * SYNC_SCAN_SLICE_RECORDS + 100;
    const b = await peerCopies(n);
    expect(b.engine.sessionCount).toBe(n);
    expect(count((await b.engine.syncSnapshot()).records)).toBe(0); // copies: not its to publish
    // The reload of a peer that lost them all: marked, then swept, each in slices.
    const marking = b.engine.markSynced(1);
    expect(await settledByNextTurn(marking)).toBe(false);
    expect(await marking).toBe(n);
    // Node 1 is gone: adopted. The resync's snapshot, asked for at once, waits for the adopt.
    const adopting = b.engine.adoptSynced(1);
    const snapshot = b.engine.syncSnapshot();
    expect(await settledByNextTurn(adopting)).toBe(false);
    expect(await adopting).toBe(n);
    expect(count((await snapshot).records)).toBe(n);
    // Adopted, they are its own: a sweep of node 1's copies finds none.
    expect(await b.engine.sweepSynced(1)).toBe(0);
    expect(b.engine.sessionCount).toBe(n);
  });

  it('a sweep after a reload that brought nothing again removes every copy, a slice at a time', async () => {
    const n = 2 * SYNC_SCAN_SLICE_RECORDS + 100;
    const b = await peerCopies(n);
    await b.engine.markSynced(1);
    const sweeping = b.engine.sweepSynced(1);
    expect(await settledByNextTurn(sweeping)).toBe(false);
    expect(await sweeping).toBe(n);
    expect(b.engine.sessionCount).toBe(0);
  });

  it('queued installs go between a mark and a sweep, each after a turn of the thread', async () => {
    const n = 3 * SNAPSHOT_SLICE_RECORDS;
    const { b, batches } = await peerBatches(n);
    for (const events of batches) b.engine.installSynced(events, events.length / EVENT_WORDS);
    // A reload that brings back all but the last batch: mark, queue the installs, sweep.
    const marking = b.engine.markSynced(1);
    const installs = batches.slice(0, -1).map((events) => b.engine.queueInstall(events, events.length / EVENT_WORDS));
    const sweeping = b.engine.sweepSynced(1);
    expect(await marking).toBe(n);
    expect(await settledByNextTurn(installs[0]!)).toBe(false); // the first waits for the next turn
    const done = await Promise.all(installs);
    expect(done.reduce((k, r) => k + r.updated, 0)).toBe(n - batches.at(-1)!.length / EVENT_WORDS);
    expect(await sweeping).toBe(batches.at(-1)!.length / EVENT_WORDS);
    expect(b.engine.sessionCount).toBe(n - batches.at(-1)!.length / EVENT_WORDS);
  });
});
