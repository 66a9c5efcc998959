/**
 * The lab, for real: namespaces, the TUN device, tunvs with two forwarder threads, real
 * servers. Needs root (network namespaces); it builds its own lab under its own prefix and
 * removes it afterwards, also when a test fails.
 */

import { processCpu } from '../../bench/lib/cpu.js';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { adminRequest } from '../../src/control/admin.js';
import { parseConfig } from '../../src/config/config.js';
import { readCapture, readUdpCapture, startCapture, stopCapture } from '../../src/lab/capture.js';
import {
  LAB,
  labCurl,
  labDown,
  labEcho,
  labIperf,
  labSpawn,
  labToa,
  labUp,
  nsName,
  readState,
  type LabState,
} from '../../src/lab/lab.js';
import { inNs, ipBatch, isAlive, runInNs } from '../../src/lab/netns.js';
import { MODE_PORTS, modeVip, serverRoutes } from '../../src/lab/modes.js';
import { labPid, restartTunvs } from '../../src/lab/pair.js';
import { runStreams } from '../../src/lab/streams.js';
import { LAB_ADMIN_TOKEN } from '../../src/lab/topology.js';
import { listFallbacks } from '../../src/control/system.js';
import { distSrc } from '../../src/paths.js';
import { hostPort } from '../../src/service/addr.js';
import {
  addFragmentServices,
  deleteFragmentServices,
  FRAGMENT_DATAGRAMS,
  FRAGMENTS_WRITTEN,
  fragmentedQueries,
} from '../helpers/udp_fragments.js';
import { expectExtHeadersThroughVip } from '../helpers/ext_headers.js';

const root = process.getuid?.() === 0;
const prefix = `tt${process.pid % 100000}-`;
let state: LabState;

function counts(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.trim().split('\n')) {
    const server = line.split(' ')[0]!;
    m.set(server, (m.get(server) ?? 0) + 1);
  }
  return m;
}

