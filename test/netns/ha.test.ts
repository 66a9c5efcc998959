/**
 * The active/standby pair in the netns lab: keepalived (real, VRRP) on lb-a and lb-b, tunvs on
 * both, Redis carrying the sessions. 200 long-lived connections stream data through the VIP
 * with a check of every byte; the master fails three ways (tunvs killed, keepalived killed,
 * its upstream link cut); the connections must go on through lb-b with no reset and nothing
 * lost, new connections must work during and after, and lb-a takes over again when it is
 * back (failback, the same guarantees; the old master's hash leaves Redis); the same with a
 * backup of another worker count (3 against 2). A split: the
 * master's keepalived stalls while the backup's takes over, and the connections made on the
 * backup meanwhile go on through the master after. Then Redis goes away for 10 s under load, and a
 * TUNNEL service with sloppy TCP keeps connections too young to be synced across the
 * master's death; a planned switch (keepalived or tunvs stopped in order on the master) keeps
 * them on any service, and `tunvs lab failover --planned` shows it. Last, the pair on the AF_XDP path (io: xdp, docs/xdp.md): tunvs killed on
 * the master, the same.
 * Needs root; builds and removes its own labs.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/control/admin.js';
import { LAB, labDown, labStatus, labUp, nsName, readState, type LabState } from '../../src/lab/lab.js';
import { inNs, ipBatch, runInNs, stopPid } from '../../src/lab/netns.js';
import { waitFor } from '../../src/lab/state.js';
import { setupDirectServers, sloppyTunnelEcho } from '../../src/lab/modes.js';
import { listFallbacks } from '../../src/control/system.js';
import {
  adminOf,
  haStatusOf,
  labPid,
  recordingStarter,
  redisArgs,
  restartTunvs,
  startKeepalived,
  waitRole,
} from '../../src/lab/pair.js';
import { distSrc } from '../../src/paths.js';
import { runStreams } from '../../src/lab/streams.js';
import { labFailover } from '../../src/lab/failover.js';

const root = process.getuid?.() === 0;
/** The lab of the describe block that runs (the AF_XDP pair has one of its own). */
let prefix = `th${process.pid % 100000}-`;
let state: LabState;

/** Run a client program in the client namespace in the background; resolves with its stdout. */
function inClient(args: string[]): Promise<{ code: number; out: string }> {
  return runInNs(nsName(prefix, 'client'), [process.execPath, ...args], true);
}

