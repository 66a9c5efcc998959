/**
 * The steering program computes the same owner as the engine for every packet the kernel
 * would route into the TUN (run here through an interpreter of its exact bytes).
 */

import { describe, expect, it } from 'vitest';
import { VERDICT_FORWARD, VERDICT_REDIRECT } from '../../src/nat/verdict.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { steeringProgram } from '../../src/dataplane/steering.js';
import { parseAddress } from '../../src/service/addr.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';
import { Engine } from '../../src/dataplane/engine.js';
import { labServices, V4, V6 } from '../helpers/engine.js';
import { runBpf, unreachable } from '../helpers/bpf_interp.js';
import { ACK, DEST_OPTIONS, fragmentsOf, HOP_BY_HOP, icmp, SYN, tcp, udp, withExtHeaders } from '../helpers/packets.js';

/** A NAT service on VIP port 81 of family `fam`. */
const nat = (fam: typeof V4) =>
  serviceWithDefaults({
    vip: fam.vip,
    port: 81,
    mode: 'nat',
    realServers: [{ address: fam.rs1, port: 8081, weight: 1 }],
  });

describe('TUN steering program', () => {
  const services = resolveServices(labServices(), new IdRegistry());
  const prog = steeringProgram(services);

  it('is a whole number of instructions and small', () => {
    expect(prog.length % 8).toBe(0);
    expect(prog.length / 8).toBeLessThan(200);
  });

  it.each([2, 3, 4, 7])('agrees with the engine on the owner of every TCP/UDP packet (%i workers)', (workers) => {
    const engines = Array.from(
      { length: workers },
      (_, w) => new Engine({ worker: w, workers, capacity: 64, seed: 1 }, services),
    );
    const ring = new PacketRing(1);
    let checked = 0;
    for (let i = 0; i < 400; i++) {
      const fam = i % 2 ? V4 : V6;
      const sport = 1024 + ((i * 7919) % 60000);
      const packets = [
        tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, flags: SYN }),
        udp({ src: fam.client, dst: fam.vip, sport, dport: 53 }),
        tcp({ src: fam.rs1, dst: fam.lip, sport: 8080, dport: 1025 + i, flags: ACK }),
      ];
      for (const p of packets) {
        const queue = (runBpf(prog, p) & 0xffff) % workers;
        // The engine of that queue must not hand the packet over.
        ring.put(0, p);
        engines[queue]!.processBurst(ring, 1, 0);
        expect(ring.verdicts[0], `packet ${i} steered to ${queue}`).not.toBe(VERDICT_REDIRECT);
        checked++;
      }
    }
    expect(checked).toBe(1200);
  });

  it.each([2, 3, 4])(
    'IPv6 behind Hop-by-Hop and Destination Options headers: to the owner as without them (%i workers)',
    (workers) => {
      const withNat = resolveServices([...labServices(), nat(V6)], new IdRegistry());
      const engines = Array.from(
        { length: workers },
        (_, w) => new Engine({ worker: w, workers, capacity: 256, seed: 1 }, withNat),
      );
      const ring = new PacketRing(1);
      const heads = [
        [{ type: 0, units: 1 }],
        [{ type: 60, units: 2 }],
        [
          { type: 0, units: 3 },
          { type: 60, units: 1 },
          { type: 60, units: 1 },
        ],
      ];
      for (const natProg of [false, true]) {
        const p = steeringProgram(natProg ? withNat : services);
        for (let i = 0; i < 150; i++) {
          const sport = 1024 + ((i * 7919) % 60000);
          const plain = [
            tcp({ src: V6.client, dst: V6.vip, sport, dport: natProg ? 81 : 80, seq: 1, flags: SYN }),
            udp({ src: V6.client, dst: V6.vip, sport, dport: 53 }),
            tcp({ src: V6.rs1, dst: V6.lip, sport: 8080, dport: 1025 + i, flags: ACK }),
          ];
          for (const q of plain) {
            const x = withExtHeaders(q, ...heads[i % 3]!);
            const queue = (runBpf(p, x) & 0xffff) % workers;
            expect(queue, `packet ${i}`).toBe((runBpf(p, q) & 0xffff) % workers);
            ring.put(0, x);
            engines[queue]!.processBurst(ring, 1, 0);
            expect(ring.verdicts[0], `packet ${i} steered to ${queue}`).not.toBe(VERDICT_REDIRECT);
          }
          if (natProg) {
            // A NAT real server's reply behind options headers goes where its client went.
            const reply = tcp({
              src: V6.rs1,
              dst: V6.client,
              sport: 8081,
              dport: sport,
              seq: 1,
              ack: 2,
              flags: SYN | ACK,
            });
            expect((runBpf(p, withExtHeaders(reply, ...heads[i % 3]!)) & 0xffff) % workers).toBe(
              (runBpf(p, reply) & 0xffff) % workers,
            );
          }
        }
      }
      // What the engine does not look past goes to 0: four options headers, a Routing header.
      const syn = tcp({ src: V6.client, dst: V6.vip, sport: 5000, dport: 80, flags: SYN });
      expect(runBpf(prog, withExtHeaders(syn, ...heads[2]!, { type: 60, units: 1 }))).toBe(0);
      expect(runBpf(prog, withExtHeaders(syn, { type: 43, units: 1 }))).toBe(0);
    },
  );

  it.each([2, 3, 4])(
    "a cluster peer's local address steers by the local port, as the node's own do (%i workers)",
    (workers) => {
      // A peer's sessions are installed (and, once it is taken over, its packets arrive) in
      // the worker its local port names; without the peer's addresses in the program they
      // took the VIP rule and were handed over, and a GSO super-packet does not fit that.
      const peers = [parseAddress('198.18.2.99')!, parseAddress('fd00:18:2::99')!];
      const withPeers = steeringProgram(services, peers);
      let missed = 0;
      for (let i = 0; i < 400; i++) {
        const fam = i % 2 ? V4 : V6;
        const dport = 1025 + ((i * 7919) % 60000);
        const dst = i % 2 ? '198.18.2.99' : 'fd00:18:2::99';
        const p = tcp({ src: fam.rs1, dst, sport: 8080, dport, flags: ACK });
        expect((runBpf(withPeers, p) & 0xffff) % workers).toBe(dport % workers);
        if ((runBpf(prog, p) & 0xffff) % workers !== dport % workers) missed++;
      }
      expect(missed, 'the program without the peers misses some').toBeGreaterThan(0);
    },
  );

  it.each([2, 3, 4])(
    'with NAT services, a real server reply to a client goes where the client went (%i workers)',
    (workers) => {
      const withNat = resolveServices([...labServices(), nat(V4), nat(V6)], new IdRegistry());
      const natProg = steeringProgram(withNat);
      const engines = Array.from(
        { length: workers },
        (_, w) => new Engine({ worker: w, workers, capacity: 256, seed: 1 }, withNat),
      );
      const ring = new PacketRing(1);
      const run = (p: Uint8Array): number => {
        const queue = (runBpf(natProg, p) & 0xffff) % workers;
        ring.put(0, p);
        engines[queue]!.processBurst(ring, 1, 0);
        expect(ring.verdicts[0], `steered to ${queue}`).toBe(VERDICT_FORWARD);
        return queue;
      };
      for (let i = 0; i < 200; i++) {
        const fam = i % 2 ? V4 : V6;
        const sport = 1024 + ((i * 7919) % 60000);
        const q = run(tcp({ src: fam.client, dst: fam.vip, sport, dport: 81, seq: 1, flags: SYN }));
        expect(
          run(tcp({ src: fam.rs1, dst: fam.client, sport: 8081, dport: sport, seq: 1, ack: 2, flags: SYN | ACK })),
        ).toBe(q);
        // FULLNAT traffic still steers as before.
        run(tcp({ src: fam.client, dst: fam.vip, sport, dport: 80, flags: SYN }));
      }
    },
  );

  it.each([2, 3, 4])(
    'every fragment of a datagram goes to one queue, whose engine reassembles it (%i workers)',
    (workers) => {
      const queues = new Set<number>();
      for (let i = 0; i < 200; i++) {
        const fam = i % 2 ? V4 : V6;
        const sport = 1024 + ((i * 7919) % 60000);
        const toVip = udp({ src: fam.client, dst: fam.vip, sport, dport: 53, payload: new Uint8Array(3000) });
        const reply = udp({ src: fam.rs1, dst: fam.lip, sport: 5353, dport: sport, payload: new Uint8Array(3000) });
        const queue = (p: Uint8Array): number => {
          const q = fragmentsOf(p, 1448, i * 101).map((f) => (runBpf(prog, f) & 0xffff) % workers);
          expect(new Set(q).size, `datagram ${i}`).toBe(1);
          queues.add(q[0]!);
          return q[0]!;
        };
        const q = queue(toVip);
        queue(reply);
        // IPv6 behind a Hop-by-Hop header (in front of every fragment): the same queue.
        if (fam === V6) expect(queue(withExtHeaders(toVip, HOP_BY_HOP, DEST_OPTIONS))).toBe(q);
      }
      // Spread by datagram, not all on one queue.
      expect(queues.size).toBe(workers);
    },
  );

  it('every instruction is reachable, whatever the services (the verifier refuses anything else)', () => {
    const lab = labServices();
    const sets = {
      'v4 and v6': lab,
      'v4 only': lab.filter((x) => !x.vip.includes(':')),
      'v6 only': lab.filter((x) => x.vip.includes(':')),
      'with NAT': [...lab, nat(V4), nat(V6)],
      'v4 only with v6 NAT': [...lab.filter((x) => !x.vip.includes(':')), nat(V6)],
      'NAT only, v4': [nat(V4)],
    };
    const peers = [parseAddress('198.18.2.99')!, parseAddress('fd00:18:2::99')!];
    for (const [name, specs] of Object.entries(sets)) {
      const resolved = resolveServices(specs, new IdRegistry());
      expect(unreachable(steeringProgram(resolved)), name).toEqual([]);
      expect(unreachable(steeringProgram(resolved, peers)), `${name}, with peers' local addresses`).toEqual([]);
    }
  });

  it('sends ICMP and non-TCP/UDP to queue 0, and short packets end with 0', () => {
    const quoted = tcp({ src: V4.lip, dst: V4.rs1, sport: 1025, dport: 8080, flags: ACK });
    expect(runBpf(prog, icmp(V4.rs1, V4.lip, 3, 4, 1400, quoted))).toBe(0);
    expect(runBpf(prog, new Uint8Array([0x45, 0, 0]))).toBe(0);
  });
});
