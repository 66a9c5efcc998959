/**
 * Engine micro benchmark: in-process, no syscalls. Prints a table and writes JSON to
 * bench/results/. Not a timed test: it reports figures, targets and ratios.
 *
 *   established  Mpps per worker for established TCP packets, half client → RS and half
 *                RS → client, each packet aimed at a random live session (so a 1M-session
 *                table really misses cache), with 1k, 100k and 1M live sessions;
 *   new          new sessions per second per worker: SYN, SYN-ACK and the ACK with TOA.
 *   timestamps   established Mpps with timestamp translation (the default) against the same
 *                table without it (translateTimestamps: false), at the smallest and largest size;
 *                the ratio is the median of many short alternating slices (ABBA), which a
 *                shared machine's drift cannot tilt the way it tilts two long runs.
 *   synproxy     cookie SYN-ACKs per second per worker (a SYN flood, each SYN a new client),
 *                and client ACKs validated per second (each makes a session and a SYN).
 *   modes        client → VIP packets only (the direction every forwarding mode has), 100k
 *                sessions, in FULLNAT, NAT, TUNNEL and DR: Mpps each and the ratio to FULLNAT.
 *   fragments    UDP datagrams per second reassembled from their fragments, rewritten and cut
 *                again (a 3,000-byte query in three fragments, as an MTU-1500 IPv4 sender
 *                cuts it, from each of FRAG_CLIENTS clients in turn).
 *
 * Only Engine.processBurst is timed; refilling the ring between bursts is not. Each figure
 * is measured ROUNDS times; the median and the spread (min–max) are reported.
 *
 *   baseline     with BENCH_BASELINE=<git revision>: that build's engine beside this one in
 *                the same process (bench/lib/baseline.ts), established Mpps at the smallest
 *                and largest size, new sessions/s, and (when the baseline has them) cookie
 *                SYN-ACKs/s and fragmented datagrams/s as this build / baseline, from
 *                alternating slices: whether a change made the engine slower, which two
 *                separate runs cannot say on a shared machine.
 *
 * Environment: BENCH_ROUNDS, BENCH_SIZES (e.g. 1000,1000000), BENCH_NEW (connections for
 * the new-session figure), BENCH_PACKETS (established packets per measurement),
 * BENCH_BASELINE (a git revision, b97fe5b or later). An
 * instruction count of the whole process under callgrind does not compare two builds here:
 * V8's background compiler and GC vary by more than the engine's work (docs/benchmarks.md).
 */

import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_DROP, VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { abba, loadBaseline, type Baseline } from '../lib/baseline.js';
import {
  BURST,
  clientOf,
  established,
  modeServices,
  openSessions,
  type Opened,
  rng,
  services,
  udpFragments,
  VIP,
  writeTcp,
} from '../lib/sessions.js';
import { formatSpread, spread, type Spread } from '../lib/spread.js';
import { writeResults } from '../lib/results.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SIZES = (process.env.BENCH_SIZES ?? '1000,100000,1000000').split(',').map(Number);
const NEW_CONNECTIONS = Number(process.env.BENCH_NEW ?? 200_000);
/** A/B ratios (timestamp translation, baseline build): pairs of slices per size and round,
 * packets per slice, new connections per slice. */
const AB_PAIRS = 10;
const AB_SLICE = 100_000;
const AB_NEW_SLICE = 20_000;
const BASELINE = process.env.BENCH_BASELINE;
/** Established packets per measurement (default: 2M or twice the sessions). */
const PACKETS = process.env.BENCH_PACKETS === undefined ? undefined : Number(process.env.BENCH_PACKETS);
/** A SYN flood at a synProxy: on service, `n` new clients from `first`: cookie SYN-ACKs/s;
 * then each client's ACK with its cookie: validated ACKs/s. */
