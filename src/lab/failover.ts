/**
 * `tunvs lab failover`: the pair at work. Brings the HA lab up (unless it is up), starts 200
 * long-lived byte-checked streams and an autocannon keep-alive load through the VIP, kills
 * tunvs on the master by PID, prints a timeline (master lost, next hops released, backup
 * promoted, traffic flowing) and the outcome, then restarts tunvs on lb-a and prints the
 * failback the same way. Everything is bounded in time; the lab stays up afterwards.
 *
 * `--planned`: a maintenance instead of a death. keepalived on the master is stopped in order
 * (its STOP notify has tunvs stand down, its priority-0 adverts give lb-b the next hops), with
 * 100 more streams opened 0.5 s before, younger than syncAfterMs: the master publishes them as
 * it stands down (docs/ha.md, "A planned switch"), so they go on too. The failback starts
 * keepalived on lb-a again (it preempts; lb-b stands down the same way).
 */

import { join } from 'node:path';
import { adminRequest } from '../control/admin.js';
import { packageRoot } from '../paths.js';
import { labDown, labUp } from './lab.js';
import { inNs, isAlive, listNamespaces, runInNs } from './netns.js';
import { haStatusOf, labPid, recordingStarter, restartTunvs, startKeepalived } from './pair.js';
import { nsName, readState, type LabState } from './state.js';
import { LAB } from './topology.js';
import { outcomeLines, runStreams, type StreamResult } from './streams.js';

const STREAMS = 200;
const STREAM_SECONDS = 22;
const LOAD_SECONDS = 18;
/** --planned: streams opened just before the switch (younger than syncAfterMs), and for how long. */
const YOUNG_STREAMS = 100;
const YOUNG_SECONDS = 15;
const YOUNG_AGE_MS = 500;

/** A Node program in the client namespace, in the background; resolves with its stdout. */
export async function background(prefix: string, args: string[]): Promise<string> {
  return (await runInNs(nsName(prefix, 'client'), [process.execPath, ...args])).out;
}

async function rxPackets(state: LabState, node: 'lb-a' | 'lb-b'): Promise<number> {
  try {
    const sock = node === 'lb-a' ? state.adminSocket : state.adminSocketB!;
    const r = (await adminRequest(sock, { cmd: 'stats' }, 500)) as { counters: Record<string, number> };
    return r.counters.tx_packets ?? 0;
  } catch {
    return -1;
  }
}

function holdsNextHops(state: LabState, node: 'lb-a' | 'lb-b'): boolean {
  try {
    return inNs(nsName(state.prefix, node), ['ip', '-4', 'addr', 'show', 'dev', 'eth0']).includes(LAB.float.up4);
  } catch {
    return false;
  }
}

/** autocannon (keep-alive, JSON report) from the client against the v4 VIP, in the background. */
export function autocannonInClient(prefix: string, connections: number, seconds: number): Promise<string> {
  return background(prefix, [
    join(packageRoot(), 'node_modules', 'autocannon', 'autocannon.js'),
    '-j',
    '-c',
    String(connections),
    '-d',
    String(seconds),
    `http://${LAB.vip4}/`,
  ]);
}

