/** A full resync's snapshot, taken a slice at a time with the forwarder's packets served
 * between: sessions made behind the scan come with the events after its ring position, and
 * what the snapshot and those events carry together is every session published at its end. */

import { describe, expect, it } from 'vitest';
import { openSessions, services } from '../../bench/lib/sessions.js';
import { SNAPSHOT_SLICE_RECORDS } from '../../src/constants.js';
import { Engine } from '../../src/dataplane/engine.js';
import { HaControl } from '../../src/ha/role.js';
import { EVENT_WORDS, SYNC_WORDS, SyncRing } from '../../src/ha/session_sync.js';

describe('a full resync snapshot in slices', () => {
  it('yields between slices; with the events from its ring position it carries every published session', async () => {
    const n = 2 * SNAPSHOT_SLICE_RECORDS + 500;
    const control = new HaControl();
    control.set(true, true);
    const ring = new SyncRing(4 * n);
    const engine = new Engine(
      {
        capacity: 4 * n,
        workers: 1,
        nowMs: 0,
        ha: { nodeId: 2, controlSab: control.sab, syncRingSab: ring.sab, syncAfterMs: 0, refreshSec: 3600 },
      },
      services(),
    );
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
    const inSnapshot = snap.records.reduce((k, r) => k + r.length / SYNC_WORDS, 0);
    expect(snap.records.length).toBeGreaterThanOrEqual(3); // one chunk per slice (+ templates)
    expect(ring.writeCount - snap.writeCount).toBe(300); // the new sessions' upserts follow it
    expect(inSnapshot).toBeGreaterThanOrEqual(n);
    expect(inSnapshot).toBeLessThanOrEqual(n + 300);
    // Unchanged, a second snapshot has them all.
    const again = await engine.syncSnapshot();
    expect(again.records.reduce((k, r) => k + r.length / SYNC_WORDS, 0)).toBe(n + 300);
  });
});
