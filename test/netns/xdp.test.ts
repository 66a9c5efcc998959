/**
 * The AF_XDP data path (`io: xdp`, docs/xdp.md) in the netns lab: tunvs on lb-a with the XDP
 * program on its eth0 and eth1 (veth: native XDP, copy mode, a queue per forwarder). HTTP
 * over IPv4 and IPv6 and every LVS mode, a byte-checked echo, a reload with a new VIP, and
 * the programs gone after kill -9 and after SIGTERM. The pair's failover on this path is in
 * ha.test.ts. Needs root; builds and removes its own lab, also when a test fails.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/control/admin.js';
import type { QueueStats } from '../../src/dataplane/tun_device.js';
import { LAB, labCurl, labDown, labEcho, labUp, nsName, readState, type LabState } from '../../src/lab/lab.js';
import { inNs, isAlive } from '../../src/lab/netns.js';
import { distSrc } from '../../src/paths.js';
import { labPid, restartTunvs } from '../../src/lab/pair.js';
import { LAB_LB_INTERFACES } from '../../src/lab/topology.js';
import { expectExtHeadersThroughVip } from '../helpers/ext_headers.js';
import {
  addFragmentServices,
  deleteFragmentServices,
  FRAGMENT_DATAGRAMS,
  FRAGMENTS_WRITTEN,
  fragmentedQueries,
} from '../helpers/udp_fragments.js';

const root = process.getuid?.() === 0;
const prefix = `tx${process.pid % 100000}-`;
let state: LabState;

interface Stats {
  counters: Record<string, number>;
  drops: Record<string, number>;
  device: Record<string, number>;
  queues: QueueStats[];
}

async function stats(): Promise<Stats> {
  return (await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as Stats;
}

const sum = (s: Stats, k: keyof QueueStats): number => s.queues.reduce((n, q) => n + q[k], 0);

/** The interfaces of lb-a that have an XDP program attached. */
function withXdp(): string[] {
  return LAB_LB_INTERFACES.filter((dev) =>
    /prog\/xdp/.test(
      execFileSync('ip', ['-n', nsName(prefix, 'lb-a'), '-d', 'link', 'show', dev], { encoding: 'utf8' }),
    ),
  );
}

function servers(text: string): string[] {
  return [
    ...new Set(
      text
        .trim()
        .split('\n')
        .map((l) => l.split(' ')[0]!),
    ),
  ].sort();
}