function synProxy(
  n: number,
  first: number,
  E: typeof Engine = Engine,
  svc: typeof services = services,
): { synAcks: number; acks: number } {
  const engine = new E({ capacity: n + BURST, workers: 1, nowMs: 0 }, svc(0, { synProxy: 'on' }));
  const ring = new PacketRing(BURST);
  const dv = ring.view;
  const slot = ring.slotSize;
  const cookies = new Uint32Array(n);
  let synSpent = 0;
  let ackSpent = 0;
  for (let start = 0; start < n; start += BURST) {
    const count = Math.min(BURST, n - start);
    for (let k = 0; k < count; k++) {
      const [c, p] = clientOf(first + start + k);
      ring.lens[k] = writeTcp(dv, k * slot, c, VIP, p, 80, 1000, 0, 0x02, false);
    }
    const t0 = performance.now();
    engine.processBurst(ring, count, 1);
    synSpent += performance.now() - t0;
    for (let k = 0; k < count; k++) {
      if (ring.verdicts[k] !== VERDICT_FORWARD || dv.getUint8(k * slot + 33) !== 0x12)
        throw new Error('SYN not answered with a SYN-ACK (a build without the SYN proxy?)');
      cookies[start + k] = dv.getUint32(k * slot + 24);
    }
  }
  for (let start = 0; start < n; start += BURST) {
    const count = Math.min(BURST, n - start);
    for (let k = 0; k < count; k++) {
      const [c, p] = clientOf(first + start + k);
      ring.lens[k] = writeTcp(dv, k * slot, c, VIP, p, 80, 1001, cookies[start + k]! + 1, 0x10, false);
    }
    const t0 = performance.now();
    engine.processBurst(ring, count, 2);
    ackSpent += performance.now() - t0;
    if (ring.verdicts[0] !== VERDICT_FORWARD) throw new Error(`ACK not validated: reason ${ring.aux[0]}`);
  }
  return { synAcks: n / (synSpent / 1000), acks: n / (ackSpent / 1000) };
}

const FRAG_CLIENTS = 4096;
const FRAG_PAYLOAD = 3000;
/** Fragmented datagrams per measurement (and per A/B slice). */
const FRAG_DATAGRAMS = 200_000;
const FRAG_SLICE = 20_000;

/** Each client's query to the VIP's UDP port 80 as its three fragments. */
function clientFragments(): Uint8Array[][] {
  return Array.from({ length: FRAG_CLIENTS }, (_, i) => {
    const [c, p] = clientOf(i);
    return udpFragments(c, VIP, p, 80, i, FRAG_PAYLOAD, 1448);
  });
}

/** `n` fragmented datagrams through an engine of a build (its Engine, its service) with a
 * session per client already: datagrams/s. Throws when the build drops fragments. */
function fragmentsPerSec(E: typeof Engine, svc: typeof services, frags: Uint8Array[][], n: number): () => number {
  const engine = new E({ capacity: FRAG_CLIENTS + BURST, workers: 1, nowMs: 0 }, svc(0, { protocol: 'udp' }));
  const ring = new PacketRing(BURST);
  const perBurst = Math.floor(BURST / frags[0]!.length);
  let next = 0;
  const run = (count: number): number => {
    let spent = 0;
    for (let done = 0; done < count; done += perBurst) {
      let k = 0;
      for (let d = 0; d < perBurst; d++, next = (next + 1) % frags.length)
        for (const f of frags[next]!) ring.put(k++, f);
      const t0 = performance.now();
      engine.processBurst(ring, k, 1);
      spent += performance.now() - t0;
      if (engine.emitCount === 0) throw new Error(`fragments not reassembled: reason ${ring.aux[k - 1]}`);
      engine.clearEmitted();
    }
    return count / (spent / 1000);
  };
  run(frags.length); // a session per client, and the JIT warm
  return () => run(n);
}

/** Whether the baseline build has the SYN proxy (d815cf1 or later): its SYN-ACKs join the ratios. */
function answersSyns(base: Baseline): boolean {
  try {
    synProxy(BURST, 0, base.Engine, base.services);
    return true;
  } catch {
    return false;
  }
}

interface Stat extends Spread {
  runs: number[];
}

const MODES = ['fullnat', 'nat', 'tunnel', 'dr'] as const;
const MODE_SESSIONS = 100_000;

/** A mode's engine with MODE_SESSIONS sessions (made by the clients' SYNs). */
function modeSetup(mode: (typeof MODES)[number]): Engine {
  const engine = new Engine({ capacity: MODE_SESSIONS + BURST, workers: 1, nowMs: 0 }, modeServices(mode));
  const ring = new PacketRing(BURST);
  for (let start = 0; start < MODE_SESSIONS; start += BURST) {
    const count = Math.min(BURST, MODE_SESSIONS - start);
    for (let k = 0; k < count; k++) {
      const [c, p] = clientOf(start + k);
      ring.lens[k] = writeTcp(ring.view, k * ring.slotSize, c, VIP, p, 80, 1000, 0, 0x02, false);
    }
    engine.processBurst(ring, count, 0);
  }
  return engine;
}

