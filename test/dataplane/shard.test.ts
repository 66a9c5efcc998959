import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { SESSION_SHARDS } from '../../src/constants.js';
import {
  clientShardHash,
  clientWorker,
  localPortWorker,
  ownerPeriod,
  shardsAgree,
  shardWorker,
} from '../../src/dataplane/shard.js';
import { PortCursors } from '../../src/service/laddr.js';
import { shardFields, shardsOf } from '../../src/ha/redis.js';
import { DROP_NO_SESSION, VERDICT_REDIRECT } from '../../src/nat/verdict.js';
import { parseAddress } from '../../src/service/addr.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';
import { labServices, V4, V6 } from '../helpers/engine.js';
import { ACK, tcp } from '../helpers/packets.js';

describe('clientShardHash', () => {
  it.each([2, 3, 4, 8])(
    'regression: one client, even ephemeral ports (Linux connect) spread evenly over %i workers',
    (workers) => {
      const counts = new Array<number>(workers).fill(0);
      const client = 0xc6126407 | 0; // 198.18.100.7
      const n = 20000;
      for (let i = 0; i < n; i++) {
        const cport = 32768 + 2 * i;
        counts[clientShardHash(client, 0, 0, 0, (cport << 16) | 80) % workers]!++;
      }
      for (const c of counts) expect(Math.abs(c - n / workers) / (n / workers)).toBeLessThan(0.05);
    },
  );
});

describe('shards', () => {
  it.each([3, 7, 12, 64])('one client’s ports spread evenly over %i workers through the shards', (workers) => {
    const counts = new Array<number>(workers).fill(0);
    const n = 28000; // the ephemeral ports, 32768–60767
    for (let i = 0; i < n; i++) counts[clientWorker(0xc6126407 | 0, 0, 0, 0, 32768 + i, workers)]!++;
    for (const c of counts) expect(Math.abs(c - n / workers) / (n / workers)).toBeLessThan(0.15);
  });

  it('shardsAgree says exactly when this node finds the owner of every session a node of other shards made', () => {
    // The other node gave each session a port (or hash) x with x ≡ the client's hash modulo
    // its shards: this node agrees when its owner of x depends on x modulo those only.
    const peers = [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 48, 64, 96, SESSION_SHARDS, 2 * SESSION_SHARDS];
    for (const peerShards of peers) {
      for (const workers of [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 64]) {
        let agrees = true;
        for (let x = 0; x + peerShards < 0x10000 && agrees; x++)
          agrees = localPortWorker(x, workers) === localPortWorker(x + peerShards, workers);
        expect(shardsAgree(peerShards, workers), `${peerShards} shards, ${workers} workers`).toBe(agrees);
      }
    }
  });

  it('ownerPeriod: shards a period apart have one owner on every node; the ports a full shard borrows follow it', () => {
    expect(ownerPeriod([])).toBe(1);
    expect(ownerPeriod([2])).toBe(2);
    expect(ownerPeriod([2, 3])).toBe(6);
    expect(ownerPeriod([2, 4, 8])).toBe(8);
    expect(ownerPeriod([2, 7])).toBe(14);
    expect(ownerPeriod([7, 64])).toBe(448);
    expect(ownerPeriod([7, 9, 64])).toBe(SESSION_SHARDS); // 4,032: no two shards agree
    for (const counts of [
      [2, 3],
      [4, 6, 10],
      [2, 7],
      [3, 64],
    ]) {
      const period = ownerPeriod(counts);
      for (let s = 0; s + period < SESSION_SHARDS; s++)
        for (const w of counts) expect(shardWorker(s + period, w)).toBe(shardWorker(s, w));
    }
    // In a worker's own shards (j: shard = worker + j × workers): every period-th agrees.
    const cursors = (workers: number, peers: number[]) => {
      const c = new PortCursors(0, workers);
      c.setPeerWorkers(peers);
      return c.period;
    };
    expect(cursors(2, [])).toBe(1);
    expect(cursors(2, [2, 4])).toBe(2);
    expect(cursors(2, [3])).toBe(3);
    expect(cursors(7, [2])).toBe(2);
    expect(cursors(2, [7])).toBe(7);
    expect(cursors(64, [7])).toBe(7); // of its 15 shards, j, j + 7 and j + 14 agree
    expect(cursors(64, [7, 9])).toBeGreaterThanOrEqual(new PortCursors(0, 64).shards);
  });

  it('every stream entry says how its node cut its sessions; the version before reads w as its workers', () => {
    const read = (workers: number) => {
      const f = shardFields(workers);
      const m = new Map<string, string>();
      for (let i = 0; i < f.length; i += 2) m.set(f[i]!, f[i + 1]!);
      return m;
    };
    expect(shardsOf((k) => read(4).get(k))).toEqual({ workers: 4, shards: SESSION_SHARDS });
    expect(shardsOf((k) => read(7).get(k))).toEqual({ workers: 7, shards: SESSION_SHARDS });
    // The version before compared Number(w) with its own workers: right for 4 (4 divides the
    // shards), and 7, which does not, is no number to it.
    expect(Number(read(4).get('w'))).toBe(4);
    expect(Number(read(7).get('w'))).toBeNaN();
    // Its entries: w only, its shards its workers.
    expect(shardsOf((k) => (k === 'w' ? '3' : undefined))).toEqual({ workers: 3, shards: 3 });
    expect(shardsOf(() => undefined)).toBeUndefined();
  });
});