describe.skipIf(!root)('AF_XDP data path in the netns lab (root)', () => {
  beforeAll(async () => {
    await labDown(prefix, () => undefined);
    state = await labUp({ prefix, workers: 2, io: 'xdp', log: () => undefined });
    state = readState(prefix)!;
  }, 60_000);

  afterAll(async () => {
    await labDown(prefix, () => undefined);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
  }, 60_000);

  it.each([4, 6] as const)(
    'HTTP through the IPv%i VIP reaches all three real servers by the AF_XDP sockets',
    async (family) => {
      expect(withXdp()).toEqual([...LAB_LB_INTERFACES]);
      const before = await stats();
      const text = labCurl(prefix, family, 30);
      expect(servers(text)).toEqual(['rs1', 'rs2', 'rs3']);
      const client = family === 4 ? LAB.client4 : LAB.client6;
      for (const line of text.trim().split('\n')) expect(line).toMatch(new RegExp(` saw client ${client}:\\d+$`));
      const after = await stats();
      // 30 connections, ~10 packets each, received and sent by the sockets: the kernel routed
      // next to nothing into the TUN device (its tx_packets are what it wrote into it).
      expect(sum(after, 'rxPackets') - sum(before, 'rxPackets')).toBeGreaterThan(200);
      expect(after.device.tx_packets! - before.device.tx_packets!).toBeLessThan(20);
      // veth senders leave TCP checksums partial; the queue completes them before the engine.
      expect(sum(after, 'csumCompleted') - sum(before, 'csumCompleted')).toBeGreaterThan(200);
    },
  );

  describe.each(['nat', 'tunnel', 'dr'] as const)('%s mode', (mode) => {
    it.each([4, 6] as const)('HTTP through the IPv%i VIP reaches all three real servers', (family) => {
      const text = labCurl(prefix, family, 15, mode);
      expect(servers(text)).toEqual(['rs1', 'rs2', 'rs3']);
      const client = family === 4 ? LAB.client4 : LAB.client6;
      for (const line of text.trim().split('\n')) expect(line).toMatch(new RegExp(` saw client ${client}:\\d+$`));
    });
  });

  it('300 concurrent connections each echo 1 MiB through the VIP with 0 corrupted bytes', async () => {
    const r = labEcho(prefix, 300, 1 << 20, 150);
    const st = await stats();
    console.log(
      `xdp echo: ${r.ok}/${r.connections} ok, ${r.corrupted} corrupted, ${r.seconds.toFixed(1)} s; ` +
        `queues rx ${sum(st, 'rxPackets')}, to the kernel ${sum(st, 'kernelPackets')}, ` +
        `kernel drops ${sum(st, 'rxDropped')}, redirect_full ${st.drops.redirect_full ?? 0}`,
    );
    expect(r.errors).toEqual([]);
    expect(r.corrupted).toBe(0);
    expect(r.ok).toBe(300);
    // /metrics has the AF_XDP queues' figures per forwarder (summed here).
    const text = inNs(nsName(prefix, 'lb-a'), [
      process.execPath,
      join(distSrc(), 'lab', 'http_get.js'),
      'http://127.0.0.1:9100/metrics',
    ]);
    const scraped = (name: string): number[] =>
      [...text.matchAll(new RegExp(`^${name}\\{worker="\\d+"\\} (\\d+)$`, 'gm'))].map((x) => Number(x[1]));
    const csum = scraped('tunvs_queue_csum_completed_total');
    expect(csum.length).toBe(2);
    expect(csum.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(sum(st, 'csumCompleted'));
    expect(scraped('tunvs_queue_rx_dropped_total').length).toBe(2);
  }, 200_000);

  it('fragmented UDP datagrams both ways, v4 and v6: reassembled from the sockets, written as fragments on them', async () => {
    try {
      expect(addFragmentServices(state.adminSocket)).toBe('');
      const before = await stats();
      for (const v of [4, 6] as const) expect(await fragmentedQueries(prefix, v)).toEqual({ whole: 20, bad: [] });
      const after = await stats();
      expect(after.counters.fragments_reassembled! - before.counters.fragments_reassembled!).toBe(
        2 * FRAGMENT_DATAGRAMS,
      );
      expect(after.counters.fragments_sent! - before.counters.fragments_sent!).toBe(2 * FRAGMENTS_WRITTEN);
      expect([after.counters.fragments_pending, after.counters.fragment_bytes_held]).toEqual([0, 0]);
      // By the sockets: the kernel routed next to nothing into the TUN device.
      expect(after.device.tx_packets! - before.device.tx_packets!).toBeLessThan(20);
    } finally {
      deleteFragmentServices(state.adminSocket);
    }
  }, 60_000);

  it('IPv6 packets behind Hop-by-Hop and Destination Options headers, both ways: forwarded with them, bytes whole, every checksum good', async () => {
    const before = await stats();
    await expectExtHeadersThroughVip(prefix, state);
    // By the sockets: the kernel routed next to nothing into the TUN device.
    expect((await stats()).device.tx_packets! - before.device.tx_packets!).toBeLessThan(20);
  }, 120_000);

  it('a reload with a new VIP swaps the program: the new VIP is served by the sockets at once', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const vip = '198.18.0.102';
    execFileSync('ip', ['-n', nsName(prefix, 'router'), 'route', 'replace', `${vip}/32`, 'via', LAB.float.up4]);
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace(
        'services:\n',
        `services:\n  - { name: web-new, vip: "${vip}", port: 80, scheduler: rr, localAddresses: ["${LAB.laddrs4[0]}"], realServers: [{ address: "${LAB.realServers[0].v4}", port: ${LAB.rsPort} }] }\n`,
      ),
    );
    process.kill(labPid(state, 'tunvs-lb-a')!, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 800));
    const before = await stats();
    const out = inNs(nsName(prefix, 'client'), [
      process.execPath,
      join(distSrc(), 'lab', 'http_get.js'),
      `http://${vip}/`,
      '5',
    ]);
    expect(out.trim().split('\n')).toHaveLength(5);
    const after = await stats();
    expect(sum(after, 'rxPackets') - sum(before, 'rxPackets')).toBeGreaterThan(20);
    expect(after.device.tx_packets! - before.device.tx_packets!).toBeLessThan(5);
  });

  it('kill -9: the kernel detaches the programs with the process; the restart attaches them again', async () => {
    const pid = labPid(readState(prefix)!, 'tunvs-lb-a')!;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 50 && withXdp().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(withXdp()).toEqual([]);
    await restartTunvs(prefix, 'lb-a');
    expect(withXdp()).toEqual([...LAB_LB_INTERFACES]);
    expect(servers(labCurl(prefix, 4, 6))).toEqual(['rs1', 'rs2', 'rs3']);
  }, 60_000);

  it('SIGTERM: the programs and the TUN device are gone', async () => {
    const pid = labPid(readState(prefix)!, 'tunvs-lb-a')!;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(pid)).toBe(false);
    expect(withXdp()).toEqual([]);
    expect(spawnSync('ip', ['-n', nsName(prefix, 'lb-a'), 'link', 'show', 'tunvs0']).status).not.toBe(0);
  }, 30_000);

  it('an interface that already has an XDP program: a clear error, and tunvs forwards through the TUN device', async () => {
    // tunvs is stopped (the test before); another program on eth1 (the real servers' XDP
    // decapsulator here, attached the classic way in the driver) makes tunvs's attach fail
    // with EBUSY.
    const lbA = nsName(prefix, 'lb-a');
    const cli = join(distSrc(), 'cli', 'main.js');
    inNs(lbA, [process.execPath, cli, 'rs', 'decap', 'attach', '--dev', 'eth1', '--xdp-mode', 'native']);
    try {
      await restartTunvs(prefix, 'lb-a');
      const log = readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8');
      expect(log).toMatch(/XDP unavailable, forwarding through the TUN device instead: .*XDP on eth1: attach XDP/);
      const st = (await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as Stats & {
        io: { mode: string };
      };
      expect(st.io.mode).toBe('tun (xdp unavailable)');
      expect(withXdp()).toEqual(['eth1']); // the other program only: tunvs detached its own
      expect(servers(labCurl(prefix, 4, 6))).toEqual(['rs1', 'rs2', 'rs3']);
      const after = await stats();
      expect(after.device.tx_packets).toBeGreaterThan(30); // through the TUN device
    } finally {
      inNs(lbA, [process.execPath, cli, 'rs', 'decap', 'detach', '--dev', 'eth1']);
    }
  }, 60_000);
});