/** Client → VIP ACKs at random sessions of `engine`: Mpps. */
function clientMpps(engine: Engine, packets: number): number {
  const ring = new PacketRing(BURST);
  const next = rng(7);
  let spent = 0;
  for (let done = 0; done < packets; done += BURST) {
    for (let k = 0; k < BURST; k++) {
      const [c, p] = clientOf(next() % MODE_SESSIONS);
      ring.lens[k] = writeTcp(ring.view, k * ring.slotSize, c, VIP, p, 80, 1001, 1, 0x10, false);
    }
    const t0 = performance.now();
    engine.processBurst(ring, BURST, 1);
    spent += performance.now() - t0;
    if (ring.verdicts[0] === VERDICT_DROP) throw new Error(`dropped: reason ${ring.aux[0]}`);
  }
  return packets / (spent / 1000) / 1e6;
}

function stat(runs: number[]): Stat {
  return { ...spread(runs), runs };
}

function fmt(s: Stat, digits = 2): string {
  return formatSpread(s, digits);
}

/** The baseline build's engine at each of `sizes`, its sessions open and its JIT warm. */
function baselineSetups(base: Baseline, sizes: number[]) {
  return sizes.map((size) => {
    const engine = new base.Engine({ capacity: Math.max(size + BURST, 4096), workers: 1, nowMs: 0 }, base.services(0));
    const { o } = openSessions(engine, size, 0);
    established(engine, o, size, 500_000, 1);
    return { size, engine, o };
  });
}

/** New sessions per second in a fresh engine of a build (its Engine, its service): AB_NEW_SLICE of them. */
function newSlice(E: typeof Engine, svc: typeof services): () => number {
  return () => {
    const engine = new E({ capacity: AB_NEW_SLICE + BURST, workers: 1, nowMs: 0 }, svc(0));
    return AB_NEW_SLICE / openSessions(engine, AB_NEW_SLICE, 0).seconds;
  };
}

