/**
 * IPv6 extension headers through a lab VIP, for the TUN path (lab.test.ts) and the AF_XDP
 * path (xdp.test.ts). test/netns/ext_headers.py has the kernels put the headers on: the
 * client's a Hop-by-Hop and a Destination Options header on every packet it sends, an echo
 * server's on rs1 (under the lab's TOA reader) a Destination Options header on its replies.
 * 20 echoes of 200,000 bytes through a FULLNAT service added for the run, 6 HTTP requests
 * to the lab's own IPv6 web service, and 10 UDP queries of 3,000 and 20,000 bytes whose
 * fragments carry the headers (udp_fragments.ts's services); tshark on the client and on rs1 says which headers
 * arrived and whether every TCP checksum is good.
 */

import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { adminRequest } from '../../src/control/admin.js';
import {
  startCapture,
  stopCapture,
  tcpChecksumGood,
  TCP_CHECKSUM_FIELDS,
  type Capture,
} from '../../src/lab/capture.js';
import { LAB, labSpawn, nsName, type LabState } from '../../src/lab/lab.js';
import { inNs, stopPid } from '../../src/lab/netns.js';
import { distSrc } from '../../src/paths.js';
import { addFragmentServices, deleteFragmentServices, FRAGMENT_PORT, FRAGMENT_VIPS } from './udp_fragments.js';

const PORT = 9600;
const SCRIPT = join(import.meta.dirname, '..', 'netns', 'ext_headers.py');
const ECHOES = 20;
const GETS = 6;
const QUERIES = 10;

interface Seen {
  src: string;
  next: number;
  good: boolean;
  /** The whole line tshark printed (frame, lengths, flags, verdict), for a failure's message. */
  line: string;
}

/** TCP packets of a capture: source, the IPv6 header's next header, tshark's checksum verdict
 * (tcpChecksumGood). */
function readSeen(file: string): Seen[] {
  const extra = ['frame.number', 'frame.len', 'frame.cap_len', 'tcp.len', 'tcp.flags.str'];
  const fields = ['ipv6.src', 'ipv6.nxt', ...TCP_CHECKSUM_FIELDS, ...extra].flatMap((f) => ['-e', f]);
  return execFileSync('tshark', ['-r', file, '-o', 'tcp.check_checksum:TRUE', '-Y', 'tcp', '-T', 'fields', ...fields], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  })
    .trim()
    .split('\n')
    .map((l) => l.split('\t'))
    .map((f) => ({ src: f[0]!, next: Number(f[1]), good: tcpChecksumGood(f[2], f[3], f[4]), line: f.join(' ') }));
}