async function stats(): Promise<Record<string, Record<string, number>>> {
  return (await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as Record<string, Record<string, number>>;
}

/** `n` connections from the client to `vip`:echoPort one after another, each sending 200 KiB
 * and reading it back (10 s each at most): how many came back whole. */
async function echoesInTurn(vip: string, n: number): Promise<number> {
  const script = `const net = require('net'); const crypto = require('crypto'); let ok = 0;
    const one = () => new Promise((done) => {
      const body = crypto.randomBytes(200 * 1024); const got = [];
      const s = net.connect(${LAB.echoPort}, '${vip}', () => s.write(body));
      s.setTimeout(10000, () => s.destroy());
      s.on('data', (d) => { got.push(d); if (Buffer.concat(got).length >= body.length) s.end(); });
      s.on('close', () => { if (Buffer.concat(got).equals(body)) ok++; done(); });
      s.on('error', () => {});
    });
    (async () => { for (let i = 0; i < ${n}; i++) await one(); console.log(ok); })();`;
  return Number((await runInNs(nsName(prefix, 'client'), [process.execPath, '-e', script])).out.trim());
}

/** stream_check from the client to the echo VIP, in the background; resolves with its JSON. */
async function streamsInBackground(connections: number, seconds: number, port: number = LAB.echoPort): Promise<string> {
  const args = [
    join(distSrc(), 'lab', 'stream_check.js'),
    LAB.vip4,
    String(port),
    String(connections),
    String(seconds),
  ];
  return (await runInNs(nsName(prefix, 'client'), [process.execPath, ...args])).out;
}

/** A copy of the lab service `base` (withServiceCopies): named `name`, on `port`, to
 * `servers` (addresses, listening on `port`), changed further by `edit`. */
interface ServiceCopy {
  base: string;
  name: string;
  port: number;
  servers: readonly string[];
  edit?: (line: string) => string;
}

/**
 * Run `body` with `copies` of lab services in lb-a's config (one reload). The config is put
 * back (and reloaded) afterwards.
 */
async function withServiceCopies<T>(copies: readonly ServiceCopy[], body: () => Promise<T>): Promise<T> {
  const file = join(state.dir, 'lb-a.yaml');
  const before = readFileSync(file, 'utf8');
  try {
    await reloadWith((y) =>
      copies.reduce(
        (text, o) =>
          text.replace(new RegExp(`(  - \\{ name: ${o.base}, .*\n)`), (line) => {
            const rss = o.servers.map((a) => `{ address: "${a}", port: ${o.port} }`).join(', ');
            const copy = line
              .replace(`name: ${o.base}`, `name: ${o.name}`)
              .replace(/ port: \d+,/, ` port: ${o.port},`)
              .replace(/realServers: \[.*\]/, `realServers: [${rss}]`);
            return (o.edit ? o.edit(copy) : copy) + line;
          }),
        y,
      ),
    );
    const now = readFileSync(file, 'utf8');
    for (const o of copies) expect(now).toContain(o.name);
    return await body();
  } finally {
    writeFileSync(file, before);
    process.kill(tunvsPid(), 'SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** How long the switch holds the server's segments back in the held transfers. */
const HOLD_MS = 15_000;

/** Hold back, in the switch and in an nft table of its own (`table`), the server's TCP
 * segments of more than 200 bytes from `port` (`verdict`: an nft statement ending in drop);
 * returns the release, which may be called more than once. */
function holdInSwitch(table: string, port: number, verdict: string): () => void {
  const sw = nsName(prefix, 'sw');
  inNs(sw, [
    'nft',
    `add table bridge ${table}; add chain bridge ${table} hold { type filter hook forward priority 0; }; ` +
      `add rule bridge ${table} hold tcp sport ${port} ip length > 200 ${verdict}`,
  ]);
  return () => void spawnSync('ip', ['netns', 'exec', sw, 'nft', `delete table bridge ${table}`], { stdio: 'ignore' });
}

/** A transfer through a copy of the lab service `base` (in `mode`) on `port`, to a server on
 * rs1 that reads the client's request to its FIN, then runs `onEnd` (`s`: its socket); the
 * switch applies `hold` to the server's segments (holdInSwitch) for HOLD_MS from the start. */
interface HeldTransfer {
  base: string;
  mode?: string;
  vip: string;
  port: number;
  onEnd: string;
  hold: string;
}

/** What each held transfer's client received (by its FIN, or the error), what ran alongside
 * gave, and tunvs's no_session drops over the whole. */
interface HeldOutcome<T> {
  results: { n: number; seconds?: number; error?: string }[];
  other: T;
  noSession: number;
}

/**
 * The `transfers` at once (one reload for their services, a hold each) and `alongside`,
 * started after the holds are in place. Returns what each client received by its own FIN (or
 * the error, or a timeout after 60 s), what `alongside` gave, and tunvs's no_session drops
 * over the whole.
 */
async function heldTransfers<T>(
  transfers: readonly HeldTransfer[],
  alongside: () => Promise<T>,
): Promise<HeldOutcome<T>> {
  const servers = transfers.map((o) =>
    spawn(
      'ip',
      [
        'netns',
        'exec',
        nsName(prefix, 'rs1'),
        process.execPath,
        '-e',
        `require('net').createServer({ allowHalfOpen: true }, (s) => { s.resume(); s.on('end', () => { ${o.onEnd}; }); }).listen(${o.port}, '0.0.0.0');`,
      ],
      { stdio: 'ignore' },
    ),
  );
  const copies = transfers.map((o) => ({
    base: o.base,
    name: `held-${o.base}`,
    port: o.port,
    servers: [LAB.realServers[0].v4],
    ...(o.mode !== undefined ? { edit: (line: string) => line.replace(/mode: \w+/, `mode: ${o.mode}`) } : {}),
  }));
  const releases: (() => void)[] = [];
  try {
    return await withServiceCopies(copies, async () => {
      for (const [i, o] of transfers.entries()) releases.push(holdInSwitch(`tvhold${i}`, o.port, o.hold));
      const b0 = await stats();
      const running = transfers.map((o) =>
        runInNs(nsName(prefix, 'client'), [
          process.execPath,
          '-e',
          `const s = require('net').connect(${o.port}, '${o.vip}', () => s.end('x')); let n = 0; const t0 = Date.now();
         s.on('data', (d) => { n += d.length; }); s.on('error', (e) => { console.log(JSON.stringify({ n, error: e.message })); process.exit(0); });
         s.on('end', () => { console.log(JSON.stringify({ n, seconds: (Date.now() - t0) / 1000 })); process.exit(0); });
         setTimeout(() => { console.log(JSON.stringify({ n, error: 'timeout' })); process.exit(0); }, 60000);`,
        ]),
      );
      const all = Promise.all([Promise.all(running), alongside()]);
      await new Promise((done) => setTimeout(done, HOLD_MS));
      for (const release of releases) release();
      const [outs, other] = await all;
      const b1 = await stats();
      return {
        results: outs.map((r) => JSON.parse(r.out) as HeldOutcome<T>['results'][number]),
        other,
        noSession: (b1.drops!.no_session ?? 0) - (b0.drops!.no_session ?? 0),
      };
    });
  } finally {
    for (const release of releases) release();
    for (const server of servers) server.kill();
  }
}

/** `tunvs conns ARGS` against lb-a's admin socket: its text (`--json`: parse it). */
function conns(args: string[]): string {
  return execFileSync(
    process.execPath,
    [join(distSrc(), 'cli', 'main.js'), 'conns', '--admin', state.adminSocket, ...args],
    {
      encoding: 'utf8',
    },
  );
}

/** `tunvs ARGS` against lb-a's admin socket: its exit code and stderr. */
function tunvsCli(args: string[]): { code: number; err: string } {
  const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', state.adminSocket], {
    encoding: 'utf8',
  });
  return { code: r.status ?? 1, err: r.stderr };
}

/** `tunvs service add NAME --vip VIP` on lb-a: port 80, lb-a's first local address, rs1. */
function addService(name: string, vip: string): { code: number; err: string } {
  return tunvsCli([
    'service',
    'add',
    name,
    '--vip',
    vip,
    '--port',
    '80',
    '--laddr',
    LAB.laddrs4[0],
    '--server',
    `${LAB.realServers[0].v4}:${LAB.rsPort}`,
  ]);
}

/** Whether lb-a's tunvs log has `text` (within a second: the logger writes asynchronously). */
async function logged(text: string): Promise<boolean> {
  const log = join(state.dir, 'tunvs-lb-a.log');
  for (let i = 0; i < 20 && !readFileSync(log, 'utf8').includes(text); i++) await new Promise((r) => setTimeout(r, 50));
  return readFileSync(log, 'utf8').includes(text);
}

function tunvsPid(): number {
  return labPid(readState(prefix)!, 'tunvs-lb-a')!;
}

/** `tunvs list` on lb-a, as text. */
async function list(): Promise<string> {
  return String((await adminRequest(state.adminSocket, { cmd: 'list' })).text);
}

/** Until `tunvs list` shows `what` (present) or no longer does, 8 s at most. */
async function waitFor(what: RegExp, present: boolean): Promise<void> {
  for (let i = 0; i < 80; i++) {
    if (what.test(await list()) === present) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`list ${present ? 'never showed' : 'still shows'} ${what}:\n${await list()}`);
}

async function reloadWith(edit: (yaml: string) => string): Promise<void> {
  const file = join(state.dir, 'lb-a.yaml');
  writeFileSync(file, edit(readFileSync(file, 'utf8')));
  process.kill(tunvsPid(), 'SIGHUP');
  await new Promise((r) => setTimeout(r, 500));
}

/** `n` POSTs of 1 MiB to /echo at vip:port from the client, one after another: how many
 * came back whole (or "error ..."). */
async function uploads(vip: string, port: number, n: number): Promise<string> {
  const script = `const http = require('http'); const crypto = require('crypto');
    const body = crypto.randomBytes(1 << 20); let ok = 0;
    const one = () => new Promise((done, fail) => {
      const req = http.request({ host: '${vip}', port: ${port}, path: '/echo', method: 'POST', agent: false, timeout: 10000 }, (res) => {
        const parts = []; res.on('data', (d) => parts.push(d));
        res.on('end', () => { if (Buffer.concat(parts).equals(body)) ok++; done(); });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', fail);
      req.end(body);
    });
    (async () => { for (let i = 0; i < ${n}; i++) await one(); console.log(ok); })().catch((e) => { console.log('error ' + e.message); });`;
  return (await runInNs(nsName(prefix, 'client'), [process.execPath, '-e', script])).out.trim();
}

describe.skipIf(!root)('netns lab (root)', () => {
  beforeAll(async () => {
    await labDown(prefix, () => undefined);
    state = await labUp({ prefix, workers: 2, log: () => undefined });
    state = readState(prefix)!;
  }, 60_000);

  afterAll(async () => {
    await labDown(prefix, () => undefined);
    expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(prefix);
  }, 60_000);

  it.each([4, 6] as const)('HTTP through the IPv%i VIP reaches all three real servers (rr)', (family) => {
    const seen = counts(labCurl(prefix, family, 30));
    expect([...seen.keys()].sort()).toEqual(['rs1', 'rs2', 'rs3']);
    for (const n of seen.values()) expect(n).toBeGreaterThanOrEqual(6);
  });

  describe.each(['nat', 'tunnel', 'dr'] as const)('%s mode', (mode) => {
    it.each([4, 6] as const)(
      'HTTP through the IPv%i VIP reaches all three real servers, which see the client itself',
      (family) => {
        const text = labCurl(prefix, family, 30, mode);
        const seen = counts(text);
        expect([...seen.keys()].sort()).toEqual(['rs1', 'rs2', 'rs3']);
        const client = family === 4 ? LAB.client4 : LAB.client6;
        for (const line of text.trim().split('\n')) expect(line).toMatch(new RegExp(` saw client ${client}:\\d+$`));
      },
    );
  });

  it("DR: a real server's new MAC is learned from the kernel's neighbour table (rtnetlink), unknown ones resolved", async () => {
    // rs1's NIC is replaced (a new MAC) and lb-a forgets the old entry: the next refresh finds
    // no entry for rs1, makes the kernel resolve it, and DR reaches rs1 at its new MAC.
    const lbA = nsName(prefix, 'lb-a');
    const rs1 = nsName(prefix, 'rs1');
    const mac = (): string =>
      (
        JSON.parse(execFileSync('ip', ['-n', rs1, '-j', 'link', 'show', 'dev', 'eth0'], { encoding: 'utf8' })) as {
          address: string;
        }[]
      )[0]!.address;
    const old = mac();
    const forget = (): void => {
      for (const family of ['-4', '-6']) execFileSync('ip', ['-n', lbA, family, 'neigh', 'flush', 'dev', 'eth1']);
    };
    execFileSync('ip', ['-n', rs1, 'link', 'set', 'dev', 'eth0', 'address', '02:00:5e:18:00:21']);
    try {
      forget();
      const t0 = Date.now();
      for (const family of [4, 6] as const) {
        let seen = new Map<string, number>();
        const deadline = Date.now() + 10_000;
        while (Date.now() < deadline) {
          seen = counts(labCurl(prefix, family, 6, 'dr'));
          if (seen.has('rs1')) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        console.log(`DR over IPv${family} reached rs1 at its new MAC ${Date.now() - t0} ms after the change`);
        expect([...seen.keys()]).toContain('rs1');
      }
    } finally {
      execFileSync('ip', ['-n', rs1, 'link', 'set', 'dev', 'eth0', 'address', old]);
      forget();
    }
  }, 30_000);

  it('tunvs list names each mode as ipvsadm does; NAT replies come in through policy rules that go with the service', async () => {
    const text = String((await adminRequest(state.adminSocket, { cmd: 'list' })).text);
    expect(text).toMatch(new RegExp(`TCP  ${LAB.vip4}:${LAB.natPort} rr\\n  -> 198\\.18\\.20\\.21:8080 +Masq `));
    expect(text).toMatch(new RegExp(`TCP  ${LAB.vip4}:${LAB.tunnelPort} rr\\n  -> 198\\.18\\.20\\.21:8080 +Tunnel `));
    expect(text).toMatch(/TCP  198\.18\.0\.100:80 rr\n  -> 198\.18\.20\.21:8080 +FullNat /);
    expect(text).toMatch(new RegExp(`TCP  ${LAB.drVip4}:${LAB.tunnelPort} rr\\n  -> 198\\.18\\.20\\.21:8080 +Route `));
    const lbA = nsName(prefix, 'lb-a');
    const rules = (family: '-4' | '-6'): string =>
      execFileSync('ip', ['-n', lbA, family, 'rule'], { encoding: 'utf8' });
    expect(rules('-4')).toContain(`from ${LAB.realServers[0].v4} ipproto tcp sport ${LAB.rsPort} lookup 4789`);
    expect(rules('-6')).toContain(`from ${LAB.realServers[0].v6} ipproto tcp sport ${LAB.rsPort} lookup 4789`);
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    await reloadWith((y) => y.replace(/^.*mode: nat.*\n/gm, ''));
    expect(rules('-4')).not.toContain('4789');
    expect(rules('-6')).not.toContain('4789');
    expect(execFileSync('ip', ['-n', lbA, 'route', 'show', 'table', '4789'], { encoding: 'utf8' })).toBe('');
    writeFileSync(file, good);
    await reloadWith((y) => y);
    expect(rules('-4')).toContain('lookup 4789');
    expect(labCurl(prefix, 4, 3, 'nat')).toMatch(/saw client 198\.18\.100\.10/);
  });

  it('tunvs list, read back by tunvs import ipvsadm, gives the services lb-a runs', () => {
    const cli = join(distSrc(), 'cli', 'main.js');
    const listed = spawnSync(process.execPath, [cli, 'list', '--admin', state.adminSocket], { encoding: 'utf8' });
    expect(listed.status, listed.stderr).toBe(0);
    const laddrs = [...LAB.laddrs4, ...LAB.laddrs6].flatMap((a) => ['--laddr', a]);
    const imported = spawnSync(process.execPath, [cli, 'import', 'ipvsadm', '-', ...laddrs], {
      input: listed.stdout,
      encoding: 'utf8',
    });
    expect(imported.status, imported.stderr).toBe(0);
    // What a listing carries of each service (not its checks, ACLs or local addresses).
    const rules = (doc: unknown): string[] =>
      parseConfig(doc)
        .services.map(
          (s) =>
            `${s.protocol} ${hostPort(s.vip, s.port)} ${s.mode} ${s.scheduler} ${JSON.stringify(s.persistence ?? null)} ` +
            s.realServers.map((r) => `${hostPort(r.address, r.port)}*${r.weight}`).join(','),
        )
        .sort();
    const running = rules(parseYaml(readFileSync(join(state.dir, 'lb-a.yaml'), 'utf8')));
    expect(running.length).toBeGreaterThan(4);
    expect(rules(parseYaml(imported.stdout))).toEqual(running);
  });

  it.each([4, 6] as const)(
    'TUNNEL: without advmss on the servers, IPv%i clients learn the path MTU from the LB; 1 MiB uploads arrive whole',
    async (family) => {
      for (const rs of LAB.realServers) serverRoutes(prefix, rs.name, false);
      try {
        const before = (await stats()).drops!.tunnel_too_big!;
        const host = family === 4 ? LAB.vip4 : `[${LAB.vip6}]`;
        const out = await uploads(family === 4 ? LAB.vip4 : LAB.vip6, LAB.tunnelPort, 6);
        expect(out, `uploads to ${host}:${LAB.tunnelPort}`).toBe('6');
        expect((await stats()).drops!.tunnel_too_big!).toBeGreaterThan(before);
      } finally {
        for (const rs of LAB.realServers) serverRoutes(prefix, rs.name, true);
      }
    },
    60_000,
  );

  it('the real-server application sees the client (the lab runs it under the TOA reader)', () => {
    expect(labCurl(prefix, 4, 1)).toMatch(/saw client 198\.18\.100\.10:\d+/);
    expect(labCurl(prefix, 6, 1)).toMatch(/saw client fd18:18:100::10:\d+/);
  });

  it('wrr weights 1:2:3 hold within 5% over 3,000 requests (after a SIGHUP reload)', async () => {
    await reloadWith((y) => {
      let i = 0;
      return y.replace(/scheduler: rr/g, 'scheduler: wrr').replace(/weight: 1 }/g, () => `weight: ${(i++ % 3) + 1} }`);
    });
    const seen = counts(labCurl(prefix, 4, 3000));
    const expected = { rs1: 500, rs2: 1000, rs3: 1500 };
    for (const [rs, want] of Object.entries(expected)) {
      expect(Math.abs((seen.get(rs) ?? 0) - want) / want, `${rs}: ${seen.get(rs)} of 3000`).toBeLessThan(0.05);
    }
  }, 120_000);

  it('a broken reload is refused and the running config keeps serving', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, good.replace('port: 80', 'port: 99999'));
    process.kill(tunvsPid(), 'SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    writeFileSync(file, good);
    const log = readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8');
    expect(log).toContain('reload refused, still running the previous config: services[0].port: 99999 is not a port');
    expect(labCurl(prefix, 4, 3)).toMatch(/saw client/);
  });

  it('tunvs reload says how the reload went: the error and exit 1 for a broken file, the count for a good one', () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const reload = () =>
      spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), 'reload', '--admin', state.adminSocket], {
        encoding: 'utf8',
        timeout: 30_000,
      });
    try {
      writeFileSync(file, good.replace('port: 80', 'port: 99999'));
      const bad = reload();
      expect(bad.status).toBe(1);
      expect(bad.stderr).toMatch(
        /^tunvs: reload refused, still running the previous config: services\[0\]\.port: 99999 is not a port/,
      );
    } finally {
      writeFileSync(file, good);
    }
    const ok = reload();
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/^reloaded: \d+ services$/m);
    expect(labCurl(prefix, 4, 3)).toMatch(/saw client/);
  });

  it('a reload that changes more than services says which fields wait for a restart', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    await reloadWith((y) => y.replace('mtu: 1500', 'mtu: 1400'));
    writeFileSync(file, good);
    const log = readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8');
    expect(log).toContain('reload: tun changed; these apply at the next restart');
    expect(labCurl(prefix, 4, 1)).toMatch(/saw client/);
  });

  it('malformed packets are counted and dropped; tunvs keeps serving', async () => {
    const before = await stats();
    const sent = execFileSync(
      'ip',
      [
        'netns',
        'exec',
        nsName(prefix, 'client'),
        'python3',
        join(import.meta.dirname, 'junk.py'),
        LAB.vip4,
        LAB.client4,
      ],
      { encoding: 'utf8' },
    );
    expect(Number(sent)).toBe(5);
    await new Promise((r) => setTimeout(r, 300));
    const after = await stats();
    const grew = (k: string): number => after.drops![k]! - before.drops![k]!;
    expect(grew('bad_tcp_header')).toBeGreaterThanOrEqual(1);
    expect(grew('truncated')).toBeGreaterThanOrEqual(1);
    expect(grew('bad_tcp_flags')).toBeGreaterThanOrEqual(1);
    expect(grew('bad_udp_header')).toBeGreaterThanOrEqual(1);
    expect(grew('no_service')).toBeGreaterThanOrEqual(1);
    expect(isAlive(tunvsPid())).toBe(true);
    expect(labCurl(prefix, 6, 2)).toMatch(/saw client fd18:18:100::10:/);
  });

  it('a VIP that is also an address of the host is named in the log: the kernel keeps its packets', async () => {
    // As a VRRP address kept from an LVS setup would be: the host's local table wins over the
    // route into the TUN device.
    const lbA = nsName(prefix, 'lb-a');
    const vip = '198.18.0.199';
    ipBatch([`addr add ${vip}/32 dev lo`], lbA);
    try {
      const add = addService('shadowed', vip);
      expect(add.code, add.err).toBe(0);
      expect(await logged(`${vip}/32 (shadowed) is an address of this host`)).toBe(true);
    } finally {
      ipBatch([`addr del ${vip}/32 dev lo`], lbA);
      tunvsCli(['service', 'delete', 'shadowed']);
    }
    expect(await logged(`${vip}/32 is no longer both a service's address and an address of this host`)).toBe(true);
  });

  it('a runtime edit whose VIP another TUN device is routed for is refused; another route to it is named', async () => {
    // Another tunvs with its own device and admin socket, serving the VIP: taking its route
    // would cut it off. A route of another kind (here a null route) tunvs's own replaces.
    const lbA = nsName(prefix, 'lb-a');
    const [taken, nulled] = ['198.18.0.198', '198.18.0.197'];
    ipBatch(
      [
        'tuntap add mode tun name tq9',
        'link set tq9 up',
        `route add ${taken}/32 dev tq9`,
        `route add unreachable ${nulled}/32`,
      ],
      lbA,
    );
    try {
      const refused = addService('taken', taken);
      expect(refused.code).toBe(1);
      expect(refused.err).toContain(
        `${taken}/32 is routed into tq9: another tunvs (or another program's TUN device) serves it here`,
      );
      expect(await list()).not.toContain(taken);
      const routes = execFileSync('ip', ['-n', lbA, 'route', 'show', 'exact', `${taken}/32`], { encoding: 'utf8' });
      expect(routes.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^${taken} dev tq9 scope link`))]);
      const warned = addService('nulled', nulled);
      expect(warned.code, warned.err).toBe(0);
      expect(await logged(`${nulled}/32 is also routed unreachable (metric 0)`)).toBe(true);
    } finally {
      tunvsCli(['service', 'delete', 'nulled']);
      ipBatch(['tuntap del mode tun name tq9'], lbA);
    }
  });

  it('a second tunvs on the node is refused before it touches anything; the first forwards on', async () => {
    const pid = tunvsPid();
    const file = join(state.dir, 'lb-a.yaml');
    const second = (config: string) =>
      spawnSync(
        'ip',
        [
          'netns',
          'exec',
          nsName(prefix, 'lb-a'),
          process.execPath,
          join(distSrc(), 'cli', 'main.js'),
          'run',
          '--config',
          config,
        ],
        {
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
    // The same config: its admin socket answers.
    const same = second(file);
    expect(same.status, same.stderr).toBe(1);
    expect(same.stderr).toMatch(/another tunvs runs here: its admin socket .* answers/);
    // Its own admin socket, the same TUN device name: the device exists (IFF_TUN_EXCL).
    const other = join(state.dir, 'second.yaml');
    const ownSocket = readFileSync(file, 'utf8').replace(
      /^admin: .*$/m,
      `admin: { socket: "${join(state.dir, 'second.sock')}" }`,
    );
    try {
      writeFileSync(other, ownSocket);
      const tun = second(other);
      expect(tun.status, tun.stderr).toBe(1);
      expect(tun.stderr).toMatch(/TUNSETIFF: Device or resource busy\. A link of that name exists/);
      // Its own admin socket and TUN device, the same VIPs: they are routed into the first's.
      writeFileSync(other, ownSocket.replace('tun: { name: tunvs0,', 'tun: { name: tunvs9,'));
      const vips = second(other);
      expect(vips.status, vips.stderr).toBe(1);
      expect(vips.stderr).toContain(`${LAB.vip4}/32 is routed into tunvs0`);
      expect(vips.stderr).toMatch(/another tunvs \(or another program's TUN device\) serves them here/);
      expect(execFileSync('ip', ['-n', nsName(prefix, 'lb-a'), 'link', 'show'], { encoding: 'utf8' })).not.toContain(
        'tunvs9',
      );
    } finally {
      rmSync(other, { force: true });
    }
    // The first runs on, on its admin socket, with its routes and rules.
    expect(tunvsPid()).toBe(pid);
    expect(await adminRequest(state.adminSocket, { cmd: 'stats' })).toHaveProperty('counters');
    expect(labCurl(prefix, 4, 3).trim().split('\n')).toHaveLength(3);
    expect(labCurl(prefix, 6, 3)).toMatch(/saw client fd18:18:100::10:/);
  });

  it.each([4, 6] as const)(
    'IPv%i: the TOA the real servers receive carries the client address and port; tshark finds every checksum good',
    async (family) => {
      const client = family === 4 ? LAB.client4 : LAB.client6;
      // tunvs writes partial checksums and GSO super-packets (offloads). A real NIC would
      // finish them in hardware; veth passes them on unfinished. With tx checksumming off
      // on LB A's egress the kernel completes and segments them in software, so tshark
      // judges exactly what tunvs produced, segment by segment.
      const lbA = nsName(prefix, 'lb-a');
      const ethtool = (on: 'on' | 'off'): void => {
        for (const dev of ['eth0', 'eth1'])
          execFileSync('ip', ['netns', 'exec', lbA, 'ethtool', '-K', dev, 'tx', on], { stdio: 'pipe' });
      };
      ethtool('off');
      const clientCap = await startCapture(
        nsName(prefix, 'client'),
        'eth0',
        join(state.dir, `client-${family}.pcap`),
        'tcp port 80',
      );
      let result: Awaited<ReturnType<typeof labToa>>;
      try {
        result = await labToa(prefix, family, 6);
      } finally {
        await stopCapture(clientCap);
        ethtool('on');
      }
      const atClient = readCapture(clientCap.file);
      const clientPorts = new Set(atClient.filter((p) => p.syn && !p.ack).map((p) => p.sport));
      expect(result.observed.length).toBe(6);
      for (const o of result.observed) {
        expect(o.toa?.address).toBe(client);
        expect(o.appSaw, 'the application (through the reader) and the TOA agree').toBe(`${client}:${o.toa?.port}`);
        expect(o.toa?.kind).toBe(254);
        expect(clientPorts.has(o.toa!.port), `TOA port ${o.toa?.port} is a port the client connected from`).toBe(true);
      }
      // Everything tunvs wrote: what reached the real servers, and what reached the client.
      const produced = [
        ...result.arrived,
        ...atClient.filter((p) => p.dst === client || p.dst.startsWith('fd18:18:100:')),
      ];
      expect(produced.length).toBeGreaterThan(30);
      const bad = produced.filter((p) => !p.ipChecksumGood || !p.tcpChecksumGood);
      expect(bad, 'packets tshark finds a bad checksum in').toEqual([]);
    },
    60_000,
  );

  it('IPv6 packets behind Hop-by-Hop and Destination Options headers, both ways: forwarded with them, bytes whole, the servers see the client, every checksum good', async () => {
    const { tcpRedirected } = await expectExtHeadersThroughVip(prefix, state);
    // The steering program finds the ports behind the headers: each TCP packet reaches its
    // owner's queue, next to none is handed over between the workers.
    expect(tcpRedirected).toBeLessThan(20);
  }, 120_000);

  it('1,000 concurrent connections each echo 1 MiB through the VIP with 0 corrupted bytes', async () => {
    const r = labEcho(prefix, 1000, 1 << 20, 150);
    console.log(
      `echo: ${r.ok}/${r.connections} ok, ${r.corrupted} corrupted, ${r.failed} failed, ${r.seconds.toFixed(1)} s` +
        (r.stragglerSec ? ` (the last few given ${r.stragglerSec} s more: TCP backoff after TUN queue drops)` : ''),
    );
    if (r.ok !== r.connections) {
      // What the LB saw, for whoever reads a failure: its drops and the TUN queue's.
      console.log(`echo incomplete: ${r.errors.join('; ')}`);
      const st = await stats();
      console.log(JSON.stringify({ drops: st.drops, queues: st.queues, device: st.device }));
    }
    expect(r.errors).toEqual([]);
    expect(r.corrupted).toBe(0);
    expect(r.ok).toBe(1000);
  }, 320_000);

  it('iperf3 through the VIP completes with the offloads on (GSO super-packets rewritten whole)', async () => {
    // The TUNNEL services beside it do not turn the offloads off (they cut GSO in software).
    const before = await stats();
    const up = labIperf(prefix, 3);
    const down = labIperf(prefix, 3, true);
    console.log(`iperf3 through the VIP: ${up.gbps.toFixed(2)} Gbit/s up, ${down.gbps.toFixed(2)} Gbit/s down`);
    expect(up.gbps).toBeGreaterThan(0.1);
    expect(down.gbps).toBeGreaterThan(0.1);
    const after = await stats();
    expect(after.counters!.gso_packets! - before.counters!.gso_packets!).toBeGreaterThan(100);
    expect(after.counters!.toa_skipped_gso).toBe(0);
    // What the engine cannot see is reported too: the device's counters and each queue's.
    expect(after.device!.tx_packets).toBeGreaterThan(0);
    expect(after.device).toHaveProperty('tx_dropped');
    const queues = (after as unknown as { queues: { rxPackets: number; writeDropped: number }[] }).queues;
    expect(queues.length).toBe(2);
    for (const q of queues) expect(q.rxPackets).toBeGreaterThan(0);
    // DR keeps the offloads: GSO super-packets go out through the packet socket whole.
    const beforeDr = await stats();
    const gso = beforeDr.counters!.gso_packets!;
    expect(await uploads(LAB.drVip4, LAB.tunnelPort, 4)).toBe('4');
    const last = await stats();
    expect(last.counters!.gso_packets! - gso).toBeGreaterThan(0);
    // (the MAC test before it dropped a few while rs1 was unresolved)
    expect((last.drops!.dr_no_neighbour ?? 0) - (beforeDr.drops!.dr_no_neighbour ?? 0)).toBe(0);
    // TUNNEL cuts the super-packets into segments itself, each in the tunnel (nat/gso.ts).
    expect(await uploads(LAB.vip4, LAB.tunnelPort, 4)).toBe('4');
    const tunnelled = await stats();
    expect(tunnelled.counters!.gso_packets! - last.counters!.gso_packets!).toBeGreaterThan(0);
    expect(tunnelled.drops!.tunnel_no_room ?? 0).toBe(0);
    expect(labCurl(prefix, 4, 2, 'tunnel')).toMatch(/saw client 198\.18\.100\.10/);
    // The servers' decapsulator runs as generic XDP on their veths (rs/decap.ts): the peer
    // (the bridge's port) keeps TCP segmentation, so what the LB sends them stays whole.
    const rs1 = JSON.parse(
      execFileSync('ip', ['-n', nsName(prefix, 'rs1'), '-j', '-d', 'link', 'show', 'dev', 'eth0'], {
        encoding: 'utf8',
      }),
    ) as { xdp?: { mode?: number } }[];
    expect(rs1[0]!.xdp?.mode).toBe(2); // XDP_ATTACHED_SKB
    const peer = execFileSync('ip', ['netns', 'exec', nsName(prefix, 'sw'), 'ethtool', '-k', 'rs10'], {
      encoding: 'utf8',
    });
    expect(peer).toMatch(/^tcp-segmentation-offload: on/m);
  }, 60_000);

  describe('held back past the FIN timeouts (three at once: each waits out its hold)', () => {
    // Each case has the switch hold a server's segments back for HOLD_MS, in a table and on a
    // port of its own, so the three share that wait; no_session is counted over all three.
    const size = { dr: 1 << 20, fullnat: 8 << 10 };
    let held: HeldOutcome<{ ok: number; corrupted: number; seconds: number; errors: string[] }>;
    beforeAll(async () => {
      held = await heldTransfers(
        [
          // DR: only the client's packets pass the LB, so after its FIN the LB sees the
          // server's data in the client's acks alone (nat/modes/client_side.ts
          // clientOnlyState). The server sends 1 MiB once the client has half-closed; the
          // switch lets about 100 kB of it through, then drops the server's data segments.
          // After that its retransmission (cwnd 1: it needs the client's acks to go on) must
          // find the session, 8 s past FIN_WAIT's 7 s.
          {
            base: 'dr-v4',
            vip: LAB.drVip4,
            port: 9001,
            onEnd: `s.end(Buffer.alloc(${size.dr}, 7))`,
            hold: 'quota over 100 kbytes drop',
          },
          // FULLNAT: the client sends its request and FIN; the server answers 8 kB, then its
          // FIN 100 ms later, as a segment of its own. The switch drops the server's data but
          // lets the bare FIN through: the LB sees both FINs while the data is still to come,
          // and the client's duplicate ACK (its ack cannot cover the FIN yet). LAST_ACK must
          // keep the session until each FIN is acknowledged (nat/session.ts finsAcked), not
          // turn to TIME_WAIT's 7 s on that ACK.
          {
            base: 'tunnel-v4',
            mode: 'fullnat',
            vip: LAB.vip4,
            port: 9002,
            onEnd: `s.write(Buffer.alloc(${size.fullnat}, 7)); setTimeout(() => s.end(), 100)`,
            hold: 'drop',
          },
        ],
        // The half-closed echo: the echo client sends 64 KiB and its FIN at once; the real
        // servers' data segments are dropped in the switch, between them and the LB (their
        // ACKs pass): the first retransmission of the echo that gets through reaches the LB
        // ~20 s after the client's FIN (backoff, at most 10 s in the lab). Its session must
        // still be there (nat/session.ts restartTimeout).
        async () => {
          const release = holdInSwitch('tvhold-echo', LAB.echoPort, 'drop');
          try {
            const echo = runInNs(nsName(prefix, 'client'), [
              process.execPath,
              join(distSrc(), 'lab', 'echo_check.js'),
              LAB.vip4,
              String(LAB.echoPort),
              '1',
              String(64 << 10),
              '60',
            ]);
            await new Promise((done) => setTimeout(done, HOLD_MS));
            release();
            return JSON.parse((await echo).out) as { ok: number; corrupted: number; seconds: number; errors: string[] };
          } finally {
            release();
          }
        },
      );
    }, 220_000);

    it("a half-closed connection whose server's data is held back past FIN_WAIT's 7 s still completes", () => {
      const r = held.other;
      console.log(`half-closed echo held back 15 s: ${r.ok}/1 ok after ${r.seconds.toFixed(1)} s`);
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(1);
      expect(r.corrupted).toBe(0);
      expect(held.noSession).toBe(0);
    });

    it("DR: a download after the client's shutdown(SHUT_WR) that stalls for 15 s still completes", () => {
      const r = held.results[0]!;
      console.log(
        `DR download held back 15 s after 100 kB: ${r.n} of ${size.dr} bytes, ${r.error ?? `${r.seconds} s`}`,
      );
      expect(r).toMatchObject({ n: size.dr });
      expect(held.noSession).toBe(0);
    });

    it("FULLNAT: both FINs seen, the server's data lost for 15 s: the session waits in LAST_ACK", () => {
      const r = held.results[1]!;
      console.log(
        `FULLNAT answer held back 15 s behind its FIN: ${r.n} of ${size.fullnat} bytes, ${r.error ?? `${r.seconds} s`}`,
      );
      expect(r).toMatchObject({ n: size.fullnat });
      expect(held.noSession).toBe(0);
    });
  });

  it('health checks (HTTP with a body match, TCP) take a stopped real server out and back in', async () => {
    await reloadWith((y) =>
      y
        .replace(
          /(  - name: web-v4\n(?:    .*\n)*?    scheduler: \w+\n)/,
          `$1    healthCheck: { type: http, path: /, expectBody: "saw client", interval: 1, timeout: 1, rise: 2, fall: 2 }\n`,
        )
        .replace(
          /(  - name: echo-v4\n(?:    .*\n)*?    scheduler: \w+\n)/,
          `$1    healthCheck: { type: tcp, interval: 1, timeout: 1, rise: 2, fall: 2 }\n`,
        ),
    );
    expect(await list()).not.toContain('DOWN');
    const rs3 = state.procs.find((p) => p.name === 'rs3')!;
    process.kill(rs3.pid, 'SIGTERM');
    const down3 =
      /198\.18\.20\.23:8080 .* DOWN \(HTTP: ECONNREFUSED\)[\s\S]*198\.18\.20\.23:9000 .* DOWN \(connect: ECONNREFUSED\)/;
    await waitFor(down3, true);
    const seen = counts(labCurl(prefix, 4, 30));
    expect(seen.has('rs3')).toBe(false);
    expect(seen.get('rs1')! + seen.get('rs2')!).toBe(30);
    // rs3 back (under the reader, like the lab's own): after `rise` passes it gets traffic again.
    labSpawn(
      prefix,
      'rs3',
      'rs3',
      [
        process.execPath,
        join(distSrc(), 'lab', 'demo_server.js'),
        '--name',
        'rs3',
        '--port',
        '8080',
        '--echo-port',
        '9000',
      ],
      true,
    );
    await waitFor(/DOWN/, false);
    expect(counts(labCurl(prefix, 4, 30)).get('rs3')).toBeGreaterThan(0);
    const log = readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8');
    expect(log).toContain('health: web-v4 198.18.20.23:8080 is DOWN');
    expect(log).toContain('health: web-v4 198.18.20.23:8080 is UP');
  }, 60_000);

  it("an exec check (keepalived's MISC_CHECK) with dynamicWeight: the weights it sets are what the scheduler uses", async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rs3 = LAB.realServers[2].v4;
    // rs3 gets weight 0 (exit 2) and the others 3 (exit 5), from the address in its arguments.
    const script = join(state.dir, 'weigh.sh');
    writeFileSync(script, `#!/bin/sh\n[ "$1" = "${rs3}" ] && exit 2\nexit 5\n`, { mode: 0o755 });
    try {
      // Whatever check web-v4 has (a block's lines are indented 4+), then this one.
      await reloadWith((y) =>
        y
          .replace(/(  - name: web-v4\n(?:    .*\n)*?)    healthCheck: .*\n/, '$1')
          .replace(
            /(  - name: web-v4\n(?:    .*\n)*?    scheduler: \w+\n)/,
            `$1    healthCheck: { type: exec, command: [${script}, "{address}"], dynamicWeight: true, interval: 1, timeout: 1, rise: 1, fall: 1 }\n`,
          ),
      );
      expect(readFileSync(file, 'utf8')).toContain('type: exec');
      let text = '';
      for (let i = 0; i < 50 && !/weight from check[\s\S]*weight from check[\s\S]*weight from check/.test(text); i++) {
        await new Promise((r) => setTimeout(r, 100));
        text = await list();
      }
      expect(text).toMatch(
        new RegExp(`${rs3.replace(/\./g, '\\.')}:8080 +FullNat 0 .*weight from check \\(config \\d+\\)`),
      );
      expect(text).toMatch(/198\.18\.20\.21:8080 +FullNat 3 .*weight from check \(config \d+\)/);
      expect(text).not.toContain('DOWN');
      const seen = counts(labCurl(prefix, 4, 30));
      expect(seen.has('rs3')).toBe(false);
      expect(seen.get('rs1')! + seen.get('rs2')!).toBe(30);
    } finally {
      await reloadWith(() => good);
    }
  }, 60_000);

  it("a sorry server (keepalived's sorry_server) takes the new connections while every real server fails its check", async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rs3 = LAB.realServers[2].v4;
    const flag = join(state.dir, 'servers-down');
    const check = join(state.dir, 'servers-check.sh');
    writeFileSync(check, `#!/bin/sh\n[ -e ${flag} ] && exit 1\nexit 0\n`, { mode: 0o755 });
    // quorumUp / quorumDown (keepalived's quorum_up / quorum_down) note each event.
    const note = join(state.dir, 'quorum-note.sh');
    const events = join(state.dir, 'quorum-events');
    writeFileSync(note, `#!/bin/sh\necho "$TUNVS_EVENT $1" >> ${events}\n`, { mode: 0o755 });
    const noted = async (n: number): Promise<string[]> => {
      for (let i = 0; i < 50 && !(existsSync(events) && readFileSync(events, 'utf8').split('\n').length > n); i++)
        await new Promise((r) => setTimeout(r, 100));
      return existsSync(events)
        ? readFileSync(events, 'utf8')
            .split('\n')
            .filter((l) => l !== '')
        : [];
    };
    const vip = `${LAB.vip4}:${LAB.vport}`;
    const sorryLine = (inUse: boolean): RegExp =>
      new RegExp(
        `${rs3.replace(/\./g, '\\.')}:8080 +FullNat ${inUse ? 1 : 0} .*sorry server${inUse ? ' \\(in use' : '$'}`,
        'm',
      );
    try {
      // web-v4 on rs1 and rs2, checked by a command; rs3 its sorry server.
      await reloadWith((y) =>
        y
          .replace(/(  - name: web-v4\n(?:    .*\n)*?)    healthCheck: .*\n/, '$1')
          .replace(
            new RegExp(`(  - name: web-v4\\n(?:    .*\\n)*?)      - \\{ address: "${rs3}", port: 8080.*\\n`),
            '$1',
          )
          .replace(
            /(  - name: web-v4\n(?:    .*\n)*?    scheduler: \w+\n)/,
            `$1    healthCheck: { type: exec, command: [${check}], interval: 1, timeout: 1, rise: 1, fall: 1 }\n` +
              `    sorryServer: { address: "${rs3}", port: 8080 }\n` +
              `    quorumUp: [${note}, "{address}:{port}"]\n    quorumDown: [${note}, "{address}:{port}"]\n`,
          ),
      );
      expect(readFileSync(file, 'utf8')).toContain('sorryServer');
      await waitFor(sorryLine(false), true);
      let seen = counts(labCurl(prefix, 4, 20));
      expect(seen.has('rs3')).toBe(false);
      // Every real server fails: the service has lost its quorum, and rs3 takes all.
      writeFileSync(flag, '');
      await waitFor(sorryLine(true), true);
      seen = counts(labCurl(prefix, 4, 20));
      expect([...seen.keys()]).toEqual(['rs3']);
      expect(await list()).toMatch(new RegExp(`${vip.replace(/\./g, '\\.')} \\w+ quorum lost$`, 'm'));
      expect(await noted(1)).toEqual([`quorum-down ${vip}`]);
      // They pass again: rs3 stands by once more.
      rmSync(flag);
      await waitFor(sorryLine(false), true);
      seen = counts(labCurl(prefix, 4, 20));
      expect(seen.has('rs3')).toBe(false);
      expect(await noted(2)).toEqual([`quorum-down ${vip}`, `quorum-up ${vip}`]);
      const log = readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8');
      expect(log).toMatch(/health: web-v4 lost its quorum \(weights up 0 < 1\): new sessions to the sorry server/);
      expect(log).toContain('health: web-v4 has its quorum again');
    } finally {
      rmSync(flag, { force: true });
      rmSync(events, { force: true });
      await reloadWith(() => good);
    }
  }, 60_000);

  it('UDP services (v4, v6) through the TUN, checked by a udp health check: a server that stops answering its checks is taken out', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rs3 = LAB.realServers[2].v4;
    const rs3Ns = nsName(prefix, 'rs3');
    const unblock = (): void => void spawnSync('ip', ['netns', 'exec', rs3Ns, 'nft', 'delete table inet tvudp']);
    // The VIPs' port 9053 (the servers' 9000): the UDP sessions this leaves until their
    // timeout are not among the TCP echo service's, which later tests count.
    const vport = 9053;
    // 30 datagrams, each from a socket of its own (a UDP session each): who answered. Each
    // call from 30 source ports of its own, below the ephemeral range: a port an earlier call
    // used still has its session (to the server it went to, DOWN or not) until the UDP timeout.
    let calls = 0;
    const ask = async (v6 = false): Promise<Map<string, number>> => {
      const base = 21000 + 100 * calls++;
      const script = `const dgram = require('dgram'); const seen = []; let left = 30;
         for (let i = 0; i < 30; i++) {
           const s = dgram.createSocket('${v6 ? 'udp6' : 'udp4'}');
           const t = setTimeout(() => { seen.push('none'); s.close(); if (--left === 0) done(); }, 2000);
           s.on('message', (m) => { clearTimeout(t); const a = m.toString(); seen.push(a.endsWith(' q' + i) ? a.split(' ')[0] : 'bad'); s.close(); if (--left === 0) done(); });
           s.bind(${base} + i, () => s.send('q' + i, ${vport}, '${v6 ? LAB.vip6 : LAB.vip4}'));
         }
         function done() { console.log(seen.join('\\n')); }`;
      return counts((await runInNs(nsName(prefix, 'client'), [process.execPath, '-e', script])).out);
    };
    try {
      // udp-v4 and udp-v6 beside the TCP services, on their local addresses.
      await reloadWith((y) => {
        const udp = (v: 'v4' | 'v6', vip: string): string => {
          const laddrs = new RegExp(`  - name: web-${v}\\n(?:    .*\\n)*?    localAddresses: (\\[.*\\])\\n`).exec(
            y,
          )![1]!;
          const servers = LAB.realServers
            .map((r) => `      - { address: "${r[v]}", port: ${LAB.echoPort} }`)
            .join('\n');
          return (
            `  - name: udp-${v}\n    protocol: udp\n    vip: "${vip}"\n    port: ${vport}\n    scheduler: rr\n` +
            `    localAddresses: ${laddrs}\n` +
            `    healthCheck: { type: udp, payload: "70696e67", expectReply: "", interval: 1, timeout: 1, rise: 1, fall: 1 }\n` +
            `    realServers:\n${servers}\n`
          );
        };
        return y.replace('  - name: echo-v4\n', `${udp('v4', LAB.vip4)}${udp('v6', LAB.vip6)}  - name: echo-v4\n`);
      });
      expect(readFileSync(file, 'utf8')).toContain('name: udp-v4');
      await waitFor(/UDP  198\.18\.0\.100:9053 rr/, true);
      let seen = await ask();
      expect(seen.get('none') ?? 0).toBe(0);
      expect(seen.get('bad') ?? 0).toBe(0);
      expect(['rs1', 'rs2', 'rs3'].every((r) => (seen.get(r) ?? 0) > 0)).toBe(true);
      // tunvs conns tells the VIP's UDP flows from its TCP sessions (ipvsadm -Lnc lists both).
      const protocols = (p: string): string[] =>
        (
          JSON.parse(conns(['--protocol', p, '--vip', LAB.vip4, '--json'])) as { protocol: string; vport: number }[]
        ).map((c) => `${c.protocol}:${c.vport === vport ? 'udp-service' : 'other'}`);
      const udpRows = protocols('udp');
      expect(udpRows.length).toBeGreaterThanOrEqual(30);
      expect(new Set(udpRows)).toEqual(new Set(['udp:udp-service']));
      expect(protocols('tcp').every((c) => c === 'tcp:other')).toBe(true);
      seen = await ask(true);
      expect([seen.get('none') ?? 0, seen.get('bad') ?? 0]).toEqual([0, 0]);
      expect(['rs1', 'rs2', 'rs3'].every((r) => (seen.get(r) ?? 0) > 0)).toBe(true);
      // rs3 no longer answers the checks (from lb-a's own address; the sessions come from the
      // local addresses): DOWN, and the datagrams go to the others.
      inNs(rs3Ns, [
        'nft',
        'add table inet tvudp; add chain inet tvudp in { type filter hook input priority 0; }; ' +
          `add rule inet tvudp in ip saddr ${LAB.lbA.rs4} udp dport ${LAB.echoPort} drop`,
      ]);
      await waitFor(new RegExp(`${rs3.replace(/\./g, '\\.')}:9000 .* DOWN \\(no reply within 1 s\\)`), true);
      seen = await ask();
      expect(seen.has('rs3')).toBe(false);
      expect((seen.get('rs1') ?? 0) + (seen.get('rs2') ?? 0)).toBe(30);
      unblock();
      await waitFor(/DOWN/, false);
    } finally {
      unblock();
      await reloadWith(() => good);
    }
  }, 60_000);

  it('resetOnDown: a real server failing its checks has its sessions ended with RSTs to both sides; the others go on', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rs3 = LAB.realServers[2].v4;
    const rs3Ns = nsName(prefix, 'rs3');
    // The checks come from lb-a's own address on the servers' side, the sessions from the
    // local addresses: dropping the first at rs3 fails its checks and leaves its sessions be.
    const unblock = (): void => void spawnSync('ip', ['netns', 'exec', rs3Ns, 'nft', 'delete table inet tvhc']);
    try {
      // Whatever check echo-v4 has (a block's lines are indented 4+), then this one.
      await reloadWith((y) =>
        y
          .replace(/(  - name: echo-v4\n(?:    .*\n)*?)    healthCheck: .*\n/, '$1')
          .replace(
            /(  - name: echo-v4\n(?:    .*\n)*?    scheduler: \w+\n)/,
            `$1    healthCheck: { type: tcp, interval: 1, timeout: 1, rise: 2, fall: 2, resetOnDown: true }\n`,
          ),
      );
      expect(readFileSync(file, 'utf8')).toContain('resetOnDown: true');
      const b0 = await stats();
      // 12 connections (rr: 4 on each server), each echoing a byte every 10 ms for 8 s: when
      // the checks fail, bytes are in flight, so some first RSTs carry a sequence number an end
      // has moved past; it answers with a challenge ACK (RFC 5961), and the session, kept in
      // CLOSE, answers that with the exact RST (nat/rst.ts answerReset).
      const clients = runInNs(nsName(prefix, 'client'), [
        process.execPath,
        '-e',
        `const net = require('net'); const out = [];
         for (let i = 0; i < 12; i++) {
           const r = { port: 0, echoed: 0, error: null, at: 0 }; out.push(r);
           const s = net.connect(${LAB.echoPort}, '${LAB.vip4}', () => { r.port = s.localPort; });
           const t = setInterval(() => s.write('x'), 10);
           s.on('data', (d) => { r.echoed += d.length; });
           s.on('error', (e) => { r.error = e.code; r.at = Date.now(); clearInterval(t); });
           s.on('close', () => clearInterval(t));
         }
         setTimeout(() => { console.log(JSON.stringify(out)); process.exit(0); }, 8000);`,
      ]);
      await new Promise((r) => setTimeout(r, 1500));
      const onRs3 = (
        JSON.parse(conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--server', rs3, '--json'])) as { cport: number }[]
      ).map((c) => c.cport);
      expect(onRs3.length).toBeGreaterThanOrEqual(3);
      const serverSide = (): number =>
        inNs(rs3Ns, ['ss', '-Htn', 'state', 'established', `( sport = :${LAB.echoPort} )`])
          .split('\n')
          .filter((l) => l.trim() !== '').length;
      expect(serverSide()).toBe(onRs3.length);
      const blockedAt = Date.now();
      inNs(rs3Ns, [
        'nft',
        'add table inet tvhc; add chain inet tvhc in { type filter hook input priority 0; }; ' +
          `add rule inet tvhc in ip saddr ${LAB.lbA.rs4} tcp dport ${LAB.echoPort} drop`,
      ]);
      // What the LB holds of rs3's connections 4.5 s after the block (the resets come ~2.5 s
      // after it; the clients run ~6 s more): printed below if one of them is not reset. And
      // the client's kernel: a socket an RST ended is gone (no TIME_WAIT, nothing), whatever
      // its application was told; the others are still established.
      await new Promise((r) => setTimeout(r, 4500));
      const midway = conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--json']);
      const clientSockets = new Map(
        inNs(nsName(prefix, 'client'), ['ss', '-Htan', `( dst ${LAB.vip4} and dport = :${LAB.echoPort} )`])
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => {
            const f = l.trim().split(/\s+/);
            return [Number(/:(\d+)$/.exec(f[3]!)![1]), f[0]!] as const;
          }),
      );
      const out = JSON.parse((await clients).out) as {
        port: number;
        echoed: number;
        error: string | null;
        at: number;
      }[];
      const reset = out.filter((r) => r.error !== null);
      const b1 = await stats();
      console.log(
        `resetOnDown: ${reset.length} of ${out.length} connections reset ` +
          `${reset.map((r) => r.at - blockedAt).join(', ')} ms after rs3's checks began to fail; ` +
          `${out.length - reset.length} echoing to the end; ` +
          `${(b1.drops!.session_reset ?? 0) - (b0.drops!.session_reset ?? 0)} late packets answered with an exact RST`,
      );
      const missed = onRs3.filter((p) => clientSockets.has(p));
      if (missed.length > 0) {
        // For whoever reads a failure: the client's view of the connections not reset, and what
        // the LB held for them midway (a session still ESTABLISHED on rs3 under another server
        // id; one in CLOSE whose RSTs the client never took; none: removed without an RST).
        const held = JSON.parse(midway) as { cport: number; state: string; rip: string; realServerId: number }[];
        console.log(
          `not reset: ${JSON.stringify(out.filter((r) => missed.includes(r.port)))}; the LB held midway: ` +
            `${JSON.stringify(held.filter((h) => missed.includes(h.cport)))}; rs3's sessions midway: ` +
            JSON.stringify(held.filter((h) => h.rip === rs3).map((h) => [h.cport, h.state, h.realServerId])),
        );
      }
      // rs3's connections are gone from the client; every other one is established.
      expect(onRs3.filter((p) => clientSockets.has(p))).toEqual([]);
      expect(out.filter((r) => !onRs3.includes(r.port)).map((r) => clientSockets.get(r.port))).toEqual(
        Array<string>(out.length - onRs3.length).fill('ESTAB'),
      );
      // What node told the application: ECONNRESET, for rs3's connections only. Not always for
      // each of them: twice in 15 runs under CPU load (none in 19 quiet ones), a socket its
      // kernel had reset (on the wire as the others: the exact RST after the client's challenge
      // ACK) was closed without node's 'error' event; the kernel's view above is what counts.
      for (const r of reset) expect([r.port, r.error]).toEqual([r.port, 'ECONNRESET']);
      expect(reset.every((r) => onRs3.includes(r.port))).toBe(true);
      for (const r of out.filter((x) => x.error === null)) expect(r.echoed).toBeGreaterThan(300);
      expect(serverSide()).toBe(0); // rs3's sockets got their RST too
      expect(b1.counters!.rst_sent! - b0.counters!.rst_sent!).toBeGreaterThanOrEqual(2 * onRs3.length);
      // The count includes closed sessions of earlier tests still in the table (no RST for those).
      const logged = new RegExp(`health: echo-v4 ${rs3}:${LAB.echoPort}: (\\d+) sessions ended with RSTs`).exec(
        readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8'),
      );
      expect(Number(logged?.[1])).toBeGreaterThanOrEqual(onRs3.length);
    } finally {
      unblock();
      writeFileSync(file, good);
      await reloadWith((y) => y);
    }
  }, 60_000);

  it("a real server's session cap (maxConns, ipvsadm -x) holds through the TUN: the others take the rest", async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rs1 = LAB.realServers[0].v4;
    try {
      // rs1 of echo-v4 capped at 4 (the LB's count, over both workers); rr would give it a
      // third of 30.
      await reloadWith((y) =>
        y.replace(
          /(  - name: echo-v4\n(?:    .*\n)*?      - \{ address: "198\.18\.20\.21", port: 9000, weight: 1)( \})/,
          '$1, maxConns: 4$2',
        ),
      );
      expect(readFileSync(file, 'utf8')).toContain('port: 9000, weight: 1, maxConns: 4 }');
      const s = runStreams(state, 30, 4);
      await s.ready;
      const onRs1 = (
        JSON.parse(conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--server', rs1, '--json'])) as unknown[]
      ).length;
      const all = (
        JSON.parse(conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--state', 'ESTABLISHED', '--json'])) as unknown[]
      ).length;
      const r = await s.done;
      console.log(`session cap 4 on rs1: ${onRs1} sessions on rs1 (any state), ${all} established in all`);
      // Read, not reserved (as in IPVS): the two workers deciding at the same instant may
      // each add one.
      expect(onRs1).toBeGreaterThanOrEqual(4);
      expect(onRs1).toBeLessThanOrEqual(5);
      expect(all).toBeGreaterThanOrEqual(30);
      expect(r.ok).toBe(30);
      expect(r.corruptedBytes).toBe(0);
    } finally {
      writeFileSync(file, good);
      await reloadWith((y) => y);
    }
  }, 60_000);

  it('/metrics parses as Prometheus text and its counters match tunvs stats', async () => {
    const scrape = (): Record<
      string,
      { name: string; type: string; metrics: { value: string; labels?: Record<string, string> }[] }
    > => {
      const text = inNs(nsName(prefix, 'lb-a'), [
        process.execPath,
        join(distSrc(), 'lab', 'http_get.js'),
        'http://127.0.0.1:9100/metrics',
      ]);
      return Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    };
    // A datagram to a port of the VIP that no service has: a no_service drop for both to count.
    await runInNs(nsName(prefix, 'client'), [
      process.execPath,
      '-e',
      `const s = require('dgram').createSocket('udp4'); s.send('x', 81, '${LAB.vip4}', () => s.close());`,
    ]);
    // No traffic between the two reads: the same numbers.
    await new Promise((r) => setTimeout(r, 300));
    const m = scrape();
    const st = await stats();
    const one = (name: string): number => Number(m[name]!.metrics[0]!.value);
    expect(m.tunvs_rx_packets_total!.type).toBe('COUNTER');
    expect(one('tunvs_rx_packets_total')).toBe(st.counters!.rx_packets);
    expect(one('tunvs_sessions_created_total')).toBe(st.counters!.sessions_created);
    expect(one('tunvs_toa_inserted_total')).toBe(st.counters!.toa_inserted);
    const drops = Object.fromEntries(m.tunvs_drops_total!.metrics.map((x) => [x.labels!.reason!, Number(x.value)]));
    for (const [reason, v] of Object.entries(st.drops!)) expect(drops[reason], reason).toBe(v);
    expect(drops.no_service).toBeGreaterThan(0);
    const list = (await adminRequest(state.adminSocket, { cmd: 'list', stats: true })) as unknown as {
      services: {
        name: string;
        realServers: { address: string; port: number; conns: number; activeConns: number; health?: string }[];
      }[];
    };
    const created = m.tunvs_real_server_sessions_created_total!.metrics;
    for (const s of list.services) {
      for (const r of s.realServers) {
        const server = r.address.includes(':') ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`;
        const got = created.find((x) => x.labels!.service === s.name && x.labels!.server === server);
        expect(Number(got?.value), `${s.name} ${server}`).toBe(r.conns);
      }
    }
    expect(m.tunvs_real_server_up!.type).toBe('GAUGE');
    // The stats figures that are levels, as gauges without _total.
    for (const g of ['synproxy_auto_on', 'fragments_pending', 'fragment_bytes_held']) {
      expect(m[`tunvs_${g}`]!.type, g).toBe('GAUGE');
      expect(one(`tunvs_${g}`), g).toBe(st.counters![g]);
      expect(m[`tunvs_${g}_total`], g).toBeUndefined();
    }
    expect(m.tunvs_table_capacity!.metrics.length).toBe(2); // one per worker
    // The forwarders' queues and the TUN device, as `tunvs stats` has them.
    const queues = (st as unknown as { queues: { rxPackets: number; writeDropped: number }[] }).queues;
    expect(m.tunvs_forwarder_up!.metrics.map((x) => [x.labels!.worker, x.value])).toEqual([
      ['0', '1'],
      ['1', '1'],
    ]);
    const rx = m.tunvs_queue_packets_total!.metrics.filter((x) => x.labels!.direction === 'rx');
    expect(rx.length).toBe(2);
    for (const x of rx) {
      expect(Number(x.value)).toBeGreaterThan(0);
      expect(Number(x.value)).toBeLessThanOrEqual(queues[Number(x.labels!.worker)]!.rxPackets);
    }
    // Memory: each forwarder's heap, and the process's (prom-client's defaults), as tunvs stats.
    const memory = (st as unknown as { memory: { rssBytes: number; forwarderHeapBytes: number[] } }).memory;
    expect(memory.forwarderHeapBytes.length).toBe(2);
    for (const x of m.tunvs_forwarder_heap_bytes!.metrics) expect(Number(x.value)).toBeGreaterThan(1 << 20);
    expect(m.tunvs_forwarder_heap_bytes!.metrics.length).toBe(2);
    const rss = one('process_resident_memory_bytes');
    expect(rss).toBeGreaterThan(memory.forwarderHeapBytes[0]!);
    expect(Math.abs(rss - memory.rssBytes) / memory.rssBytes).toBeLessThan(0.5);
    expect(m.nodejs_eventloop_lag_seconds!.type).toBe('GAUGE');
    // tunvs stats --gc: every thread collected first, so the heaps are what is live.
    const live = (
      (await adminRequest(state.adminSocket, { cmd: 'stats', gc: true })) as unknown as {
        memory: { gc: boolean; mainHeapBytes: number; forwarderHeapBytes: number[] };
      }
    ).memory;
    expect(live.gc).toBe(true);
    expect(live.forwarderHeapBytes.every((b) => b > 1 << 20)).toBe(true);
    expect(m.tunvs_queue_write_dropped_total!.metrics.length).toBe(2);
    expect(m.tunvs_queue_errors_total!.metrics.length).toBe(6); // read, write, link per worker
    const toTunvs = m.tunvs_device_packets_total!.metrics.find((x) => x.labels!.direction === 'tx')!;
    expect(Number(toTunvs.value)).toBeGreaterThan(0);
    expect(Number(toTunvs.value)).toBeLessThanOrEqual(st.device!.tx_packets!);
    expect(m.tunvs_device_dropped_total!.type).toBe('COUNTER');
    // The AF_XDP figures read 0 on the TUN path (not prom-client's default increment of 1).
    for (const x of m.tunvs_queue_rx_dropped_total!.metrics) expect(x.value).toBe('0');
    // The main thread held (here: the process stopped 600 ms): counted, logged (the first stall
    // always is), exported. Stopped is neither on a CPU nor waiting for one (the probe's own
    // thread is stopped too: no samples).
    type MainThread = { stalls: number; longestMs: number; last?: { ms: number; cpuMs: number; waitMs: number } };
    const mainThread = async (): Promise<MainThread> =>
      ((await adminRequest(state.adminSocket, { cmd: 'stats' })) as unknown as { mainThread: MainThread }).mainThread;
    // The main thread (its TID is the PID) runs at the forwarders' priority (workerNice -10):
    // under a full load they would otherwise leave it a tenth of each CPU.
    const niceOf = (tid: string): number =>
      Number(readFileSync(`/proc/${tunvsPid()}/task/${tid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
    expect(niceOf(String(tunvsPid()))).toBe(-10);
    const tids = readdirSync(`/proc/${tunvsPid()}/task`);
    expect(tids.filter((t) => niceOf(t) === -10).length).toBeGreaterThanOrEqual(3); // + 2 forwarders
    const before = (await mainThread()).stalls;
    process.kill(tunvsPid(), 'SIGSTOP');
    await new Promise((r) => setTimeout(r, 600));
    process.kill(tunvsPid(), 'SIGCONT');
    await new Promise((r) => setTimeout(r, 300));
    const held = await mainThread();
    expect(held.stalls).toBeGreaterThan(before);
    expect(held.longestMs).toBeGreaterThanOrEqual(500);
    expect(held.last!.ms).toBeGreaterThanOrEqual(500);
    expect(held.last!.ms - held.last!.cpuMs - held.last!.waitMs).toBeGreaterThanOrEqual(400);
    expect(await logged('the main thread was held')).toBe(true);
    const after = scrape();
    expect(Number(after.tunvs_main_thread_stalls_total!.metrics[0]!.value)).toBeGreaterThanOrEqual(held.stalls);
    expect(Number(after.tunvs_main_thread_stall_longest_seconds!.metrics[0]!.value)).toBeGreaterThanOrEqual(0.5);
  });

  it('runtime edits: weights shift traffic, drain keeps existing connections, a new service serves, bad edits are refused', async () => {
    // Weights need wrr (the file the wrr test above reloads has it already: run alone, this one must).
    await reloadWith((y) => y.replace(/scheduler: rr\b/g, 'scheduler: wrr'));
    const sock = state.adminSocket;
    const cli = (args: string[]): { code: number; out: string; err: string } => {
      const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', sock], {
        encoding: 'utf8',
      });
      return { code: r.status ?? 1, out: r.stdout, err: r.stderr };
    };
    for (const [addr, w] of [
      ['198.18.20.21:8080', '3'],
      ['198.18.20.22:8080', '1'],
      ['198.18.20.23:8080', '1'],
    ] as const) {
      expect(cli(['server', 'weight', 'web-v4', addr, w]).code).toBe(0);
    }
    const seen = counts(labCurl(prefix, 4, 3000));
    for (const [rs, want] of Object.entries({ rs1: 1800, rs2: 600, rs3: 600 })) {
      expect(Math.abs((seen.get(rs) ?? 0) - want) / want, `${rs}: ${seen.get(rs)} of 3000`).toBeLessThan(0.05);
    }

    // Drain rs1 of the echo service under 30 long-lived streams.
    const created = async (service: string, addr: string): Promise<number> => {
      const r = (await adminRequest(sock, { cmd: 'list', stats: true })) as unknown as {
        services: { name: string; realServers: { address: string; port: number; conns: number }[] }[];
      };
      const rs = r.services.find((x) => x.name === service)!.realServers;
      return rs.find((x) => `${x.address}:${x.port}` === addr)!.conns;
    };
    const streams = streamsInBackground(30, 8);
    await new Promise((r) => setTimeout(r, 2000));
    expect(cli(['server', 'drain', 'echo-v4', '198.18.20.21:9000']).code).toBe(0);
    const before = await created('echo-v4', '198.18.20.21:9000');
    const more = labEcho(prefix, 30, 1024, 30);
    expect(more.ok).toBe(30);
    expect(await created('echo-v4', '198.18.20.21:9000'), 'a drained server gets no new sessions').toBe(before);

    // A new service, added while those streams run.
    const add = cli([
      'service',
      'add',
      'web2-v4',
      '--vip',
      LAB.vip4,
      '--port',
      '8087',
      '--laddr',
      LAB.laddrs4[0],
      '--laddr',
      LAB.laddrs4[1],
      '--server',
      '198.18.20.21:8080',
      '--server',
      '198.18.20.22:8080,weight=2',
      '--persistent',
      '60',
      '--netmask',
      '255.255.255.0',
      '--idle-timeout',
      '1800',
    ]);
    expect(add.code, add.err).toBe(0);
    // Listed as ipvsadm lists a persistent service (and DPVS's a conn-timeout).
    expect(cli(['list', '-n']).out).toContain(
      `TCP  ${LAB.vip4}:8087 wrr persistent 60 mask 255.255.255.0 conn-timeout 1800\n`,
    );
    const body = inNs(nsName(prefix, 'client'), [
      process.execPath,
      join(distSrc(), 'lab', 'http_get.js'),
      `http://${LAB.vip4}:8087/`,
      '3',
    ]);
    expect(body).toMatch(/^rs[12] saw client/);
    // A third server with a session cap (ipvsadm -x): listed with it; a cap of 0 is refused.
    const capped = cli(['server', 'add', 'web2-v4', '198.18.20.23:8080', '--max-conns', '400']);
    expect(capped.code, capped.err).toBe(0);
    expect(cli(['list', '-n']).out).toMatch(/-> 198\.18\.20\.23:8080 +FullNat 1 +\d+ +\d+ +cap 400\/300\n/);
    expect(cli(['server', 'add', 'web2-v4', '198.18.20.23:8081', '--max-conns', '0']).err).toMatch(
      /realServers\[3\]\.maxConns: 0 is not a session count/,
    );
    const r = JSON.parse((await streams).trim()) as { ok: number; reset: number; bytesLost: number };
    expect(r.ok, 'existing sessions are untouched by the edits').toBe(30);
    expect(r.reset + r.bytesLost).toBe(0);

    const bad = cli(['server', 'weight', 'web-v4', '198.18.20.21:8080', '70000']);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/service web-v4\.realServers\[0\]\.weight: 70000 is not a weight/);
    const badPort = cli(['service', 'add', 'bad', '--vip', LAB.vip4, '--port', '99999', '--laddr', LAB.laddrs4[0]]);
    expect(badPort.err).toMatch(/service\.port: 99999 is not a port/);
    const sloppy = cli([
      'service',
      'add',
      'bad',
      '--vip',
      LAB.vip4,
      '--port',
      '8099',
      '--laddr',
      LAB.laddrs4[0],
      '--sloppy',
    ]);
    expect(sloppy.err).toMatch(/service\.sloppy: sloppy TCP: a FULLNAT connection has a local port/);
    const mask = ['service', 'add', 'bad', '--vip', LAB.vip4, '--port', '8099', '--laddr', LAB.laddrs4[0]];
    expect(cli([...mask, '--persistent', '--netmask', '255.0.255.0']).err).toMatch(
      /service\.persistence\.netmask: "255\.0\.255\.0" is not a netmask/,
    );
    expect(cli([...mask, '--netmask', '24']).err).toMatch(
      /--netmask, --prefix6 and --persistence-group go with --persistent/,
    );
    expect(cli([...mask, '--idle-timeout', '0']).err).toMatch(
      /service\.idleTimeout: 0 is not valid: use whole seconds 1\.\.86400/,
    );
    expect(cli(['server', 'weight', 'nope', '198.18.20.21:8080', '1']).err).toContain('no service named "nope"');
    expect(counts(labCurl(prefix, 4, 30)).size).toBe(3); // still serving, as before
    expect(cli(['service', 'delete', 'web2-v4']).code).toBe(0);
  }, 120_000);

  it('LVS services imported (tunvs import ipvsadm, keepalived), merged into the config and reloaded: they serve, v4 and v6, checked', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const good = readFileSync(file, 'utf8');
    const rules = [
      '-A -t 198.18.0.100:8090 -s rr',
      '-a -t 198.18.0.100:8090 -r 198.18.20.21:8080 -b -w 1',
      '-a -t 198.18.0.100:8090 -r 198.18.20.22:8080 -b -w 1',
      `-A -t [${LAB.vip6}]:8090 -s rr`,
      `-a -t [${LAB.vip6}]:8090 -r [${LAB.realServers[0].v6}]:8080 -b -w 1`,
      `-a -t [${LAB.vip6}]:8090 -r [${LAB.realServers[1].v6}]:8080 -b -w 1`,
    ].join('\n');
    const imported = spawnSync(
      process.execPath,
      [join(distSrc(), 'cli', 'main.js'), 'import', 'ipvsadm', '--laddr', LAB.laddrs4[0], '--laddr', LAB.laddrs6[0]],
      { input: rules, encoding: 'utf8' },
    );
    expect(imported.status, imported.stderr).toBe(0);
    // A keepalived.conf (DPVS's FULLNAT keywords) with an HTTP check on the servers.
    const keepalived = join(state.dir, 'import-keepalived.conf');
    writeFileSync(
      keepalived,
      `local_address_group lg { ${LAB.laddrs4.join('\n')} }
virtual_server ${LAB.vip4} 8091 {
  delay_loop 1
  connect_timeout 1
  lb_algo rr
  lb_kind FNAT
  protocol TCP
  laddr_group_name lg
${['198.18.20.21', '198.18.20.22']
  .map(
    (a) =>
      `  real_server ${a} 8080 {\n    HTTP_GET {\n      url {\n        path /\n        status_code 200\n      }\n    }\n  }`,
  )
  .join('\n')}
}
`,
    );
    const fromKeepalived = spawnSync(
      process.execPath,
      [join(distSrc(), 'cli', 'main.js'), 'import', 'keepalived', keepalived],
      { encoding: 'utf8' },
    );
    expect(fromKeepalived.status, fromKeepalived.stderr).toBe(0);
    try {
      const config = parseYaml(good) as { services: unknown[] };
      for (const out of [imported.stdout, fromKeepalived.stdout])
        config.services.push(...(parseYaml(out) as { services: unknown[] }).services);
      writeFileSync(file, stringifyYaml(config));
      await reloadWith((y) => y);
      const health = async (): Promise<string[]> => {
        const r = (await adminRequest(state.adminSocket, { cmd: 'list' })) as unknown as {
          services: { name: string; realServers: { health?: string }[] }[];
        };
        return r.services.find((s) => s.name === `tcp-${LAB.vip4}-8091`)!.realServers.map((x) => x.health ?? '-');
      };
      expect(await health()).toEqual(['up', 'up']);
      for (const url of [`http://${LAB.vip4}:8090/`, `http://[${LAB.vip6}]:8090/`, `http://${LAB.vip4}:8091/`]) {
        const seen = counts(
          inNs(nsName(prefix, 'client'), [process.execPath, join(distSrc(), 'lab', 'http_get.js'), url, '6']),
        );
        expect([...seen.keys()].sort(), url).toEqual(['rs1', 'rs2']);
      }
    } finally {
      writeFileSync(file, good);
      await reloadWith((y) => y);
    }
  }, 60_000);

  it("'tunvs service delete' under load: the service's connections run to their end, byte-checked", async () => {
    const run = (args: string[]): number =>
      spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', state.adminSocket]).status ??
      1;
    const servers = ['198.18.20.21:9000', '198.18.20.22:9000'].flatMap((s) => ['--server', s]);
    const laddrs = LAB.laddrs4.flatMap((a) => ['--laddr', a]);
    expect(run(['service', 'add', 'echo2-v4', '--vip', LAB.vip4, '--port', '8088', ...laddrs, ...servers])).toBe(0);
    const streams = streamsInBackground(20, 8, 8088);
    await new Promise((r) => setTimeout(r, 2000));
    // The VIP and local addresses stay in use by the lab's other services: routes stay.
    expect(run(['service', 'delete', 'echo2-v4'])).toBe(0);
    const out = (await streams).trim();
    const r = JSON.parse(out) as { ok: number; reset: number; bytesLost: number; corruptedBytes: number };
    expect(r.ok, `the deleted service's connections go on: ${out}`).toBe(20);
    expect(r.reset + r.bytesLost + r.corruptedBytes).toBe(0);
  }, 60_000);

  it('removing a service withdraws the routes of its VIP and local addresses at once (others stay)', () => {
    const lbA = nsName(prefix, 'lb-a');
    const routes = (): string =>
      execFileSync('ip', ['-n', lbA, 'route'], { encoding: 'utf8' }) +
      execFileSync('ip', ['-n', lbA, '-6', 'route'], { encoding: 'utf8' });
    const cli = (args: string[]): number =>
      spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', state.adminSocket]).status ??
      1;
    const add = ['service', 'add', 'tmp', '--vip', '198.18.0.199', '--port', '80', '--laddr', '198.18.2.199'];
    expect(cli([...add, '--laddr', LAB.laddrs4[0]])).toBe(0);
    expect(routes()).toContain('198.18.0.199 dev tunvs0');
    expect(routes()).toContain('198.18.2.199 dev tunvs0');
    expect(cli(['service', 'delete', 'tmp'])).toBe(0);
    const after = routes();
    expect(after).not.toContain('198.18.0.199');
    expect(after).not.toContain('198.18.2.199');
    // The local address tmp shared with the lab's services, and theirs, stay routed.
    for (const a of [LAB.vip4, LAB.vip6, ...LAB.laddrs4, ...LAB.laddrs6]) expect(after).toContain(`${a} dev tunvs0`);
    expect(labCurl(prefix, 4, 3)).toMatch(/saw client 198\.18\.100\.10/); // still serving
  });

  it("an all-ports service (port 0, ipvsadm -t VIP:0 -p): each connection on its own port, a client's on one server, v4 and v6", async () => {
    const cli = tunvsCli;
    const vips = { 4: '198.18.0.102', 6: 'fd18:18::102' } as const;
    const client = nsName(prefix, 'client');
    try {
      for (const v of [4, 6] as const) {
        const servers = LAB.realServers.slice(0, 2).flatMap((r) => ['--server', hostPort(r[`v${v}`], 0)]);
        const laddrs = (v === 4 ? LAB.laddrs4 : LAB.laddrs6).flatMap((a) => ['--laddr', a]);
        const add = cli([
          'service',
          'add',
          `all-v${v}`,
          '--vip',
          vips[v],
          '--port',
          '0',
          '--persistent',
          '60',
          ...laddrs,
          ...servers,
        ]);
        expect(add.code, add.err).toBe(0);
      }
      const list = String((await adminRequest(state.adminSocket, { cmd: 'list' })).text);
      expect(list).toMatch(/TCP\s+198\.18\.0\.102:0 wrr persistent 60/);
      expect(list).toMatch(/-> 198\.18\.20\.21:0\s+FullNat/);
      for (const v of [4, 6] as const) {
        const url = (port: number) => `http://${hostPort(vips[v], port)}/`;
        // The demo server on 8080: six connections, one server (persistence), the client seen (TOA).
        const body = inNs(client, [process.execPath, join(distSrc(), 'lab', 'http_get.js'), url(LAB.rsPort), '6']);
        expect([...counts(body).values()], body).toEqual([6]);
        expect(body).toContain(`saw client ${v === 4 ? LAB.client4 : LAB.client6}`);
      }
      // The echo servers on 9000, through the same service: byte-checked.
      const out = (
        await runInNs(client, [
          process.execPath,
          join(distSrc(), 'lab', 'stream_check.js'),
          vips[4],
          String(LAB.echoPort),
          '10',
          '3',
        ])
      ).out.trim();
      const r = JSON.parse(out) as { ok: number; reset: number; bytesLost: number; corruptedBytes: number };
      expect(r.ok, out).toBe(10);
      expect(r.reset + r.bytesLost + r.corruptedBytes).toBe(0);
    } finally {
      for (const v of [4, 6]) cli(['service', 'delete', `all-v${v}`]);
    }
  }, 60_000);

  it("a persistence group (LVS's persistent firewall-mark service): a client's connections to both services go to one server", () => {
    const cli = tunvsCli;
    const vip = '198.18.0.103';
    const client = nsName(prefix, 'client');
    // Two services on one VIP, rr over the three servers listed in opposite orders: alone,
    // each would send the client's first connection to its first server.
    const servers = (order: readonly { v4: string }[]) => order.flatMap((r) => ['--server', `${r.v4}:${LAB.rsPort}`]);
    const laddrs = LAB.laddrs4.flatMap((a) => ['--laddr', a]);
    const add = (name: string, port: number, order: readonly { v4: string }[], group: string[]) =>
      cli([
        'service',
        'add',
        name,
        '--vip',
        vip,
        '--port',
        String(port),
        '--scheduler',
        'rr',
        ...laddrs,
        ...servers(order),
        '--persistent',
        '60',
        ...group,
      ]);
    const get = (port: number): string[] => [
      ...counts(
        inNs(client, [process.execPath, join(distSrc(), 'lab', 'http_get.js'), `http://${vip}:${port}/`, '3']),
      ).keys(),
    ];
    try {
      for (const [grouped, base] of [
        [false, 8180],
        [true, 8190],
      ] as const) {
        const group = grouped ? ['--persistence-group', `shop-${base}`] : [];
        for (const [port, order] of [
          [base, LAB.realServers],
          [base + 1, [...LAB.realServers].reverse()],
        ] as const) {
          const r = add(`shop-${port}`, port, order, group);
          expect(r.code, r.err).toBe(0);
        }
        const first = get(base);
        const second = get(base + 1);
        expect(first.length, 'one server per service (persistence)').toBe(1);
        expect(second.length).toBe(1);
        if (grouped) expect(second).toEqual(first);
        else expect(second).not.toEqual(first);
      }
    } finally {
      for (const port of [8180, 8181, 8190, 8191]) cli(['service', 'delete', `shop-${port}`]);
    }
  }, 60_000);

  it('one-packet scheduling (ipvsadm -o): 30 queries from one UDP socket go round all three servers, each answered, no session left, v4 and v6', async () => {
    const vips = { 4: '198.18.0.104', 6: 'fd18:18::104' } as const;
    const vport = 9054;
    try {
      for (const v of [4, 6] as const) {
        const add = tunvsCli([
          'service',
          'add',
          `ops-v${v}`,
          '--protocol',
          'udp',
          '--vip',
          vips[v],
          '--port',
          String(vport),
          '--scheduler',
          'rr',
          '--ops',
          ...(v === 4 ? LAB.laddrs4 : LAB.laddrs6).flatMap((a) => ['--laddr', a]),
          ...LAB.realServers.flatMap((r) => ['--server', hostPort(r[`v${v}`], LAB.echoPort)]),
        ]);
        expect(add.code, add.err).toBe(0);
      }
      const list = String((await adminRequest(state.adminSocket, { cmd: 'list' })).text);
      expect(list).toMatch(/UDP\s+198\.18\.0\.104:9054 rr ops/);
      for (const v of [4, 6] as const) {
        // One socket, one query every 5 ms; who answered each (the echo servers prefix their name).
        const script = `const s = require('dgram').createSocket('udp${v}'); const seen = new Map();
          s.on('message', (m) => { const [who, q] = m.toString().split(' '); seen.set(q, who);
            if (seen.size === 30) done(); });
          const t = setTimeout(done, 3000);
          function done() { clearTimeout(t); s.close();
            console.log(Array.from({ length: 30 }, (_, i) => seen.get('q' + i) ?? 'none').join('\\n')); }
          let i = 0; const tick = setInterval(() => { s.send('q' + i, ${vport}, '${vips[v]}'); if (++i === 30) clearInterval(tick); }, 5);`;
        const out = (await runInNs(nsName(prefix, 'client'), [process.execPath, '-e', script])).out;
        const seen = counts(out);
        expect(seen.get('none') ?? 0, out).toBe(0);
        // rr: ten each (a server a health check took out would show; the lab's are up).
        expect([seen.get('rs1'), seen.get('rs2'), seen.get('rs3')], out).toEqual([10, 10, 10]);
        // Each answer ended its query's session: none of the service's is left.
        const left = JSON.parse(conns(['--protocol', 'udp', '--vip', hostPort(vips[v], vport), '--json'])) as unknown[];
        expect(left).toEqual([]);
      }
    } finally {
      for (const v of [4, 6]) tunvsCli(['service', 'delete', `ops-v${v}`]);
    }
  }, 60_000);

  it('fragmented UDP datagrams (3,000 and 20,000 bytes) through the VIP both ways, v4 and v6: reassembled, rewritten, fragmented again, every answer whole', async () => {
    try {
      expect(addFragmentServices(state.adminSocket)).toBe('');
      const before = await stats();
      for (const v of [4, 6] as const) expect(await fragmentedQueries(prefix, v)).toEqual({ whole: 20, bad: [] });
      const after = await stats();
      const grew = (k: string): number => after.counters![k]! - before.counters![k]!;
      // Each query and answer made whole once (where it was handled: a datagram another worker
      // owns is handed over as its fragments), and written in fragments again.
      expect(grew('fragments_reassembled')).toBe(2 * FRAGMENT_DATAGRAMS);
      expect(grew('fragments_sent')).toBe(2 * FRAGMENTS_WRITTEN);
      for (const k of ['ipv4_fragment', 'ipv6_fragment', 'fragment_timeout', 'fragment_table_full', 'fragment_no_room'])
        expect(after.drops![k]! - before.drops![k]!, k).toBe(0);
      // Every datagram came whole: nothing is held (the gauges).
      expect([after.counters!.fragments_pending, after.counters!.fragment_bytes_held]).toEqual([0, 0]);
    } finally {
      deleteFragmentServices(state.adminSocket);
    }
  }, 60_000);

  it.each([
    ['GRE (--tun-type gre, v4 with its checksum)', 'gre', 'tunnel gre csum'],
    [
      `GUE (--tun-type gue --tun-port ${LAB.guePort}, v4 without the UDP checksum)`,
      'gue',
      `tunnel gue port ${LAB.guePort}`,
    ],
  ] as const)(
    "TUNNEL over %s: echoes through the servers' XDP decapsulator come back whole, v4 and v6",
    async (_what, type, listed) => {
      // The DR VIPs are on the servers' lo already (lab/modes.ts); their port 9000 is free.
      const vips = { 4: LAB.drVip4, 6: LAB.drVip6 } as const;
      const name = (v: 4 | 6): string => `${type}-v${v}`;
      // GUE: what leaves LB A toward the servers, for tshark to judge the UDP checksums (the
      // servers' own captures would see the packets already taken apart by generic XDP).
      const cap =
        type === 'gue'
          ? await startCapture(
              nsName(prefix, 'lb-a'),
              'eth1',
              join(state.dir, 'gue.pcap'),
              `udp dst port ${LAB.guePort}`,
            )
          : undefined;
      try {
        for (const v of [4, 6] as const) {
          const add = tunvsCli([
            'service',
            'add',
            name(v),
            '--vip',
            vips[v],
            '--port',
            String(LAB.echoPort),
            '--mode',
            'tunnel',
            '--tun-type',
            type,
            ...(type === 'gue' ? ['--tun-port', String(LAB.guePort)] : v === 4 ? ['--tun-csum'] : []),
            '--scheduler',
            'rr',
            '--laddr',
            (v === 4 ? LAB.laddrs4 : LAB.laddrs6)[0],
            ...LAB.realServers.flatMap((r) => ['--server', hostPort(r[`v${v}`], LAB.echoPort)]),
          ]);
          expect(add.code, add.err).toBe(0);
        }
        const list = String((await adminRequest(state.adminSocket, { cmd: 'list' })).text);
        expect(list).toMatch(new RegExp(`TCP  ${LAB.drVip4.replace(/\./g, '\\.')}:${LAB.echoPort} rr ${listed}\n`));
        // Six connections in turn (rr: two to each server), 200 KiB each way: larger segments
        // than the tunnel takes at first, so the client learns its MTU from the LB's ICMP.
        for (const v of [4, 6] as const) expect(await echoesInTurn(vips[v], 6), `${type} v${v}`).toBe(6);
      } finally {
        if (cap) await stopCapture(cap);
        for (const v of [4, 6] as const) tunvsCli(['service', 'delete', name(v)]);
      }
      if (cap) {
        // Every v6 datagram carries a checksum tshark finds good, every v4 one none; the source
        // ports follow the flows (12 connections: more than one port, each in the dynamic range).
        const seen = readUdpCapture(cap.file);
        const v6 = seen.filter((u) => u.v6);
        const v4 = seen.filter((u) => !u.v6);
        expect(v4.length).toBeGreaterThan(100);
        expect(v6.length).toBeGreaterThan(100);
        expect(v6.filter((u) => u.checksumStatus !== 'good')).toEqual([]);
        expect(v4.filter((u) => u.checksum !== 0)).toEqual([]);
        expect(seen.filter((u) => u.sport < 49152)).toEqual([]);
        expect(new Set(v4.map((u) => u.sport)).size).toBeGreaterThan(1);
        expect(new Set(v6.map((u) => u.sport)).size).toBeGreaterThan(1);
      }
    },
    90_000,
  );

  it("TUNNEL, a path to a real server narrower than the TUN device: LB A's kernel says so, tunvs learns it and tells the clients; echoes come back whole, v4 and v6", async () => {
    // rs1 only, IP-in-IP; LB A's routes to rs1 take 1400 bytes. Without tunvs learning it, a
    // client's full-sized segments (1500 with the outer header) would vanish at that route.
    const vips = { 4: LAB.drVip4, 6: LAB.drVip6 } as const;
    const rs1 = LAB.realServers[0];
    const lbA = nsName(prefix, 'lb-a');
    const before = await stats();
    try {
      ipBatch([`route add ${rs1.v4}/32 dev eth1 mtu lock 1400`, `route add ${rs1.v6}/128 dev eth1 mtu 1400`], lbA);
      for (const v of [4, 6] as const) {
        const add = tunvsCli([
          'service',
          'add',
          `pmtu-v${v}`,
          '--vip',
          vips[v],
          '--port',
          String(LAB.echoPort),
          '--mode',
          'tunnel',
          '--laddr',
          (v === 4 ? LAB.laddrs4 : LAB.laddrs6)[0],
          '--server',
          hostPort(rs1[`v${v}`], LAB.echoPort),
        ]);
        expect(add.code, add.err).toBe(0);
      }
      for (const v of [4, 6] as const) expect(await echoesInTurn(vips[v], 3), `v${v}`).toBe(3);
      // tunvs list shows what it learned after the server (and after rs1 in the lab's other
      // IP-in-IP services from the same tunnel source: the same path).
      const list = String((await adminRequest(state.adminSocket, { cmd: 'list' })).text).split('\n');
      for (const v of [4, 6] as const) {
        const at = list.findIndex((l) => l.startsWith(`TCP  ${hostPort(vips[v], LAB.echoPort)} `));
        expect(at, list.join('\n')).toBeGreaterThan(0);
        expect(list[at + 1]).toMatch(/ Tunnel .* path mtu 1400$/);
      }
    } finally {
      for (const v of [4, 6]) tunvsCli(['service', 'delete', `pmtu-v${v}`]);
      ipBatch([`route del ${rs1.v4}/32 dev eth1`, `route del ${rs1.v6}/128 dev eth1`], lbA);
    }
    const after = await stats();
    // Learned once per family (the kernel's later errors name the same MTU: nothing lowered).
    expect(after.counters!.tunnel_mtu_learned! - before.counters!.tunnel_mtu_learned!).toBe(2);
    expect(after.drops!.tunnel_too_big! - before.drops!.tunnel_too_big!).toBeGreaterThan(0);
  }, 90_000);

  it('the admin socket refuses other users; the TCP listener refuses a missing or wrong token', () => {
    const main = join(distSrc(), 'cli', 'main.js');
    const asNobody = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        main,
        'list',
        '--admin',
        state.adminSocket,
      ],
      { encoding: 'utf8' },
    );
    expect(asNobody.status).toBe(1);
    expect(asNobody.stderr).toContain('permission denied');
    const tcp = (extra: string[]): { status: number | null; stdout: string; stderr: string } =>
      spawnSync(
        'ip',
        [
          'netns',
          'exec',
          nsName(prefix, 'lb-a'),
          process.execPath,
          main,
          'list',
          '--admin',
          'tcp://127.0.0.1:9201',
          ...extra,
        ],
        { encoding: 'utf8' },
      );
    const good = tcp(['--token', LAB_ADMIN_TOKEN]);
    expect(good.status, good.stderr).toBe(0);
    expect(good.stdout).toContain('198.18.0.100:80');
    expect(tcp([]).stderr).toContain('admin token missing or wrong');
    expect(tcp(['--token', 'not-the-token-at-all']).stderr).toContain('admin token missing or wrong');
  });

  it('the admin socket names every command it has when asked for another', async () => {
    await expect(adminRequest(state.adminSocket, { cmd: 'bogus' })).rejects.toThrow(
      'unknown command "bogus": use list, stats, conns, role, ha, ready, edit, reload, cluster-forget',
    );
  });

  it('tunvs conns lists sessions like ipvsadm -Lnc, filtered by VIP, server and state', async () => {
    const streams = streamsInBackground(12, 4);
    await new Promise((r) => setTimeout(r, 1500));
    const all = JSON.parse(conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--state', 'established', '--json'])) as {
      client: string;
      laddr: string;
      rip: string;
      state: string;
    }[];
    expect(all.length).toBeGreaterThanOrEqual(12);
    for (const c of all) {
      expect(c.client).toBe(LAB.client4);
      expect(LAB.laddrs4).toContain(c.laddr);
      expect(c.state).toBe('ESTABLISHED');
    }
    const one = JSON.parse(conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--server', '198.18.20.22', '--json'])) as {
      rip: string;
    }[];
    for (const c of one) expect(c.rip).toBe('198.18.20.22');
    const text = conns(['--vip', `${LAB.vip4}:${LAB.echoPort}`, '--limit', '3']);
    expect(text.split('\n')[0]).toMatch(/^pro\s+expire\s+state\s+source\s+virtual\s+local\s+destination$/);
    expect(text).toContain('(more than 3');
    await streams;
  });

  it.each(['fullnat', 'nat', 'tunnel', 'dr'] as const)(
    'persistence (%s): one client keeps its real server across connections, shown as a template by tunvs conns',
    async (mode) => {
      const port = MODE_PORTS[mode];
      const file = join(state.dir, 'lb-a.yaml');
      const good = readFileSync(file, 'utf8');
      try {
        // The service of that mode, made persistent: block style for FULLNAT, flow style for the others.
        await reloadWith((y) =>
          mode === 'fullnat'
            ? y.replace('  - name: web-v4\n', '  - name: web-v4\n    persistence: { timeoutSec: 30, netmask: 24 }\n')
            : y.replace(`name: ${mode}-v4,`, `name: ${mode}-v4, persistence: { timeoutSec: 30 },`),
        );
        const seen = counts(labCurl(prefix, 4, 20, mode));
        expect(seen.size, `${mode}: ${[...seen.entries()].join(' ')}`).toBe(1);
        const rows = JSON.parse(conns(['--vip', `${modeVip(mode, 4)}:${port}`, '--state', 'template', '--json'])) as {
          client: string;
          cport: number;
          rip: string;
          state: string;
          sessions: number;
        }[];
        expect(rows).toHaveLength(1);
        expect(rows[0]).toMatchObject({
          client: mode === 'fullnat' ? '198.18.100.0' : LAB.client4,
          cport: 0,
          state: 'TEMPLATE',
        });
        expect(`rs${rows[0]!.rip.split('.')[3]!.slice(1)}`).toBe([...seen.keys()][0]);
      } finally {
        writeFileSync(file, good);
        await reloadWith((y) => y);
      }
    },
  );

  it('tunvs list --rate shows per-second rates; tunvs stats the table load per worker', async () => {
    const load = spawn(
      'ip',
      [
        'netns',
        'exec',
        nsName(prefix, 'client'),
        process.execPath,
        join(distSrc(), 'lab', 'http_get.js'),
        `http://${LAB.vip4}/`,
        '100000',
      ],
      { stdio: 'ignore' },
    );
    try {
      await new Promise((r) => setTimeout(r, 4500)); // two rate samples with traffic between
      const main = join(distSrc(), 'cli', 'main.js');
      const rows = JSON.parse(
        execFileSync(process.execPath, [main, 'list', '--rate', '--json', '--admin', state.adminSocket], {
          encoding: 'utf8',
        }),
      ) as { name: string; realServers: { rate: { conns: number; inPackets: number } }[] }[];
      const web = rows.find((r) => r.name === 'web-v4')!;
      const cps = web.realServers.reduce((n, r) => n + r.rate.conns, 0);
      expect(cps).toBeGreaterThan(10);
      expect(web.realServers.every((r) => r.rate.inPackets >= r.rate.conns)).toBe(true);
      const text = execFileSync(process.execPath, [main, 'list', '--rate', '--admin', state.adminSocket], {
        encoding: 'utf8',
      });
      expect(text).toContain('CPS       InPPS     OutPPS    InBPS        OutBPS');
    } finally {
      load.kill('SIGTERM'); // the load this test started, by its handle
    }
    const st = (await stats()) as unknown as {
      tables: { worker: number; sessions: number; capacity: number; load: number }[];
    };
    expect(st.tables.length).toBe(2);
    for (const t of st.tables) {
      expect(t.capacity).toBeGreaterThan(0);
      expect(t.load).toBeGreaterThanOrEqual(0);
      expect(t.load).toBeLessThanOrEqual(1);
    }
  });

  it('client ACLs hold for IPv4 and IPv6: deny and allow, counted', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const base = readFileSync(file, 'utf8');
    const withAcl = (v4: string, v6: string) => (y: string) =>
      y
        .replace(/(  - name: web-v4\n(?:    .*\n)*?    scheduler: \w+\n)/, `$1    acl: ${v4}\n`)
        .replace(/(  - name: web-v6\n(?:    .*\n)*?    scheduler: \w+\n)/, `$1    acl: ${v6}\n`);
    const fails = (family: 4 | 6): boolean => {
      try {
        labCurl(prefix, family, 1);
        return false;
      } catch {
        return true;
      }
    };
    const before = (await stats()).drops!.acl_denied!;
    // v4: the client is denied; v6: only a prefix the client is not in is allowed.
    await reloadWith(withAcl('{ deny: [198.18.100.10/32] }', '{ allow: ["fd18:18:200::/64"] }'));
    expect(fails(4)).toBe(true);
    expect(fails(6)).toBe(true);
    expect((await stats()).drops!.acl_denied! - before).toBeGreaterThanOrEqual(2);
    // Allowed by prefix (and a deny that does not cover it): served again.
    writeFileSync(file, base);
    await reloadWith(
      withAcl('{ allow: [198.18.100.0/24], deny: [198.18.100.99/32] }', '{ allow: ["fd18:18:100::/64"] }'),
    );
    expect(labCurl(prefix, 4, 2)).toMatch(/saw client 198\.18\.100\.10/);
    expect(labCurl(prefix, 6, 2)).toMatch(/saw client fd18:18:100::10/);
    writeFileSync(file, base);
    await reloadWith((y) => y);
  }, 60_000);

  it('the same from the command line: tunvs service add --deny / --allow / --max-new-per-sec', async () => {
    const run = (args: string[]): { code: number; err: string } => {
      const r = spawnSync(
        process.execPath,
        [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', state.adminSocket],
        {
          encoding: 'utf8',
        },
      );
      return { code: r.status ?? 1, err: r.stderr };
    };
    const add = (name: string, port: number, extra: string[]) =>
      run(['service', 'add', name, '--vip', LAB.vip4, '--port', String(port), '--laddr', LAB.laddrs4[0], ...extra]);
    const get = (port: number): string | null => {
      try {
        const url = `http://${LAB.vip4}:${port}/`;
        return inNs(nsName(prefix, 'client'), [process.execPath, join(distSrc(), 'lab', 'http_get.js'), url, '1']);
      } catch {
        return null;
      }
    };
    const server = ['--server', '198.18.20.21:8080'];
    try {
      const before = (await stats()).drops!.acl_denied!;
      expect(add('cli-deny', 8095, ['--deny', `${LAB.client4}/32`, ...server]).code).toBe(0);
      expect(get(8095)).toBeNull();
      expect((await stats()).drops!.acl_denied! - before).toBeGreaterThanOrEqual(1);
      const allow = ['--allow', '198.18.100.0/24', '--deny', '198.18.100.99/32', '--max-new-per-sec', '1000'];
      expect(add('cli-allow', 8096, [...allow, ...server]).code).toBe(0);
      expect(get(8096)).toMatch(/^rs1 saw client 198\.18\.100\.10/);
      const listed = spawnSync(
        process.execPath,
        [join(distSrc(), 'cli', 'main.js'), 'list', '--admin', state.adminSocket],
        {
          encoding: 'utf8',
        },
      ).stdout;
      expect(listed).toMatch(/:8096 \w+ allow 198\.18\.100\.0\/24 deny 198\.18\.100\.99\/32 rate 1000\n/);
      expect(add('cli-bad', 8097, ['--allow', '198.18.100.1/24', ...server]).err).toMatch(
        /service\.acl\.allow\[0\]: "198\.18\.100\.1\/24" is not an address or prefix/,
      );
      expect(add('cli-bad', 8097, ['--max-new-per-sec', '0', ...server]).err).toMatch(
        /service\.maxNewPerSec: 0 is not/,
      );
    } finally {
      for (const name of ['cli-deny', 'cli-allow']) run(['service', 'delete', name]);
    }
  }, 60_000);

  it('synProxy on: real client and server stacks complete proxied connections, v4 and v6, bytes checked', async () => {
    const file = join(state.dir, 'lb-a.yaml');
    const base = readFileSync(file, 'utf8');
    const before = (await stats()).counters!;
    await reloadWith((y) => y.replace(/(    scheduler: \w+\n)/g, '$1    synProxy: on\n'));
    try {
      // The real servers' application still sees the client: TOA rides in the proxy's ACK.
      expect(labCurl(prefix, 4, 20)).toMatch(/saw client 198\.18\.100\.10/);
      expect(labCurl(prefix, 6, 20)).toMatch(/saw client fd18:18:100::10/);
      // Bulk both ways: windows rescaled, SACK and timestamps translated, with the offloads on.
      const r = labEcho(prefix, 200, 1 << 20, 120);
      console.log(`synProxy echo: ${r.ok}/${r.connections} ok, ${r.corrupted} corrupted, ${r.seconds.toFixed(1)} s`);
      expect(r.errors).toEqual([]);
      expect(r.corrupted).toBe(0);
      expect(r.ok).toBe(200);
      const after = (await stats()).counters!;
      expect(after.synproxy_accepted! - before.synproxy_accepted!).toBeGreaterThanOrEqual(240);
      expect(after.synproxy_synacks! - before.synproxy_synacks!).toBeGreaterThanOrEqual(240);
    } finally {
      writeFileSync(file, base);
      await reloadWith((y) => y);
    }
  }, 180_000);

  it('a spoofed SYN flood: with the SYN proxy every legitimate request is served and no session is made', async () => {
    // Sources are hosts of 198.18.101.0/24, which the router sends back to the client
    // namespace; it owns none of them, so the SYN-ACKs die there (the lab's sink).
    const router = nsName(prefix, 'router');
    const client = nsName(prefix, 'client');
    // Below what saturates this 2-core VM on a slow day (15k/s did: the flood generator and
    // tunvs then overflow the TUN queue, and a legitimate SYN dropped there three times fails
    // whatever the proxy does; docs/synproxy.md has the 15k figures). The queue's drops are
    // printed.
    const RATE = 8_000;
    const SECONDS = 8;
    // A service of its own (port, local addresses, real server rs3), so what the flood leaves
    // behind (half-open sessions, rs3's SYN backlog) is not in the way of the tests after it.
    const PORT = 8086;
    execFileSync('ip', ['-n', router, 'route', 'replace', '198.18.101.0/24', 'via', LAB.client4]);
    const file = join(state.dir, 'lb-a.yaml');
    const base = readFileSync(file, 'utf8');
    const requests = `const http = require('http'); let ok = 0, failed = 0; const why = {};
      const one = () => new Promise((done) => {
        const req = http.get({ host: '${LAB.vip4}', port: ${PORT}, agent: false, timeout: 10000 }, (res) => {
          res.resume(); res.on('end', () => { ok++; done(); });
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', (e) => { failed++; why[e.code ?? e.message] = (why[e.code ?? e.message] ?? 0) + 1; done(); });
      });
      (async () => { const end = Date.now() + ${(SECONDS - 2) * 1000};
        // Three clients, so that a saturated machine, where a GET waits for a SYN
        // retransmission or two, still gives several samples.
        await Promise.all([0, 1, 2].map(async () => {
          while (Date.now() < end) { await one(); await new Promise((r) => setTimeout(r, 100)); }
        }));
        console.log(JSON.stringify({ ok, failed, why })); })();`;
    /** rs3's listener counters (its kernel's own SYN-flood handling). */
    const rs3Listen = (): Record<string, number> => {
      const out = execFileSync('ip', ['netns', 'exec', nsName(prefix, 'rs3'), 'nstat', '-asz'], { encoding: 'utf8' });
      const want = [
        'TcpExtListenOverflows',
        'TcpExtListenDrops',
        'TcpExtTCPReqQFullDrop',
        'TcpExtSyncookiesSent',
        'TcpExtTCPReqQFullDoCookies',
        'TcpRetransSegs',
      ];
      return Object.fromEntries(
        out
          .split('\n')
          .map((l) => l.trim().split(/\s+/))
          .filter((f) => want.includes(f[0]!))
          .map((f) => [f[0]!, Number(f[1])]),
      );
    };
    const cpuSeconds = (): number => {
      const t = processCpu(tunvsPid());
      return t.user + t.system;
    };
    const rows: string[] = [];
    const results: Record<string, { ok: number; failed: number; sessions: number }> = {};
    try {
      for (const mode of ['on', 'auto', 'off'] as const) {
        await reloadWith(
          (y) =>
            `${y}  - { name: flood-v4, vip: ${LAB.vip4}, port: ${PORT}, synProxy: ${mode}, localAddresses: [198.18.2.10, 198.18.2.11], realServers: [{ address: ${LAB.realServers[2].v4}, port: ${LAB.rsPort} }] }\n`,
        );
        const c0 = await stats();
        const rs0 = rs3Listen();
        const t0 = cpuSeconds();
        const flood = runInNs(client, [
          'python3',
          join(import.meta.dirname, 'syn_flood.py'),
          LAB.vip4,
          String(PORT),
          '198.18.101',
          String(RATE),
          String(SECONDS),
        ]);
        await new Promise((r) => setTimeout(r, 1000));
        const legit = runInNs(client, [process.execPath, '-e', requests]);
        const { ok, failed, why } = JSON.parse((await legit).out) as {
          ok: number;
          failed: number;
          why: Record<string, number>;
        };
        const during = await stats();
        const sent = Number((await flood).out);
        const t1 = cpuSeconds();
        // The flood service's sessions (the earlier tests' may still be in the table): listed
        // while they are few; past that, what the table gained (a listing of tens of thousands
        // takes longer than the admin socket waits).
        const own = (await adminRequest(
          state.adminSocket,
          { cmd: 'conns', filter: { vip: `${LAB.vip4}:${PORT}` }, limit: 2000 },
          10_000,
        )) as { sessions: unknown[]; more: boolean };
        const live = (st: typeof c0): number =>
          (st as unknown as { tables: { sessions: number }[] }).tables.reduce((n, t) => n + t.sessions, 0);
        const sessions = own.more ? live(during) - live(c0) : own.sessions.length;
        const grew = (k: string): number => during.counters![k]! - c0.counters![k]!;
        const queueDrops = (during.device?.tx_dropped ?? 0) - (c0.device?.tx_dropped ?? 0);
        results[mode] = { ok, failed, sessions };
        // How GETs failed (if any), what the LB dropped meanwhile, the proxy's SYN retries to
        // the server, and rs3's own SYN-flood handling (the flood reaches it while auto is off).
        const dropped = Object.entries(during.drops!)
          .map(([k, n]) => [k, n - (c0.drops![k] ?? 0)] as const)
          .filter(([, n]) => n > 0);
        const proxy = ['synproxy_syn_retries', 'synproxy_server_timeouts', 'synproxy_auto_switches'].map(
          (k) => `${k} ${grew(k)}`,
        );
        const rs1 = rs3Listen();
        const listen = Object.entries(rs1).map(([k, n]) => `${k} ${n - (rs0[k] ?? 0)}`);
        console.log(
          `synProxy ${mode}: failed GETs ${JSON.stringify(why)}; drops ${JSON.stringify(dropped)}; ${proxy.join(', ')}; rs3: ${listen.join(', ')}`,
        );
        rows.push(
          `| ${mode} | ${sent} | ${ok}/${ok + failed} (${((100 * ok) / (ok + failed)).toFixed(0)}%) | ${sessions} | ${sessions} | ${grew('synproxy_synacks')} | ${(((t1 - t0) / SECONDS) * 100).toFixed(0)}% | ${queueDrops} |`,
        );
        writeFileSync(file, base);
        await reloadWith((y) => y);
      }
    } finally {
      writeFileSync(file, base);
      await reloadWith((y) => y);
      execFileSync('ip', ['-n', router, 'route', 'del', '198.18.101.0/24']);
    }
    console.log(
      [
        `SYN flood ${RATE}/s for ${SECONDS} s from 198.18.101.0/24; legitimate GETs from 3 clients, each every 100 ms, 10 s timeout: three SYN tries (1 s, 3 s, 7 s), since the flood, the LB and the client share 2 cores and the TUN queue can drop a SYN whatever the proxy does`,
        '| synProxy | SYNs sent | legitimate GETs served | its sessions | local ports in use | cookie SYN-ACKs | tunvs CPU (of one core) | TUN queue drops |',
        '|---|---|---|---|---|---|---|---|',
        ...rows,
      ].join('\n'),
    );
    for (const mode of ['on', 'auto'] as const) {
      expect(results[mode]!.failed, `synProxy ${mode}`).toBe(0);
      // How many GETs fit in the window depends on the machine (a 2-core VM under the
      // flood answers in ~1 s: a SYN retransmission); that they were all served does not.
      expect(results[mode]!.ok).toBeGreaterThanOrEqual(3);
    }
    // With the proxy on, the flood made no session (a few legitimate ones may be open); auto
    // let the first few thousand through, per worker, before it switched on.
    const legitimate = results.on!.ok + results.on!.failed; // each leaves its session a while
    expect(results.on!.sessions - legitimate).toBeLessThan(100);
    expect(results.auto!.sessions).toBeLessThan(20_000);
    // Without it, every SYN made one.
    expect(results.off!.sessions).toBeGreaterThan(results.on!.sessions + 10_000);
  }, 180_000);

  describe('after a restart, new connections on local ports rs1 holds in TIME_WAIT go through', () => {
    interface Conns {
      connPerSec: number;
      errors: number;
      total: number;
      slowConnects: number;
    }
    const conns = (port: number, parallel: number, seconds: number): Conns =>
      JSON.parse(
        inNs(nsName(prefix, 'client'), [
          process.execPath,
          join(distSrc(), '..', 'bench', 'lab', 'client.js'),
          'conns',
          LAB.vip4,
          String(port),
          String(parallel),
          String(seconds),
        ]),
      ) as Conns;
    /**
     * Connections before and after a restart of tunvs, both runs error-free, and after it
     * (almost) none that waited for a SYN retransmission: a SYN the real server refuses on a
     * TIME_WAIT tuple costs its client a second, which is what these tests are about. (Not the
     * rate: a restarted process runs cold for its first second, and the VM is noisy.)
     */
    const acrossRestart = async (port: number, parallel: number, seconds: [number, number]): Promise<void> => {
      const before = conns(port, parallel, seconds[0]);
      expect(before.errors).toBe(0);
      await restartTunvs(prefix, 'lb-a');
      const after = conns(port, parallel, seconds[1]);
      expect(after.errors).toBe(0);
      const what = `before the restart ${before.connPerSec.toFixed(0)}/s, after ${after.connPerSec.toFixed(0)}/s`;
      expect(after.total, what).toBeGreaterThan(0);
      // The failure this guards against refused about half of them (PAWS, or ISNs behind).
      expect(after.slowConnects, `${what}: connects that took a SYN retransmission`).toBeLessThanOrEqual(
        Math.max(1, Math.floor(after.total / 100)),
      );
    };
    const rs1 = '{ address: 198.18.20.21, port: 8080 }';

    it('without timestamps: the ISN key is kept, so SYNs on reused tuples are ahead', async () => {
      // The real server takes a SYN on a TIME_WAIT tuple by its sequence number alone. 20
      // parallel loops outrun the port sweep (laddr.ts), so the restarted process reuses
      // tuples the previous one used seconds before.
      await reloadWith(
        (y) =>
          `${y}  - { name: restart-v4, vip: ${LAB.vip4}, port: 8082, stripTimestamps: true, localAddresses: [${LAB.laddrs4[0]}], realServers: [${rs1}] }\n`,
      );
      // With a new key about half of the SYNs were refused.
      await acrossRestart(8082, 20, [2, 2]);
    }, 60_000);

    it('with timestamps (random per connection): local ports continue from the port sweep', async () => {
      // PAWS would refuse about half the SYNs on a reused tuple whatever their ISN. One loop
      // stays below the sweep's pace over four local addresses (~4,300 ports/s with 2
      // workers), so the restarted process starts past every port the previous one used.
      // Addresses of its own: the test before ran ahead of the sweep on the lab's first one.
      const laddrs = ['198.18.2.3', '198.18.2.4', '198.18.2.5', '198.18.2.6'].join(', ');
      await reloadWith(
        (y) =>
          `${y}  - { name: restart-ts-v4, vip: ${LAB.vip4}, port: 8083, localAddresses: [${laddrs}], realServers: [${rs1}] }\n`,
      );
      // Starting at the first port again (the old behaviour) gave ~3 connections/s here.
      await acrossRestart(8083, 1, [3, 2]);
    }, 60_000);

    it('two clients on tuples the real server holds in TIME_WAIT: translated timestamps are never refused (PAWS)', async () => {
      // Two client addresses (their Linux timestamp offsets differ) connect in turn; 20 loops
      // outrun the port sweep, so after the restart local ports are reused for the other
      // client while rs1 still holds them in TIME_WAIT. Untranslated, the second client's
      // timestamps are behind the first's about half the time: rs1 answers its SYN with
      // the old connection's ACK, and the client connects only after a retransmission (1 s).
      const client = nsName(prefix, 'client');
      const dev = execFileSync('ip', ['-n', client, '-o', '-4', 'addr', 'show', 'to', LAB.client4], {
        encoding: 'utf8',
      }).split(/\s+/)[1]!;
      execFileSync('ip', ['-n', client, 'addr', 'add', '198.18.100.11/24', 'dev', dev]);
      const loops = (port: number, seconds: number): { total: number; slow: number; errors: number } =>
        JSON.parse(
          inNs(client, [
            process.execPath,
            '-e',
            `const net = require('net'); let total = 0, slow = 0, errors = 0; const end = Date.now() + ${seconds * 1000};
            const one = (localAddress) => new Promise((done) => { const t0 = Date.now();
              const s = net.connect({ host: '${LAB.vip4}', port: ${port}, localAddress });
              s.on('connect', () => { if (Date.now() - t0 > 800) slow++; s.write('GET / HTTP/1.0\\r\\n\\r\\n'); });
              s.on('data', () => {}); s.on('end', () => { total++; s.destroy(); done(); });
              s.on('error', () => { errors++; s.destroy(); done(); }); s.setTimeout(5000, () => s.destroy(new Error('t')));
            });
            Promise.all(Array.from({ length: 20 }, async (_, i) => { while (Date.now() < end) await one(i % 2 ? '${LAB.client4}' : '198.18.100.11'); }))
              .then(() => console.log(JSON.stringify({ total, slow, errors })));`,
          ]),
        ) as { total: number; slow: number; errors: number };
      try {
        const result: Record<string, { total: number; slow: number; errors: number }> = {};
        for (const [name, port, laddr, translate] of [
          ['translated', 8084, '198.18.2.7', true],
          ['as sent', 8085, '198.18.2.8', false],
        ] as const) {
          await reloadWith(
            (y) =>
              `${y}  - { name: paws-${port}, vip: ${LAB.vip4}, port: ${port}, translateTimestamps: ${translate}, localAddresses: [${laddr}], realServers: [${rs1}] }\n`,
          );
          loops(port, 2);
          await restartTunvs(prefix, 'lb-a');
          result[name] = loops(port, 3);
        }
        console.log(
          `tuples reused across two clients after a restart: translated ${JSON.stringify(result.translated)}, as sent ${JSON.stringify(result['as sent'])} (slow: connected only after a SYN retransmission)`,
        );
        expect(result.translated!.errors).toBe(0);
        expect(result.translated!.slow).toBe(0);
        // The control: without translation some connections usually need a SYN retransmission
        // (PAWS). Whether they do depends on the timing of the two clients' clocks, so a run
        // where none did is reported rather than failed; the assertions above are the test.
        if (result['as sent']!.slow === 0)
          console.log('control: untranslated timestamps were not refused this run (timing); nothing to compare');
      } finally {
        execFileSync('ip', ['-n', client, 'addr', 'del', '198.18.100.11/24', 'dev', dev]);
      }
    }, 90_000);
  });

  it("DR with sloppy TCP (mh): tunvs restarted in the middle of a download; the client's next acks make its session again", async () => {
    // (Near the end: it restarts tunvs, and with it the counters earlier tests look at.)
    // A lone LB (no HA) loses its sessions when it restarts. In DR only the client's packets
    // pass it, and a sloppy service makes a session from a mid-connection ACK, to the server
    // mh picks from the client address: the one the connection's SYN went to.
    const port = 9002;
    const size = 24 << 20;
    const file = join(state.dir, 'lb-a.yaml');
    // Each real server sends `size` bytes of a pattern, paced over ~6 s, once asked.
    const serve = `require('net').createServer((s) => { s.once('data', () => { let sent = 0;
      const t = setInterval(() => { const n = Math.min(${size} - sent, 128 << 10); const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) b[i] = (sent + i) % 251; sent += n; s.write(b);
        if (sent >= ${size}) { clearInterval(t); s.end(); } }, 30); }); s.on('error', () => {}); }).listen(${port}, '0.0.0.0');`;
    const servers = LAB.realServers.map((_, i) =>
      spawn('ip', ['netns', 'exec', nsName(prefix, `rs${i + 1}`), process.execPath, '-e', serve], { stdio: 'ignore' }),
    );
    const copy = {
      base: 'dr-v4',
      name: 'sloppy-dr-v4',
      port,
      servers: LAB.realServers.map((r) => r.v4),
      // Any scheduler: earlier tests may have changed it.
      edit: (line: string) => line.replace(/scheduler: \w+/, 'scheduler: mh, sloppy: true'),
    };
    try {
      await withServiceCopies([copy], async () => {
        expect(readFileSync(file, 'utf8')).toContain(
          `name: sloppy-dr-v4, vip: "${LAB.drVip4}", port: ${port}, mode: dr, scheduler: mh, sloppy: true`,
        );
        const transfer = runInNs(nsName(prefix, 'client'), [
          process.execPath,
          '-e',
          `const s = require('net').connect(${port}, '${LAB.drVip4}', () => s.write('go')); let n = 0, bad = 0; const t0 = Date.now();
         s.on('data', (d) => { for (let i = 0; i < d.length; i++) if (d[i] !== (n + i) % 251) bad++; n += d.length; });
         s.on('error', (e) => { console.log(JSON.stringify({ n, bad, error: e.message })); process.exit(0); });
         s.on('end', () => { console.log(JSON.stringify({ n, bad, seconds: (Date.now() - t0) / 1000 })); process.exit(0); });
         setTimeout(() => { console.log(JSON.stringify({ n, bad, error: 'timeout' })); process.exit(0); }, 60000);`,
        ]);
        await new Promise((done) => setTimeout(done, 2000));
        const t0 = Date.now();
        await restartTunvs(prefix, 'lb-a');
        const restartMs = Date.now() - t0;
        const r = JSON.parse((await transfer).out) as { n: number; bad: number; seconds?: number; error?: string };
        const after = await stats();
        console.log(
          `DR download across a restart of tunvs (${restartMs} ms): ${r.n} of ${size} bytes, ${r.bad} bad, ${r.error ?? `${r.seconds} s`}; sessions_sloppy ${after.counters!.sessions_sloppy}`,
        );
        expect(r).toMatchObject({ n: size, bad: 0 });
        expect(after.counters!.sessions_sloppy).toBeGreaterThanOrEqual(1);
      });
    } finally {
      for (const srv of servers) srv.kill();
    }
  }, 120_000);

  it('kill -9: blackholes drop the VIPs’ packets on the node instead of bouncing them upstream; the restart adopts them', async () => {
    const lbA = nsName(prefix, 'lb-a');
    const blackholes = (): string[] =>
      listFallbacks(lbA)
        .map((r) => r.prefix.replace(/\/\d+$/, ''))
        .sort();
    // One per VIP and local address of the running services (earlier tests added some).
    const before = blackholes();
    for (const a of [LAB.vip4, LAB.vip6, ...LAB.laddrs4, ...LAB.laddrs6]) expect(before).toContain(a);
    const pid = tunvsPid();
    process.kill(pid, 'SIGKILL');
    try {
      for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
      for (let i = 0; i < 50 && spawnSync('ip', ['-n', lbA, 'link', 'show', 'tunvs0']).status === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(blackholes()).toEqual(before);
      // lb-a has a default route back to the router: without the blackhole a SYN for the VIP
      // went round between them until its TTL ran out, and the ICMP time exceeded failed the
      // connect at once (EHOSTUNREACH). Dropped, the client just waits (and would retry).
      const connect = `const s = require('net').connect(80, '${LAB.vip4}');
        s.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });
        s.on('connect', () => { console.log('connected'); process.exit(0); });
        s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
      expect(inNs(nsName(prefix, 'client'), [process.execPath, '-e', connect]).trim()).toBe('timeout');
    } finally {
      await restartTunvs(prefix, 'lb-a'); // after a failed check too: the next test needs it
    }
    expect(labCurl(prefix, 4, 3)).toMatch(/saw client 198\.18\.100\.10/);
    expect(blackholes()).toEqual(before); // adopted and kept, once each
  }, 60_000);

  it('SIGTERM removes the TUN device and every route it added, and ends all threads', async () => {
    const lbA = nsName(prefix, 'lb-a');
    expect(execFileSync('ip', ['-n', lbA, 'route'], { encoding: 'utf8' })).toContain('198.18.0.100 dev tunvs0');
    const pid = tunvsPid();
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
    expect(isAlive(pid)).toBe(false);
    expect(() => execFileSync('ip', ['-n', lbA, 'link', 'show', 'tunvs0'], { stdio: 'pipe' })).toThrow();
    const routes =
      execFileSync('ip', ['-n', lbA, 'route'], { encoding: 'utf8' }) +
      execFileSync('ip', ['-n', lbA, '-6', 'route'], { encoding: 'utf8' });
    for (const a of [LAB.vip4, LAB.vip6, ...LAB.laddrs4, ...LAB.laddrs6]) expect(routes).not.toContain(a);
    expect(readFileSync(join(state.dir, 'tunvs-lb-a.log'), 'utf8')).toContain('"msg":"stopping"');
  }, 30_000);
});