async function main(): Promise<void> {
  const base = BASELINE === undefined ? undefined : await loadBaseline(BASELINE);
  const results: Record<string, Stat> = {};
  // All sizes are set up first and measured back to back in every round, so a noisy
  // neighbour hits every size alike and the growth ratio is taken within one round.
  const setup = (size: number, translate: boolean) => {
    const engine = new Engine(
      { capacity: Math.max(size + BURST, 4096), workers: 1, nowMs: 0 },
      services(0, { translateTimestamps: translate }),
    );
    const { o } = openSessions(engine, size, 0);
    established(engine, o, size, Math.min(500_000, PACKETS ?? 500_000), 1); // warm-up: let the JIT settle
    return { size, engine, o, runs: [] as number[] };
  };
  const setups = SIZES.map((size) => setup(size, true));
  // The same tables without timestamp translation, at the smallest and the largest size.
  const plain = [...new Set([SIZES[0]!, SIZES[SIZES.length - 1]!])].map((size) => setup(size, false));
  const tsRatio: Record<number, number[]> = {};
  const synAckRuns: number[] = [];
  const ackRuns: number[] = [];
  const growthRuns: number[] = [];
  const newRuns: number[] = [];
  const modeEngines = MODES.map((m) => modeSetup(m));
  for (const e of modeEngines) clientMpps(e, 500_000); // warm-up
  const modeRuns: number[][] = MODES.map(() => []);
  const baseSizes = [...new Set([SIZES[0]!, SIZES[SIZES.length - 1]!])];
  const baseEngines = base ? baselineSetups(base, baseSizes) : [];
  const baseRatio: Record<string, number[]> = {};
  const baseHasProxy = base !== undefined && answersSyns(base);
  const frags = clientFragments();
  const fragRuns: number[] = [];
  const fragMine = fragmentsPerSec(Engine, services, frags, FRAG_DATAGRAMS);
  const fragSlices = [fragmentsPerSec(Engine, services, frags, FRAG_SLICE)];
  if (base) {
    // A baseline from before d73d9eb drops fragments: no ratio then.
    try {
      fragSlices.push(fragmentsPerSec(base.Engine, base.services, frags, FRAG_SLICE));
    } catch {
      // no reassembly in the baseline
    }
  }
  for (let r = 0; r < ROUNDS; r++) {
    modeEngines.forEach((e, i) => modeRuns[i]!.push(clientMpps(e, PACKETS ?? 2_000_000)));
    for (const s of setups)
      s.runs.push(established(s.engine, s.o, s.size, PACKETS ?? Math.max(2_000_000, s.size * 2), 1));
    for (const p of plain) {
      p.runs.push(established(p.engine, p.o, p.size, PACKETS ?? Math.max(2_000_000, p.size * 2), 1));
      // The ratio from short alternating slices (ABBA order), not from the long runs above:
      // each pair runs within ~0.2 s, so the machine's drift (other tenants) hits both alike.
      const withTs = setups.find((x) => x.size === p.size)!;
      const slice = (e: { engine: Engine; o: Opened }) => () => established(e.engine, e.o, p.size, AB_SLICE, 1);
      (tsRatio[p.size] ??= []).push(...abba(AB_PAIRS, slice(p), slice(withTs)));
    }
    if (base) {
      for (const be of baseEngines) {
        const mine = setups.find((x) => x.size === be.size)!;
        (baseRatio[`established_mpps_${be.size}`] ??= []).push(
          ...abba(
            AB_PAIRS,
            () => established(be.engine, be.o, be.size, AB_SLICE, 1),
            () => established(mine.engine, mine.o, be.size, AB_SLICE, 1),
          ),
        );
      }
      (baseRatio.new_sessions_per_s ??= []).push(
        ...abba(AB_PAIRS, newSlice(base.Engine, base.services), newSlice(Engine, services)),
      );
      if (baseHasProxy)
        (baseRatio.synproxy_synacks_per_s ??= []).push(
          ...abba(
            AB_PAIRS,
            () => synProxy(AB_NEW_SLICE, 0, base.Engine, base.services).synAcks,
            () => synProxy(AB_NEW_SLICE, 0).synAcks,
          ),
        );
    }
    fragRuns.push(fragMine());
    if (fragSlices.length > 1)
      (baseRatio.fragmented_datagrams_per_s ??= []).push(...abba(AB_PAIRS, fragSlices[1]!, fragSlices[0]!));
    const a = setups[0]!;
    const b = setups[setups.length - 1]!;
    growthRuns.push(a.runs[r]! / b.runs[r]!);
    synProxy(20_000, 0); // warm-up
    const sp = synProxy(NEW_CONNECTIONS, 20_000);
    synAckRuns.push(sp.synAcks);
    ackRuns.push(sp.acks);
    const engine = new Engine({ capacity: NEW_CONNECTIONS + BURST, workers: 1, nowMs: 0 }, services());
    openSessions(engine, 20_000, 0); // warm-up
    const { seconds } = openSessions(engine, NEW_CONNECTIONS - 20_000, 0, 20_000);
    newRuns.push((NEW_CONNECTIONS - 20_000) / seconds);
    console.log(
      `round ${r + 1}: ${setups.map((s) => `${s.size}: ${s.runs[r]!.toFixed(2)} Mpps`).join(', ')}, new ${(newRuns[r]! / 1000).toFixed(0)}k/s, ` +
        `without ts translation ${plain.map((p) => `${p.size}: ${p.runs[r]!.toFixed(2)} Mpps`).join(', ')}, ` +
        `cookie SYN-ACKs ${(synAckRuns[r]! / 1e6).toFixed(2)}M/s, cookie ACKs ${(ackRuns[r]! / 1000).toFixed(0)}k/s, ` +
        `fragmented datagrams ${(fragRuns[r]! / 1000).toFixed(0)}k/s`,
    );
  }
  const perSize = setups.map((s) => {
    const st = stat(s.runs);
    results[`established_mpps_${s.size}`] = st;
    return { size: s.size, mpps: st, nsPerPacket: 1000 / st.median };
  });
  const ns = stat(newRuns);
  results.new_sessions_per_s = ns;
  for (const p of plain) {
    results[`established_mpps_${p.size}_no_ts_translation`] = stat(p.runs);
    results[`ts_translation_ratio_${p.size}`] = stat(tsRatio[p.size]!);
  }
  const modeRatio = (i: number): Stat => stat(modeRuns[i]!.map((v, r) => v / modeRuns[0]![r]!));
  MODES.forEach((m, i) => {
    results[`client_mpps_${m}_${MODE_SESSIONS}`] = stat(modeRuns[i]!);
    if (i > 0) results[`client_mpps_${m}_to_fullnat`] = modeRatio(i);
  });
  results.synproxy_synacks_per_s = stat(synAckRuns);
  results.synproxy_acks_per_s = stat(ackRuns);
  results.fragmented_datagrams_per_s = stat(fragRuns);
  const growthStat = stat(growthRuns);
  results.lookup_growth = growthStat;
  const growth = growthStat.median;
  const get = (k: string): number => results[k]?.median ?? NaN;
  const targets = [
    ['established Mpps/worker, 1k sessions', get('established_mpps_1000'), '>= 5', get('established_mpps_1000') >= 5],
    [
      'established Mpps/worker, 1M sessions',
      get('established_mpps_1000000'),
      '>= 2.5',
      get('established_mpps_1000000') >= 2.5,
    ],
    ['new sessions/s/worker', ns.median, '>= 300000', ns.median >= 300_000],
    ...plain.map(
      (p) =>
        [
          `Mpps with / without timestamp translation, ${p.size} sessions`,
          get(`ts_translation_ratio_${p.size}`),
          '> 0.95',
          get(`ts_translation_ratio_${p.size}`) > 0.95,
        ] as const,
    ),
    ['cookie SYN-ACKs/s/worker', get('synproxy_synacks_per_s'), '>= 1000000', get('synproxy_synacks_per_s') >= 1e6],
    [`lookup cost growth ${SIZES[0]} → ${SIZES[SIZES.length - 1]} (ns/packet ratio)`, growth, '< 2', growth < 2],
  ] as const;

  console.log('\ntunvs engine micro benchmark (one worker, in-process, no syscalls)');
  console.log(`node ${process.version}, ${cpus()[0]?.model ?? 'cpu'}, ${ROUNDS} rounds, median (min–max)`);
  const big = setups[setups.length - 1]!.engine.table;
  console.log(
    `session table: ${big.bytesPerSession.toFixed(0)} B per session at capacity ${big.capacity} (records + both index entries)\n`,
  );
  console.log('| figure | value | target | met |');
  console.log('|---|---|---|---|');
  for (const s of perSize)
    console.log(
      `| established Mpps, ${s.size} sessions | ${fmt(s.mpps)} (${s.nsPerPacket.toFixed(0)} ns/packet) | | |`,
    );
  console.log(`| lookup growth ${SIZES[0]} → ${SIZES[SIZES.length - 1]}, per round | ${fmt(growthStat)} | | |`);
  console.log(`| new sessions/s (SYN, SYN-ACK, ACK+TOA) | ${fmt(ns, 0)} | | |`);
  for (const p of plain)
    console.log(`| established Mpps, ${p.size} sessions, no timestamp translation | ${fmt(stat(p.runs))} | | |`);
  MODES.forEach((m, i) =>
    console.log(
      `| client → VIP Mpps, ${m}, ${MODE_SESSIONS} sessions | ${fmt(stat(modeRuns[i]!))}${i > 0 ? ` (${fmt(modeRatio(i))} × FULLNAT)` : ''} | | |`,
    ),
  );
  console.log(`| SYN proxy: cookie SYN-ACKs/s | ${fmt(stat(synAckRuns), 0)} | | |`);
  console.log(`| SYN proxy: cookie ACKs validated/s (session + SYN) | ${fmt(stat(ackRuns), 0)} | | |`);
  console.log(
    `| UDP datagrams/s from 3 fragments each (reassembled, rewritten, cut again) | ${fmt(stat(fragRuns), 0)} | | |`,
  );
  for (const [name, value, target, met] of targets) {
    console.log(
      `| ${name} | ${Number.isFinite(value) ? value.toFixed(2) : 'n/a'} | ${target} | ${met ? 'yes' : 'NO'} |`,
    );
  }
  if (base) {
    console.log(`\nthis build / ${base.rev} (${base.commit}): alternating slices in one process, median (min–max)\n`);
    console.log('| figure | this / baseline |');
    console.log('|---|---|');
    for (const [key, ratios] of Object.entries(baseRatio)) {
      results[`vs_baseline_${key}`] = stat(ratios);
      console.log(`| ${key.replace(/_/g, ' ')} | ${fmt(stat(ratios), 3)} |`);
    }
  }
  writeResults('micro', {
    bench: 'micro/engine',
    node: process.version,
    cpu: cpus()[0]?.model,
    rounds: ROUNDS,
    ...(base ? { baseline: { rev: base.rev, commit: base.commit } } : {}),
    bytesPerSession: setups[setups.length - 1]!.engine.table.bytesPerSession,
    results,
    sizes: SIZES,
    targets: targets.map(([name, value, target, met]) => ({ name, value, target, met })),
  });
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