/** Packets dropped as ipv6_ext_header, and packets handed over between workers, so far. */
async function counted(state: LabState): Promise<{ extHeaderDrops: number; redirected: number }> {
  const s = (await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as {
    drops: Record<string, number>;
    counters: Record<string, number>;
  };
  return { extHeaderDrops: s.drops.ipv6_ext_header!, redirected: s.counters.redirected! };
}

/** Run the check on lab `prefix` (LB A, whose admin socket `state` names) and assert it.
 * Returns the packets handed over between workers during the TCP part (fragments are handed
 * over to their datagram's owner by design, TCP packets only if the steering missed). */
export async function expectExtHeadersThroughVip(prefix: string, state: LabState): Promise<{ tcpRedirected: number }> {
  const tunvs = (args: string[]) =>
    spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', state.adminSocket], {
      encoding: 'utf8',
    });
  const rs1 = LAB.realServers[0];
  const server = labSpawn(prefix, 'ext-headers-rs1', 'rs1', ['python3', SCRIPT, 'server', String(PORT)], true);
  const serverLog = join(state.dir, 'ext-headers-rs1.log');
  const lbA = nsName(prefix, 'lb-a');
  // tunvs writes partial checksums (TUN offloads); with tx checksumming off on LB A's
  // interfaces the kernel completes them, so tshark judges what tunvs wrote.
  const ethtool = (on: 'on' | 'off'): void => {
    for (const dev of ['eth0', 'eth1'])
      execFileSync('ip', ['netns', 'exec', lbA, 'ethtool', '-K', dev, 'tx', on], { stdio: 'pipe' });
  };
  const before = await counted(state);
  let tcpRedirected = -1;
  let echo: { ok: number; bad: string[] } | undefined;
  let answers = '';
  let queries = '';
  const caps: Capture[] = [];
  try {
    for (let i = 0; i < 100 && !(existsSync(serverLog) && readFileSync(serverLog, 'utf8').includes('listening')); i++)
      await new Promise((r) => setTimeout(r, 100));
    const added = tunvs([
      'service',
      'add',
      'ext-v6',
      '--vip',
      LAB.vip6,
      '--port',
      String(PORT),
      '--laddr',
      LAB.laddrs6[0],
      '--server',
      `[${rs1.v6}]:${PORT}`,
    ]);
    expect(added.status, added.stderr).toBe(0);
    ethtool('off');
    // Not "ip6 and tcp": the kernel's filter finds TCP only right after the fixed header.
    caps.push(await startCapture(nsName(prefix, 'client'), 'eth0', join(state.dir, 'ext-client.pcap'), 'ip6'));
    caps.push(await startCapture(nsName(prefix, 'rs1'), 'eth0', join(state.dir, 'ext-rs1.pcap'), 'ip6'));
    const client = nsName(prefix, 'client');
    const echoArgs = ['python3', SCRIPT, 'echo', LAB.vip6, String(PORT), String(ECHOES), '200000'];
    echo = JSON.parse(inNs(client, echoArgs, 90_000)) as { ok: number; bad: string[] };
    answers = inNs(client, ['python3', SCRIPT, 'get', LAB.vip6, String(LAB.vport), String(GETS)]);
    tcpRedirected = (await counted(state)).redirected - before.redirected;
    expect(addFragmentServices(state.adminSocket)).toBe('');
    queries = inNs(client, ['python3', SCRIPT, 'udp', FRAGMENT_VIPS[6], String(FRAGMENT_PORT), String(QUERIES)]);
  } finally {
    deleteFragmentServices(state.adminSocket);
    for (const c of caps) await stopCapture(c);
    ethtool('on');
    await stopPid(server);
    tunvs(['service', 'delete', 'ext-v6']);
  }
  expect(echo, `${ECHOES} echoes of 200,000 bytes`).toEqual({ ok: ECHOES, bad: [] });
  expect(JSON.parse(queries), `${QUERIES} UDP queries in fragments behind the headers`).toEqual({
    whole: QUERIES,
    bad: [],
  });
  const lines = answers.trim().split('\n');
  expect(lines.length).toBe(GETS);
  for (const l of lines) expect(l).toMatch(new RegExp(`^rs\\d saw client ${LAB.client6}:\\d+$`));
  const peers = readFileSync(serverLog, 'utf8').match(/^peer .*$/gm) ?? [];
  expect(peers.length).toBe(ECHOES);
  for (const p of peers)
    expect(p, 'the echo server, under the TOA reader').toMatch(new RegExp(`^peer \\[${LAB.client6}\\]:\\d+$`));
  // On the wire: the headers tunvs forwarded, and tshark's checksum verdicts.
  const atRs = readSeen(caps[1]!.file).filter((p) => p.src === LAB.laddrs6[0]);
  const atClient = readSeen(caps[0]!.file).filter((p) => p.src === LAB.vip6);
  expect(atRs.filter((p) => p.next === 0).length, 'Hop-by-Hop headers from the LB at rs1').toBeGreaterThan(100);
  expect(atClient.filter((p) => p.next === 60).length, "rs1's Destination Options from the VIP").toBeGreaterThan(100);
  const bad = [...atRs.map((p) => ({ at: caps[1]!.file, p })), ...atClient.map((p) => ({ at: caps[0]!.file, p }))]
    .filter(({ p }) => !p.good)
    .map(({ at, p }) => `${at}: ${p.line}`);
  expect(
    bad,
    'packets tshark finds a bad checksum in (file: src next status csum calculated frame len caplen tcplen flags)',
  ).toEqual([]);
  // The queries' fragments as the LB cut them for rs1 (the scheduler gives it some of the
  // 10, each at least 3 fragments): the Hop-by-Hop header in front of each fragment header.
  // The fragment services have both local addresses; rs1's queries may come from either.
  const fromLb = LAB.laddrs6.map((a) => `ipv6.src == ${a}`).join(' || ');
  const fragmented = execFileSync(
    'tshark',
    ['-r', caps[1]!.file, '-Y', `(${fromLb}) && ipv6.hopopts && ipv6.fraghdr`],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  ).trim();
  expect(
    fragmented ? fragmented.split('\n').length : 0,
    'fragments behind a Hop-by-Hop header at rs1',
  ).toBeGreaterThanOrEqual(3);
  expect((await counted(state)).extHeaderDrops).toBe(before.extHeaderDrops);
  return { tcpRedirected };
}
