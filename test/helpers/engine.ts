/** Engine fixtures for tests: a lab-like service set and a one-packet driver. */

import { expect } from 'vitest';
import { Engine, type EngineOptions } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { VERDICT_DROP, VERDICT_FORWARD } from '../../src/nat/verdict.js';
import { IdRegistry, resolveServices, serviceWithDefaults, type ServiceSpec } from '../../src/service/service.js';
import { checksumsOk } from './packets.js';

export const V4 = {
  client: '198.18.100.7',
  vip: '198.18.0.100',
  lip: '198.18.2.1',
  rs1: '198.18.1.11',
  rs2: '198.18.1.12',
};
export const V6 = {
  client: 'fd00:18:64::7',
  vip: 'fd00:18::100',
  lip: 'fd00:18:2::1',
  rs1: 'fd00:18:1::11',
  rs2: 'fd00:18:1::12',
};

export function labServices(overrides: Partial<ServiceSpec> = {}): ServiceSpec[] {
  return [
    serviceWithDefaults({
      vip: V4.vip,
      port: 80,
      scheduler: 'rr',
      realServers: [{ address: V4.rs1, port: 8080, weight: 1 }],
      localAddresses: [V4.lip],
      ...overrides,
    }),
    serviceWithDefaults({
      vip: V6.vip,
      port: 80,
      scheduler: 'rr',
      realServers: [{ address: V6.rs1, port: 8080, weight: 1 }],
      localAddresses: [V6.lip],
      ...overrides,
    }),
    serviceWithDefaults({
      protocol: 'udp',
      vip: V4.vip,
      port: 53,
      realServers: [{ address: V4.rs1, port: 5353, weight: 1 }],
      localAddresses: [V4.lip],
    }),
    serviceWithDefaults({
      protocol: 'udp',
      vip: V6.vip,
      port: 53,
      realServers: [{ address: V6.rs1, port: 5353, weight: 1 }],
      localAddresses: [V6.lip],
    }),
  ];
}

export function makeEngine(specs: ServiceSpec[] = labServices(), opts: EngineOptions = {}): Engine {
  return new Engine({ capacity: 4096, seed: 12345, nowMs: 0, ...opts }, resolveServices(specs, new IdRegistry()));
}

/** Give `b` the ISN key and SYN-cookie secret of `a`, so both make the same sequence numbers
 * and cookies: engines compared packet for packet. */
export function shareSecrets(a: Engine, b: Engine): void {
  (b.ctx as { isn: unknown }).isn = a.ctx.isn;
  (b.ctx as { cookies: unknown }).cookies = a.ctx.cookies;
}

/** Run one packet through the engine; forwarded packets must have valid checksums. */
export class Driver {
  readonly ring = new PacketRing(1);
  nowMs = 0;

  constructor(readonly engine: Engine) {}

  send(pkt: Uint8Array): { out: Uint8Array; verdict: number; reason: number } {
    this.ring.put(0, pkt);
    this.engine.processBurst(this.ring, 1, this.nowMs);
    const verdict = this.ring.verdicts[0]!;
    const out = this.ring.get(0);
    if (verdict === VERDICT_FORWARD) {
      const ok = checksumsOk(out);
      expect(ok, 'forwarded packet checksums (independent full computation)').toEqual({ ip: true, l4: true });
    }
    return { out, verdict, reason: this.ring.aux[0]! };
  }

  forward(pkt: Uint8Array): Uint8Array {
    const r = this.send(pkt);
    expect(r.verdict, `expected FORWARD, got verdict ${r.verdict} reason ${r.reason}`).toBe(VERDICT_FORWARD);
    return r.out;
  }

  drop(pkt: Uint8Array): number {
    const r = this.send(pkt);
    expect(r.verdict).toBe(VERDICT_DROP);
    return r.reason;
  }

  /** The only live session (tests with one flow). */
  session(): ReturnType<Engine['describe']> {
    const ids = [...this.engine.sessionIds()];
    expect(ids.length).toBe(1);
    return this.engine.describe(ids[0]!);
  }
}