/** Watch the lab after `t0`, printing each milestone once, until all are seen or `ms` pass. */
export async function timeline(
  log: (l: string) => void,
  t0: number,
  ms: number,
  milestones: { what: string; check: () => boolean | Promise<boolean> }[],
): Promise<void> {
  const left = new Set(milestones);
  while (left.size > 0 && Date.now() - t0 < ms) {
    for (const m of [...left]) {
      if (await m.check()) {
        log(`  +${String(Date.now() - t0).padStart(5)} ms  ${m.what}`);
        left.delete(m);
      }
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const m of left) log(`  (not seen within ${ms} ms: ${m.what})`);
}

/** `count` byte-checked streams of `seconds` to the echo service (streams.ts), once they are
 * connected (or 10 s passed: the outcome then says how many did). */
async function startStreams(state: LabState, count: number, seconds: number): Promise<{ done: Promise<StreamResult> }> {
  const s = runStreams(state, count, seconds);
  await s.ready.catch(() => undefined);
  return s;
}

const intact = (s: StreamResult): boolean =>
  s.ok >= s.connections * 0.99 && s.reset === 0 && s.bytesLost === 0 && s.corruptedBytes === 0;

export async function labFailover(
  prefix: string,
  workers: number,
  log: (l: string) => void,
  planned = false,
): Promise<number> {
  let state = readState(prefix);
  if (state && !state.adminSocketB) {
    throw new Error(`the lab ${prefix} runs without the pair: tunvs lab down, then tunvs lab failover`);
  }
  if (!state) {
    if (listNamespaces().some((n) => n.startsWith(prefix))) await labDown(prefix, () => undefined);
    log('== Bringing up the pair: lb-a and lb-b with tunvs and keepalived, Redis, real servers');
    state = await labUp({ prefix, workers, ha: true, log });
  }
  const fresh = (): LabState => (state = readState(prefix)!);
  if ((await haStatusOf(fresh(), 'lb-a'))?.role !== 'master') {
    throw new Error('lb-a is not master (a failover is in progress or lb-a is down): tunvs lab down and try again');
  }

  log(`\n== ${STREAMS} long-lived streams (every byte checked) + autocannon -c 20 keep-alive through ${LAB.vip4}`);
  const streams = await startStreams(state, STREAMS, STREAM_SECONDS);
  const cannon = autocannonInClient(prefix, 20, LOAD_SECONDS);
  await new Promise((r) => setTimeout(r, 3500));
  const synced = await haStatusOf(fresh(), 'lb-b');
  log(`lb-b (standby) has applied ${synced?.applied ?? '?'} session events; sync lag ${synced?.syncLagMs ?? '?'} ms`);

  let young: { done: Promise<StreamResult> } | undefined;
  if (planned) {
    log(
      `\n== ${YOUNG_STREAMS} more streams, ${YOUNG_AGE_MS} ms before the switch (younger than syncAfterMs: not on lb-b yet)`,
    );
    young = await startStreams(state, YOUNG_STREAMS, YOUNG_SECONDS);
    await new Promise((r) => setTimeout(r, YOUNG_AGE_MS));
  }
  const pid = labPid(state, planned ? 'keepalived-lb-a' : 'tunvs-lb-a')!;
  log(
    planned
      ? `\n== kill -TERM ${pid} (keepalived on the master, lb-a: a maintenance, tunvs keeps running)`
      : `\n== kill -9 ${pid} (tunvs on the master, lb-a)`,
  );
  const t0 = Date.now();
  process.kill(pid, planned ? 'SIGTERM' : 'SIGKILL');
  let rxB = await rxPackets(state, 'lb-b');
  await timeline(log, t0, 10_000, [
    planned
      ? {
          what: 'lb-a stood down (keepalived: STOP; tunvs published its young sessions, then stood by)',
          check: async () => {
            const a = await haStatusOf(state!, 'lb-a');
            return a !== undefined && a.role !== 'master' && !a.publishing;
          },
        }
      : { what: 'tunvs on lb-a gone', check: () => !isAlive(pid) },
    {
      what: `lb-a released the next hops (keepalived: ${planned ? 'stopped' : 'FAULT'})`,
      check: () => !holdsNextHops(state!, 'lb-a'),
    },
    { what: 'lb-b holds the next hops (keepalived: MASTER)', check: () => holdsNextHops(state!, 'lb-b') },
    {
      what: 'lb-b promoted (tunvs role master)',
      check: async () => (await haStatusOf(state!, 'lb-b'))?.role === 'master',
    },
    {
      what: 'traffic flowing through lb-b',
      check: async () => {
        const now = await rxPackets(state!, 'lb-b');
        const flowing = rxB >= 0 && now - rxB > 500;
        rxB = now;
        return flowing;
      },
    },
  ]);

  const s = await streams.done;
  log('\n== Outcome');
  for (const line of outcomeLines(s, await cannon)) log(line);
  const y = young ? await young.done : undefined;
  if (y)
    log(
      `young streams (${YOUNG_AGE_MS} ms old at the switch): ${y.ok}/${y.connections} intact, ${y.reset} reset, ` +
        `${y.bytesLost} bytes lost, ${y.corruptedBytes} corrupted; stall per connection: median ${y.stallMsMedian} ms, max ${y.stallMsMax} ms`,
    );

  log(
    planned
      ? '\n== Failback: keepalived starts again on lb-a (it preempts: lb-b stands down the same way)'
      : '\n== Failback: tunvs starts again on lb-a (as standby: loads the sessions, then keepalived preempts)',
  );
  const t1 = Date.now();
  let first: { what: string; check: () => boolean };
  if (planned) {
    startKeepalived(fresh(), 'lb-a', recordingStarter(state));
    const k = labPid(fresh(), 'keepalived-lb-a')!;
    first = { what: `keepalived on lb-a running (pid ${k})`, check: () => isAlive(k) };
  } else {
    const back = await restartTunvs(prefix, 'lb-a');
    first = { what: `tunvs on lb-a running (pid ${back})`, check: () => isAlive(back) };
  }
  await timeline(log, t1, 20_000, [
    first,
    { what: 'lb-a loaded the sessions (ready)', check: async () => (await haStatusOf(state!, 'lb-a'))?.ready === true },
    { what: 'lb-a master again', check: async () => (await haStatusOf(state!, 'lb-a'))?.role === 'master' },
    { what: 'lb-b back to backup', check: async () => (await haStatusOf(state!, 'lb-b'))?.role === 'backup' },
  ]);
  log(
    `\nThe pair stays up: tunvs lab status, tunvs ha status --admin ${state.adminSocket}; remove it with: tunvs lab down`,
  );
  return intact(s) && (y === undefined || intact(y)) ? 0 : 1;
}