/**
 * With NAT services a packet to an address that is not ours is a real server's reply to a
 * client (owner by the client hash); a cluster peer's local address is not that: once the node
 * takes the peer over, its sessions answer there and live in the worker the local port names,
 * where the HA install and the steering program put them.
 */
describe.each([
  ['IPv4', V4, '198.18.2.9'],
  ['IPv6', V6, 'fd00:18:2::9'],
] as const)('replies to a cluster peer’s local address, with NAT services (%s)', (_name, fam, peerLip) => {
  const specs = resolveServices(
    [
      ...labServices(),
      serviceWithDefaults({
        vip: fam.vip,
        port: 8000,
        mode: 'nat',
        realServers: [{ address: fam.rs2, port: 8000, weight: 1 }],
      }),
    ],
    new IdRegistry(),
  );
  const workers = 2;
  const engines = [0, 1].map((w) => new Engine({ worker: w, workers, capacity: 64, seed: 1 }, specs));
  const ring = new PacketRing(1);
  /** Which worker `w` says owns the packet (itself unless it hands it over), and its verdict. */
  const run = (w: number, p: Uint8Array): { owner: number; reason: number } => {
    ring.put(0, p);
    engines[w]!.processBurst(ring, 1, 0);
    const redirected = ring.verdicts[0] === VERDICT_REDIRECT;
    return { owner: redirected ? ring.aux[0]! : w, reason: redirected ? 0 : ring.aux[0]! };
  };
  const reply = (lport: number) =>
    tcp({ src: fam.rs1, dst: peerLip, sport: 8080, dport: lport, seq: 9, ack: 2, flags: ACK });
  const ports = Array.from({ length: 64 }, (_, i) => 20000 + 3 * i);

  it('are owned by the local port once the peers are known', () => {
    // Before: the client rule; some ports land on the wrong worker.
    const misplaced = () => ports.some((p) => run(0, reply(p)).owner !== p % workers);
    expect(misplaced()).toBe(true);
    for (const e of engines) e.setPeerLocalAddresses([{ ...parseAddress(peerLip)!, holder: 2 }]);
    for (const p of ports) {
      expect(run((p + 1) % workers, reply(p)).owner).toBe(p % workers);
      // The owner looks for the session: a miss is no_session (a local address), not not_local.
      expect(run(p % workers, reply(p)).reason).toBe(DROP_NO_SESSION);
    }
    for (const e of engines) e.setPeerLocalAddresses([]);
    expect(misplaced()).toBe(true);
  });
});