/** `connections` streams for `seconds`; `ready` once all are connected. */
function streams(connections: number, seconds: number): ReturnType<typeof runStreams> {
  return runStreams(state, connections, seconds);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function fresh(): LabState {
  state = readState(prefix)!;
  return state;
}

/** The session hashes in the lab's Redis. */
function lbHashes(): string[] {
  return inNs(nsName(prefix, 'redis'), ['redis-cli', '-h', LAB.redis4, '--scan', '--pattern', 'tunvs:*:sessions'])
    .split('\n')
    .filter(Boolean);
}

/** Connections per real server of the echo service on a node (active + inactive). */
async function echoSessions(node: 'lb-a' | 'lb-b'): Promise<number> {
  const sock = node === 'lb-a' ? state.adminSocket : state.adminSocketB!;
  const r = (await adminRequest(sock, { cmd: 'list' })) as {
    services: { vip: string; port: number; realServers: { activeConns: number; inactiveConns: number }[] }[];
  };
  const svc = r.services.find((s) => s.port === LAB.echoPort && s.vip === LAB.vip4)!;
  return svc.realServers.reduce((n, rs) => n + rs.activeConns + rs.inactiveConns, 0);
}

/**
 * One failure of the master under 200 streams (established 3.5 s before), with new
 * connections made while it happens; then `restore` and wait for lb-a to be master again.
 */
async function failover(name: string, fail: () => void, restore: () => Promise<void>): Promise<void> {
  expect((await haStatusOf(fresh(), 'lb-a'))?.role).toBe('master');
  const s = streams(200, 14);
  await s.ready;
  await sleep(3500);
  const changesB = (await haStatusOf(state, 'lb-b'))!.roleChanges;
  const during = inClient([join(distSrc(), 'lab', 'http_get.js'), `http://${LAB.vip4}/`, '15']);
  const t0 = Date.now();
  fail();
  let restored = false;
  const failback = async (): Promise<void> => {
    if (restored) return;
    restored = true;
    await restore();
    await waitRole(fresh(), 'lb-a', 'master', 30_000);
  };
  try {
    await waitRole(fresh(), 'lb-b', 'master', 15_000);
    const takeover = Date.now() - t0;
    const r = await s.done;
    const newConns = await during;
    console.log(
      `${name}: lb-b master after ${takeover} ms; ` +
        `${r.ok}/${r.connections} streams intact, ${r.reset} reset, ${r.bytesLost} bytes lost, ` +
        `${r.corruptedBytes} corrupted; stall median ${r.stallMsMedian} ms, max ${r.stallMsMax} ms`,
    );
    expect(r.established).toBe(200);
    expect(r.ok).toBeGreaterThanOrEqual(198); // >= 99%
    expect(r.reset).toBe(0);
    expect(r.corruptedBytes).toBe(0);
    expect(r.bytesLost).toBe(0);
    expect(newConns.code, `new connections during the failover:\n${newConns.out}`).toBe(0);
    expect(
      newConns.out
        .trim()
        .split('\n')
        .filter((l) => l.includes('saw client')).length,
    ).toBe(15);
    const after = await inClient([join(distSrc(), 'lab', 'http_get.js'), `http://${LAB.vip4}/`, '5']);
    expect(after.code).toBe(0);

    // Failback, with streams across it too.
    const back = streams(100, 10);
    await back.ready;
    await sleep(3000);
    await failback();
    await waitRole(fresh(), 'lb-b', 'backup', 10_000);
    // Counted (tunvs ha status, tunvs_ha_role_changes_total): to master and back.
    expect((await haStatusOf(state, 'lb-b'))!.roleChanges - changesB).toBe(2);
    // What lb-b published as master is lb-a's now (its resync after the adopt): lb-b's hash goes.
    await waitFor(
      "lb-b's hash dropped after the failback",
      () => lbHashes().every((k) => !k.includes(':node:2:')),
      10_000,
    );
    const rb = await back.done;
    console.log(
      `${name} failback: ${rb.ok}/${rb.connections} intact, stall median ${rb.stallMsMedian} ms, max ${rb.stallMsMax} ms`,
    );
    expect(rb.ok).toBeGreaterThanOrEqual(99);
    expect(rb.reset + rb.corruptedBytes + rb.bytesLost).toBe(0);
  } finally {
    await failback(); // after a failed check too: the next test needs lb-a back as master
  }
}

/** The failover of `kill -9` of tunvs on the master (lb-a), restarted for the failback. */
function killTunvsOnMaster(name: string): Promise<void> {
  return failover(
    name,
    () => process.kill(labPid(fresh(), 'tunvs-lb-a')!, 'SIGKILL'),
    async () => {
      await restartTunvs(prefix, 'lb-a');
    },
  );
}

describe.skipIf(!root)('HA pair: keepalived + Redis session sync (root)', () => {
  beforeAll(async () => {
    await labDown(prefix, () => undefined);
    // FULLNAT failover only.
    await labUp({ prefix, workers: 2, ha: true, reader: false, modes: false, log: () => undefined });
    fresh();
  }, 90_000);

  afterAll(async () => {
    await labDown(prefix, () => undefined);
  }, 60_000);

  it('kill -9 tunvs on the master: established connections go on through the backup', async () => {
    await killTunvsOnMaster('tunvs killed');
  }, 120_000);

  it('the backup runs 3 workers, the master 2: kill -9 tunvs on the master, the connections go on through it', async () => {
    // Each node finds a synced session's owner worker by its shard, not the other node's
    // worker count (docs/ha.md, "Workers"); before, lb-b refused lb-a's batches.
    const file = join(fresh().dir, 'lb-b.yaml');
    const two = readFileSync(file, 'utf8');
    const stats = async () =>
      (await adminRequest(adminOf(fresh(), 'lb-b'), { cmd: 'stats' }, 5000)) as {
        counters: Record<string, number>;
        perWorker: Record<string, number>[];
      };
    const bReady = (what: string) =>
      waitFor(what, async () => (await haStatusOf(fresh(), 'lb-b'))?.ready === true, 30_000);
    try {
      writeFileSync(file, two.replace(/^workers: 2$/m, 'workers: 3'));
      await restartTunvs(prefix, 'lb-b');
      await bReady('lb-b ready with 3 workers');
      expect((await stats()).perWorker.length).toBe(3);
      await killTunvsOnMaster('tunvs killed, a backup of 3 workers');
      // Each of lb-b's workers installed its share of the streams' sessions, and none was
      // given a local port outside its client's shard.
      const st = await stats();
      expect(st.perWorker.every((w) => w.sync_installed! > 0)).toBe(true);
      expect(st.counters.lport_other_shard).toBe(0);
      expect(st.counters.sync_install_failed).toBe(0);
    } finally {
      writeFileSync(file, two);
      await restartTunvs(prefix, 'lb-b');
      await bReady('lb-b ready again with 2 workers');
    }
  }, 240_000);

  it('kill -9 keepalived on the master: the same', async () => {
    await failover(
      'keepalived killed',
      () => process.kill(labPid(fresh(), 'keepalived-lb-a')!, 'SIGKILL'),
      async () => {
        await sleep(500);
        startKeepalived(fresh(), 'lb-a', recordingStarter(state));
      },
    );
  }, 120_000);

  it("the master's upstream link cut: the same", async () => {
    // The cable: lb-a's eth0 peer in the switch namespace (lb-a sees carrier loss).
    const sw = nsName(prefix, 'sw');
    await failover(
      'link cut',
      () => ipBatch(['link set lba0 down'], sw),
      async () => {
        ipBatch(['link set lba0 up'], sw);
        await sleep(200);
      },
    );
  }, 120_000);

  it('synProxy on: kill -9 tunvs on the master during proxied connections; they go on through the backup', async () => {
    // Both nodes proxy every SYN: the 200 streams are connections the proxy opened, with the
    // server-side sequence and timestamp deltas in the records lb-b installed.
    const files = ['lb-a', 'lb-b'].map((n) => join(state.dir, `${n}.yaml`));
    const bases = files.map((f) => readFileSync(f, 'utf8'));
    const reload = async (edit: (y: string) => string): Promise<void> => {
      files.forEach((f, i) => writeFileSync(f, edit(bases[i]!)));
      for (const n of ['tunvs-lb-a', 'tunvs-lb-b']) process.kill(labPid(fresh(), n)!, 'SIGHUP');
      await sleep(500);
    };
    await reload((y) => y.replace(/(    scheduler: \w+\n)/g, '$1    synProxy: on\n'));
    try {
      const accepted = async (): Promise<number> =>
        ((await adminRequest(state.adminSocket, { cmd: 'stats' })) as { counters: Record<string, number> }).counters
          .synproxy_accepted!;
      const before = await accepted();
      expect((await inClient([join(distSrc(), 'lab', 'http_get.js'), `http://${LAB.vip4}/`, '3'])).code).toBe(0);
      expect(await accepted()).toBeGreaterThanOrEqual(before + 3);
      await failover(
        'tunvs killed, synProxy on',
        () => process.kill(labPid(fresh(), 'tunvs-lb-a')!, 'SIGKILL'),
        async () => {
          await restartTunvs(prefix, 'lb-a');
        },
      );
    } finally {
      await reload((y) => y);
    }
  }, 150_000);

  it('Redis gone for 10 s under load: forwarding unaffected; the standby converges after', async () => {
    const s = streams(100, 24);
    await s.ready;
    await sleep(3000);
    const redis = labPid(fresh(), 'redis')!;
    await stopPid(redis);
    const t0 = Date.now();
    // Connections made while Redis is away: only the resync after it returns can carry them.
    await sleep(1000);
    const s2 = streams(100, 18);
    await s2.ready;
    await sleep(10_000 - (Date.now() - t0));
    recordingStarter(fresh())('redis', nsName(prefix, 'redis'), redisArgs(), 'redis-server');
    const back = Date.now();
    let a = 0;
    let b = 0;
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      a = await echoSessions('lb-a');
      b = await echoSessions('lb-b');
      if (a >= 200 && Math.abs(a - b) <= a * 0.01) break;
    }
    const converged = Date.now() - back;
    const [ha, hb] = [await haStatusOf(fresh(), 'lb-a'), await haStatusOf(fresh(), 'lb-b')];
    console.log(
      `Redis away 10 s: lb-a ${a} echo sessions, lb-b ${b}, agreeing ${converged} ms after Redis returned; ` +
        `standby lag ${hb?.syncLagMs} ms; master published ${ha?.published}`,
    );
    expect(a).toBeGreaterThanOrEqual(200);
    expect(Math.abs(a - b)).toBeLessThanOrEqual(Math.ceil(a * 0.01));
    for (const r of [await s.done, await s2.done]) {
      expect(r.ok).toBe(100);
      expect(r.reset + r.corruptedBytes + r.bytesLost).toBe(0);
    }
    const sa = (await adminRequest(state.adminSocket, { cmd: 'ha' })) as { ha: { lost: number; resyncs: number } };
    expect(sa.ha.resyncs).toBeGreaterThanOrEqual(2); // one at start, one after Redis came back
  }, 120_000);
  it("a split: the master's keepalived stalls 6 s, the backup takes over; after, the connections made on it go on through the master", async () => {
    expect((await haStatusOf(fresh(), 'lb-a'))?.role).toBe('master');
    const changes = async (): Promise<number[]> =>
      Promise.all((['lb-a', 'lb-b'] as const).map(async (n) => (await haStatusOf(state, n))!.roleChanges));
    const [a0, b0] = await changes();
    const before = streams(100, 16); // made on lb-a
    await before.ready;
    await sleep(2500);
    // keepalived's VRRP process on lb-a (the lab started it): its adverts stop, lb-b's
    // keepalived takes the next hops; lb-a's tunvs is told nothing and stays master.
    const vrrp = Number(readFileSync(join(state.dir, 'keepalived-lb-a-vrrp.pid'), 'utf8').trim());
    process.kill(vrrp, 'SIGSTOP');
    let resumed = false;
    const resume = (): void => {
      if (!resumed) process.kill(vrrp, 'SIGCONT');
      resumed = true;
    };
    try {
      await waitRole(fresh(), 'lb-b', 'master', 10_000);
      const during = streams(100, 10); // made on lb-b, synced after syncAfterMs
      await during.ready;
      await sleep(3000);
      expect((await haStatusOf(state, 'lb-a'))?.role).toBe('master'); // both master: the split
      resume();
      await waitRole(fresh(), 'lb-b', 'backup', 10_000);
      for (const [name, r] of [
        ['made on lb-a before', await before.done],
        ['made on lb-b during', await during.done],
      ] as const) {
        console.log(
          `split, streams ${name}: ${r.ok}/${r.connections} intact, ${r.reset} reset, ${r.bytesLost} bytes lost; stall median ${r.stallMsMedian} ms, max ${r.stallMsMax} ms`,
        );
        expect(r.established).toBe(100);
        expect(r.ok).toBeGreaterThanOrEqual(99);
        expect(r.reset + r.corruptedBytes + r.bytesLost).toBe(0);
      }
      const [a1, b1] = await changes();
      expect([a1! - a0!, b1! - b0!]).toEqual([0, 2]);
      // lb-a adopted what lb-b made; lb-b's hash goes (lb-a has published since).
      await waitFor(
        "lb-b's hash dropped after the split",
        () => lbHashes().every((k) => !k.includes(':node:2:')),
        10_000,
      );
    } finally {
      resume();
    }
  }, 90_000);

  // 0.5 s old (syncAfterMs 2 s): never published while the master served them. Were the master
  // killed, they would be lost (the limit in docs/ha.md).
  for (const how of ['keepalived stopped on the master', 'tunvs stopped on the master (SIGTERM)'] as const) {
    it(`a planned switch (${how}): connections younger than syncAfterMs go on through the backup`, async () => {
      expect((await haStatusOf(fresh(), 'lb-a'))?.role).toBe('master');
      const published = async (): Promise<number> =>
        ((await adminRequest(adminOf(fresh(), 'lb-a'), { cmd: 'stats' }, 5000)) as { counters: Record<string, number> })
          .counters.sync_stand_down!;
      const before = how === 'keepalived stopped on the master' ? await published() : 0;
      const s = streams(100, 6);
      await s.ready;
      await sleep(500);
      const t0 = Date.now();
      // keepalived's orderly stop: its STOP notify has lb-a's tunvs stand down (it publishes
      // them), its priority-0 adverts give lb-b the next hops at once. tunvs's: it publishes
      // them before it exits, lb-b installs them and adopts them when keepalived promotes it.
      if (how === 'keepalived stopped on the master') await stopPid(labPid(fresh(), 'keepalived-lb-a')!);
      else await stopPid(labPid(fresh(), 'tunvs-lb-a')!, 10_000);
      try {
        await waitRole(fresh(), 'lb-b', 'master', 15_000);
        const took = Date.now() - t0;
        const n = how === 'keepalived stopped on the master' ? (await published()) - before : undefined;
        const r = await s.done;
        console.log(
          `planned switch, ${how}: lb-b master after ${took} ms` +
            (n !== undefined ? `; lb-a published ${n} young sessions standing down` : '') +
            `; ${r.ok}/${r.connections} streams intact, ${r.reset} reset, ${r.bytesLost} bytes lost; stall median ${r.stallMsMedian} ms, max ${r.stallMsMax} ms`,
        );
        expect(r.established).toBe(100);
        if (n !== undefined) expect(n).toBeGreaterThanOrEqual(100);
        expect(r.ok).toBeGreaterThanOrEqual(99);
        expect(r.reset + r.corruptedBytes + r.bytesLost).toBe(0);
      } finally {
        if (how === 'keepalived stopped on the master') startKeepalived(fresh(), 'lb-a', recordingStarter(state));
        else await restartTunvs(prefix, 'lb-a');
        await waitRole(fresh(), 'lb-a', 'master', 30_000);
      }
    }, 90_000);
  }

  it('an orderly stop of a node of the pair keeps its blackholes (the peer serves); the restart adopts them', async () => {
    const lbB = nsName(prefix, 'lb-b');
    const blackholes = (): string[] =>
      listFallbacks(lbB)
        .map((r) => r.prefix)
        .sort();
    const before = blackholes();
    expect(before).toContain(`${LAB.vip4}/32`);
    expect(before).toContain(`${LAB.vip6}/128`);
    await stopPid(labPid(fresh(), 'tunvs-lb-b')!);
    expect(blackholes()).toEqual(before);
    await restartTunvs(prefix, 'lb-b');
    await waitRole(fresh(), 'lb-b', 'backup', 15_000);
    expect(blackholes()).toEqual(before);
    // `tunvs lab status` shows both nodes from their own admin sockets (lb-b, just started,
    // may still be loading lb-a's sessions: not ready yet).
    const status = await labStatus(prefix);
    expect(status).toMatch(/^ {2}lb-a {2}master, forwarding, ready, redis up/m);
    expect(status).toMatch(/^ {2}lb-b {2}backup, not forwarding, (not )?ready, redis up/m);
  }, 60_000);

  it('tunvs lab failover --planned: the demo runs on this pair, prints its timeline, and every stream comes through', async () => {
    const lines: string[] = [];
    const code = await labFailover(prefix, 2, (l) => lines.push(l), true);
    const out = lines.join('\n');
    console.log(out);
    expect(code, out).toBe(0);
    expect(out).toMatch(/lb-a stood down \(keepalived: STOP/);
    expect(out).toMatch(/^streams: 200\/200 intact/m);
    expect(out).toMatch(/^young streams \(500 ms old at the switch\): 100\/100 intact/m);
    expect(out).toMatch(/lb-a master again/);
    expect((await haStatusOf(fresh(), 'lb-a'))?.role).toBe('master');
  }, 90_000);

  it('TUNNEL with sloppy TCP (mh): connections younger than syncAfterMs survive kill -9 of the master', async () => {
    // Never synced (0.5 s old, syncAfterMs 2 s), so the new master has no session for them;
    // with sloppy it makes one from the client's next packet, to the server mh picks from
    // the client address: the one their SYN went to (docs/modes.md, "Sloppy TCP"). Last in
    // the block: lb-a comes back without the service (it was added at run time).
    const vip = LAB.drVip4; // routed to the pair by the router; no other service uses it here
    setupDirectServers(prefix, [vip]); // replies straight to the clients, through the master
    const service = sloppyTunnelEcho(vip, LAB.laddrs4[0]);
    for (const node of ['lb-a', 'lb-b'])
      await adminRequest(adminOf(fresh(), node), { cmd: 'edit', op: 'add-service', service }, 5000);
    expect((await haStatusOf(fresh(), 'lb-a'))?.role).toBe('master');
    const s = runStreams(state, 100, 8, vip);
    await s.ready;
    await sleep(500);
    const t0 = Date.now();
    process.kill(labPid(fresh(), 'tunvs-lb-a')!, 'SIGKILL');
    try {
      await waitRole(fresh(), 'lb-b', 'master', 15_000);
      const takeover = Date.now() - t0;
      const r = await s.done;
      const st = (await adminRequest(adminOf(fresh(), 'lb-b'), { cmd: 'stats' }, 2000)) as {
        counters: Record<string, number>;
      };
      console.log(
        `TUNNEL + sloppy, young connections (0.5 s old), master killed: lb-b master after ${takeover} ms; ` +
          `${r.ok}/${r.connections} streams intact, ${r.reset} reset, ${r.corruptedBytes} corrupted; ` +
          `stall median ${r.stallMsMedian} ms, max ${r.stallMsMax} ms; ${st.counters.sessions_sloppy} sessions made sloppily on lb-b`,
      );
      expect(r.established).toBe(100);
      expect(r.corruptedBytes).toBe(0);
      expect(st.counters.sessions_sloppy).toBeGreaterThan(0);
      expect(r.ok).toBeGreaterThanOrEqual(99);
    } finally {
      await restartTunvs(prefix, 'lb-a');
      await waitRole(fresh(), 'lb-a', 'master', 30_000);
    }
  }, 90_000);
});

describe.skipIf(!root)('HA pair on the AF_XDP path (io: xdp, root)', () => {
  beforeAll(async () => {
    prefix = `tq${process.pid % 100000}-`;
    await labDown(prefix, () => undefined);
    await labUp({ prefix, workers: 2, ha: true, reader: false, modes: false, io: 'xdp', log: () => undefined });
    fresh();
  }, 90_000);

  afterAll(async () => {
    await labDown(prefix, () => undefined);
  }, 60_000);

  it('kill -9 tunvs on the master: established connections go on through the backup', async () => {
    await killTunvsOnMaster('xdp: tunvs killed');
    // Both nodes forwarded on their sockets, not through their TUN devices.
    for (const sock of [state.adminSocket, state.adminSocketB!]) {
      const st = (await adminRequest(sock, { cmd: 'stats' })) as { queues: { csumCompleted: number }[] };
      expect(st.queues.reduce((n, q) => n + q.csumCompleted, 0)).toBeGreaterThan(1000);
    }
  }, 120_000);
});
