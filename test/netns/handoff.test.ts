/**
 * Without the TUN steering program (`tun.steering: false`, or no CAP_BPF: tunvs warns and
 * goes on) the kernel picks each packet's TUN queue itself, and a forwarder hands what it
 * does not own to the owner through shared memory (src/dataplane/handoff.ts). The kernel's
 * own choice (tun.c's flow table: the queue that last wrote a flow) is right for most
 * packets of a few flows; past its 4096 flows, or for a flow idle a few seconds, it is
 * anybody's queue. With offloads on, what is handed over is then often a 64 KiB GSO
 * super-packet, which must arrive whole (it once did not: `redirect_full`, and the flow
 * stalled). Needs root; builds and removes its own lab, also when a test fails.
 */

import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/control/admin.js';
import { LAB, labCurl, labDown, labEcho, labIperf, labUp, type LabState } from '../../src/lab/lab.js';

const root = process.getuid?.() === 0;
const prefix = `th${process.pid % 100000}-`;
let state: LabState;

interface Stats {
  counters: Record<string, number>;
  drops: Record<string, number>;
}

async function stats(): Promise<Stats> {
  return (await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as Stats;
}

describe.skipIf(!root)('two forwarders without the steering program: the hand-off carries it (root)', () => {
  beforeAll(async () => {
    await labDown(prefix, () => undefined);
    state = await labUp({ prefix, workers: 2, steering: false, modes: false, log: () => undefined });
  }, 60_000);

  afterAll(async () => {
    await labDown(prefix, () => undefined);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
  }, 60_000);

  it.each([4, 6] as const)('HTTP through the IPv%i VIP reaches all three real servers', (family) => {
    const text = labCurl(prefix, family, 30);
    const client = family === 4 ? LAB.client4 : LAB.client6;
    const lines = text.trim().split('\n');
    expect(new Set(lines.map((l) => l.split(' ')[0])).size).toBe(3);
    for (const line of lines) expect(line).toMatch(new RegExp(` saw client ${client}:\\d+$`));
  });

  it('2,200 connections echo 64 KiB each (more flows than the kernel tracks): GSO super-packets handed over whole', async () => {
    const before = await stats();
    const r = labEcho(prefix, 2200, 64 << 10, 120);
    const after = await stats();
    const redirected = after.counters.redirected! - before.counters.redirected!;
    const gso = after.counters.gso_packets! - before.counters.gso_packets!;
    console.log(
      `echo without steering: ${r.ok}/${r.connections} ok, ${r.corrupted} corrupted, ${r.seconds.toFixed(1)} s; ` +
        `${redirected} packets handed over, ${gso} GSO super-packets`,
    );
    expect(r.errors).toEqual([]);
    expect(r.corrupted).toBe(0);
    expect(r.ok).toBe(2200);
    expect(redirected).toBeGreaterThan(1000);
    expect(gso).toBeGreaterThan(100);
    expect(after.drops.redirect_full).toBe(0);
  }, 300_000);

  it('iperf3 up and down through the VIP', async () => {
    const up = labIperf(prefix, 3);
    const down = labIperf(prefix, 3, true);
    console.log(`iperf3 without steering: ${up.gbps.toFixed(2)} Gbit/s up, ${down.gbps.toFixed(2)} Gbit/s down`);
    expect(up.gbps).toBeGreaterThan(0.1);
    expect(down.gbps).toBeGreaterThan(0.1);
    expect((await stats()).drops.redirect_full).toBe(0);
  }, 60_000);
});
