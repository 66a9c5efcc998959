/**
 * Fuzz: over a million random and mutated packets through the engine (FULLNAT, the lab's
 * services; every other mode: fuzz_modes.test.ts). Checks (test/helpers/fuzz.ts) that
 * nothing throws, that no byte outside a packet's own slot changes (canary slots sit between
 * the packet slots), that every drop carries a known reason, and that every well-formed
 * packet that is forwarded, and every packet the engine generates, is as long as its IP
 * header says and has valid checksums. The PRNG is seeded; a failure prints the seed.
 */

import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults } from '../../src/service/service.js';
import { labServices, V4, V6 } from '../helpers/engine.js';
import { ACK, icmp, opt, PSH, SYN, tcp, udp, withExtHeaders } from '../helpers/packets.js';
import { FUZZ_TIMEOUTS_SEC, fuzzBursts } from '../helpers/fuzz.js';
import { Rng } from '../helpers/rng.js';

const PACKETS = Number(process.env.TUNVS_FUZZ_PACKETS ?? 1_000_000);

function services() {
  const base = labServices();
  base.push(
    serviceWithDefaults({
      vip: V4.vip,
      port: 443,
      scheduler: 'mh',
      maglevTableSize: 251,
      realServers: [
        { address: V4.rs1, port: 8443, weight: 1 },
        { address: V4.rs2, port: 8443, weight: 2 },
      ],
      localAddresses: [V4.lip, '198.18.2.2'],
      toa: { enabled: true, kind: 200, kindV6: 253, inSyn: true },
      stripTimestamps: true,
    }),
  );
  return resolveServices(base, new IdRegistry());
}

/** Well-formed packet templates: client SYNs and data, server replies, UDP, ICMP. */
function templates(engine: Engine, rng: Rng): Uint8Array[] {
  const out: Uint8Array[] = [];
  const ring = new PacketRing(1);
  const optionSets = [
    [],
    [...opt.mss(1460), ...opt.sackPerm(), ...opt.ts(1, 0), 1, ...opt.ws(7)],
    [1, 1, ...opt.ts(5, 6)],
    [
      1,
      1,
      ...opt.sack([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
    ],
    [...opt.toa(254, 1, '10.0.0.1')],
    [
      1,
      1,
      ...opt.ts(5, 6),
      1,
      1,
      ...opt.sack([
        [1, 2],
        [3, 4],
        [5, 6],
      ]),
    ],
  ];
  for (let i = 0; i < 600; i++) {
    const fam = i % 2 === 0 ? V4 : V6;
    const first = out.length;
    // Two of three IPv6 flows send their packets behind options headers (packet/ipv6_ext.ts).
    const headers = i % 3 === 0 ? [{ type: 0, units: 1 }] : i % 3 === 1 ? [{ type: 60, units: 2 }] : [];
    const withHeaders = (): void => {
      if (fam === V6 && headers.length > 0)
        for (let k = first; k < out.length; k++) out[k] = withExtHeaders(out[k]!, ...headers);
    };
    const port = fam === V4 && i % 4 === 0 ? 443 : 80;
    const sport = 10000 + i;
    const seq = rng.next();
    const options = optionSets[rng.below(optionSets.length)]!;
    const syn = tcp({
      src: fam.client,
      dst: fam.vip,
      sport,
      dport: port,
      seq,
      flags: SYN,
      options: rng.below(2) ? options : [],
    });
    out.push(syn);
    ring.put(0, syn);
    engine.processBurst(ring, 1, 0);
    if (ring.verdicts[0] !== VERDICT_FORWARD) {
      withHeaders();
      continue;
    }
    const ids = [...engine.sessionIds()];
    const s = engine.describe(ids[ids.length - 1]!);
    const lb = (seq + s.seqDelta) >>> 0;
    const rsIsn = rng.next();
    const payload = Uint8Array.from({ length: rng.below(1200) }, () => rng.below(256));
    out.push(
      tcp({
        src: s.rip,
        dst: s.laddr,
        sport: s.rport,
        dport: s.lport,
        seq: rsIsn,
        ack: lb + 1,
        flags: SYN | ACK,
        options,
      }),
    );
    out.push(
      tcp({
        src: fam.client,
        dst: fam.vip,
        sport,
        dport: port,
        seq: seq + 1,
        ack: rsIsn + 1,
        flags: ACK | PSH,
        options,
        payload,
      }),
    );
    out.push(
      tcp({
        src: s.rip,
        dst: s.laddr,
        sport: s.rport,
        dport: s.lport,
        seq: rsIsn + 1,
        ack: lb + 1,
        flags: ACK,
        options,
        payload,
      }),
    );
    const quoted = tcp({ src: s.laddr, dst: s.rip, sport: s.lport, dport: s.rport, seq: lb, flags: ACK });
    out.push(icmp(s.rip, s.laddr, fam === V4 ? 3 : 2, fam === V4 ? 4 : 0, 1400, quoted));
    out.push(udp({ src: fam.client, dst: fam.vip, sport, dport: 53, payload }));
    withHeaders();
  }
  return out;
}

describe('fuzz', () => {
  it.each([
    [PACKETS, 1, 0],
    [Math.ceil(PACKETS / 5), 2, 1],
  ])(
    '%i random and mutated packets, %i worker(s): no throw, no write outside the slot, every drop has a reason',
    (count, workers, worker) => {
      const seed = Number(process.env.TUNVS_FUZZ_SEED ?? 0x5eed1234) + worker;
      const rng = new Rng(seed);
      const engine = new Engine(
        { capacity: 8192, seed: 77, workers, worker, rstOnExpire: true, timeouts: FUZZ_TIMEOUTS_SEC },
        services(),
      );
      const pool = templates(engine, rng);
      const { sent, forwarded, dropped, held, redirected, generated, problems } = fuzzBursts(engine, pool, count, rng);
      console.log(
        `fuzz seed ${seed.toString(16)}: ${sent} packets, ${forwarded} forwarded, ${dropped} dropped, ${held} held, ${redirected} redirected, ${generated} generated, ${engine.sessionCount} live sessions`,
      );
      expect(problems, `seed ${seed.toString(16)}`).toEqual([]);
      expect(sent).toBeGreaterThanOrEqual(count);
      // With two workers half the templates belong to the other shard and are redirected.
      expect(forwarded).toBeGreaterThan(count / (workers > 1 ? 100 : 10));
      expect(dropped).toBeGreaterThan(count / 10);
      if (workers > 1) expect(redirected).toBeGreaterThan(count / 10);
    },
  );
});
