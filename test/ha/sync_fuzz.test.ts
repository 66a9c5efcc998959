/**
 * A peer's sync records under corruption: whatever words a record read from Redis carries (a
 * bug in a peer, a damaged value, a version this one misreads), installing it, promoting the
 * node, the packets of its tuple both ways, its expiry and `tunvs conns` must not throw — a
 * throw there stops a forwarder thread, and with it every flow of its shard. Records of real
 * sessions (FULLNAT TCP and UDP, IPv4 and IPv6, a persistence template) are mutated word by
 * word and field by field. Seeded (test/helpers/rng.ts): TUNVS_FUZZ_ROUNDS and
 * TUNVS_FUZZ_SEED run it longer or elsewhere by hand.
 */

import { describe, expect, it } from 'vitest';
import { META_FLAGS_SHIFT, META_MODE_SHIFT, META_STATE_SHIFT, R_META } from '../../src/conn/layout.js';
import { EVENT_WORDS, OP_UPSERT } from '../../src/ha/session_sync.js';
import { VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { serviceWithDefaults } from '../../src/service/service.js';
import { Driver, labServices, V4, V6 } from '../helpers/engine.js';
import { BACKUP, drain, haEngine, MASTER, promote } from '../helpers/ha.js';
import { ACK, FIN, PSH, RST, SYN, tcp, udp } from '../helpers/packets.js';
import { Rng } from '../helpers/rng.js';

const ROUNDS = Number(process.env.TUNVS_FUZZ_ROUNDS ?? 600);
const SEED = Number(process.env.TUNVS_FUZZ_SEED ?? 0x7379_6e63);

/** The lab's services and a persistent one (for a template record). */
const specs = () => [
  ...labServices(),
  serviceWithDefaults({
    vip: V4.vip,
    port: 443,
    scheduler: 'rr',
    realServers: [{ address: V4.rs1, port: 8443, weight: 1 }],
    localAddresses: [V4.lip],
    persistence: { timeoutSec: 60, netmask: 32, prefix6: 128 },
  }),
];

/** Upserts of real sessions from a master that publishes at once. */
function records(): Int32Array[] {
  const a = haEngine(MASTER, 0, 1, specs());
  const d = new Driver(a.engine);
  for (const [fam, port] of [
    [V4, 80],
    [V6, 80],
    [V4, 443],
  ] as const) {
    const syn = d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40000 + port, dport: port, seq: 1, flags: SYN }));
    const s = a.engine.describe([...a.engine.sessionIds()].at(-1)!);
    d.forward(
      tcp({
        src: s.rip,
        dst: s.laddr,
        sport: s.rport,
        dport: s.lport,
        seq: 5000,
        ack: new DataView(syn.buffer, syn.byteOffset).getUint32(fam === V4 ? 24 : 44) + 1,
        flags: SYN | ACK,
      }),
    );
    d.forward(tcp({ src: fam.client, dst: fam.vip, sport: 40000 + port, dport: port, seq: 2, ack: 5001, flags: ACK }));
  }
  for (const fam of [V4, V6]) {
    d.forward(udp({ src: fam.client, dst: fam.vip, sport: 41000, dport: 53 }));
  }
  d.nowMs = 200;
  a.engine.advanceTimers(d.nowMs);
  const { events, n } = drain(a.ring);
  const out: Int32Array[] = [];
  for (let e = 0; e < n; e++) out.push(events.slice(e * EVENT_WORDS, (e + 1) * EVENT_WORDS));
  return out;
}

/** Values a corrupted word takes. */
const WORDS = [0, 1, -1, 0xff, 0xffff, 0x7fffffff, -0x80000000, 6, 17, 2, 10];

/** `event` (a copy) with 1–3 of: a word replaced, a field of the meta word (protocol,
 * family, state, mode, flags) replaced, the op replaced. */
function mutate(event: Int32Array, r: Rng): Int32Array {
  const ev = event.slice();
  const edits = 1 + r.below(3);
  for (let e = 0; e < edits; e++) {
    const kind = r.below(4);
    if (kind === 0) ev[1 + r.below(EVENT_WORDS - 1)] = r.below(2) ? r.pick(WORDS) : r.next() | 0;
    else if (kind === 1) ev[0] = r.below(6);
    else {
      const shift = r.pick([0, 8, META_STATE_SHIFT, META_MODE_SHIFT, META_FLAGS_SHIFT]);
      const bits = shift === META_MODE_SHIFT ? 2 : 8;
      const mask = ((1 << bits) - 1) << shift;
      ev[1 + R_META] = (ev[1 + R_META]! & ~mask) | ((r.next() << shift) & mask);
    }
  }
  return ev;
}

/** Install `ev` on a fresh standby, promote it, run its tuple's packets both ways (data, FIN,
 * RST), its expiry, and list it: nothing may throw. How many of its packets were forwarded. */
async function exercise(ev: Int32Array): Promise<number> {
  const b = haEngine(BACKUP, 0, 2, specs());
  b.engine.installSynced(ev, 1);
  await promote(b);
  const d = new Driver(b.engine);
  let forwarded = 0;
  for (const id of [...b.engine.sessionIds()]) {
    const s = b.engine.describe(id);
    const toServer = { src: s.client, dst: s.vip, sport: s.cport, dport: s.vport };
    const toClient = { src: s.rip, dst: s.laddr, sport: s.rport, dport: s.lport };
    const packets =
      s.protocol === 'udp'
        ? [udp(toServer), udp(toClient)]
        : [
            tcp({ ...toServer, seq: 2, ack: 5001, flags: ACK | PSH, payload: new Uint8Array(100) }),
            tcp({ ...toClient, seq: 5001, ack: 102, flags: ACK | PSH, payload: new Uint8Array(50) }),
            tcp({ ...toServer, seq: 102, ack: 5051, flags: FIN | ACK }),
            tcp({ ...toClient, seq: 5051, ack: 103, flags: RST }),
          ];
    for (const p of packets) if (d.send(p).verdict === VERDICT_FORWARD) forwarded++;
    b.engine.describe(id);
  }
  for (let t = 1000; t <= 400_000; t += 1000) b.engine.advanceTimers(t);
  for (const id of b.engine.sessionIds()) b.engine.describe(id);
  b.engine.templates.list(400_000);
  return forwarded;
}

describe('sync records under corruption (seeded)', () => {
  it(`${ROUNDS} mutated records install, forward, expire and list without a throw`, async () => {
    const base = records();
    expect(base.length).toBeGreaterThanOrEqual(6);
    expect(base.every((e) => e[0] === OP_UPSERT)).toBe(true);
    // Unchanged, each is installed and its packets go through: the template has none, a UDP
    // flow's datagram and reply, a TCP connection's data, data, FIN and RST.
    const whole: number[] = [];
    for (const ev of base) whole.push(await exercise(ev));
    expect(whole.sort()).toEqual([0, 2, 2, 4, 4, 4]);
    const r = new Rng(SEED);
    let forwarded = 0;
    for (let i = 0; i < ROUNDS; i++) {
      const ev = mutate(r.pick(base), r);
      try {
        forwarded += await exercise(ev);
      } catch (e) {
        throw new Error(
          `seed ${SEED} round ${i}: ${(e as Error).stack ?? String(e)}\nrecord: [${Array.from(ev).join(', ')}]`,
        );
      }
    }
    // The mutations left many records usable: the packets after them were exercised.
    expect(forwarded).toBeGreaterThan(ROUNDS / 2);
  });
});
