/** `tunvs conns` in a forwarder: the sessions described a slice at a time, the thread's other
 * work (its packets) run between slices, the same rows as one scan. */

import { describe, expect, it } from 'vitest';
import { openSessions, services } from '../../bench/lib/sessions.js';
import { CONNS_SLICE_SESSIONS } from '../../src/constants.js';
import { collectConns, connFilterError, matchesConn } from '../../src/control/conns.js';
import { Engine } from '../../src/dataplane/engine.js';

describe('tunvs conns in a forwarder', () => {
  const n = 3 * CONNS_SLICE_SESSIONS + 100;
  const engine = new Engine({ capacity: n + 1024, workers: 1, nowMs: 0 }, services());
  openSessions(engine, n, 0);

  it('lists what one scan lists, yielding to the thread between slices', async () => {
    const server = engine.describe([...engine.sessionIds()][0]!).rip;
    const filter = { server, protocol: 'TCP' };
    const direct = [...engine.sessionIds()].map((r) => engine.describe(r)).filter((s) => matchesConn(s, filter));
    expect(direct.length).toBeGreaterThan(CONNS_SLICE_SESSIONS / 2);
    let turns = 0;
    const tick = (): void => {
      turns++;
      if (!done) setImmediate(tick);
    };
    let done = false;
    setImmediate(tick);
    const got = await collectConns(engine, filter, 100_000);
    done = true;
    expect(got).toEqual({ sessions: direct, more: false });
    expect(turns).toBeGreaterThanOrEqual(3); // a slice of CONNS_SLICE_SESSIONS, then the thread's turn
  });

  it('stops at the limit and says there are more', async () => {
    const got = await collectConns(engine, {}, 10);
    expect(got.sessions.length).toBe(10);
    expect(got.more).toBe(true);
    expect((await collectConns(engine, { protocol: 'udp' }, 10)).sessions).toEqual([]);
  });

  it('a filter naming a protocol or a state no session has is refused, saying what there is', () => {
    expect(connFilterError({ protocol: 'UDP', state: 'time_wait' })).toBeUndefined();
    expect(connFilterError({ state: 'template' })).toBeUndefined();
    expect(connFilterError({ protocol: 'sctp' })).toBe('protocol must be tcp or udp, not sctp');
    expect(connFilterError({ state: 'ESTABLISED' })).toMatch(
      /^state must be one of ESTABLISHED, SYN_SENT, .*UDP, TEMPLATE/,
    );
  });
});
