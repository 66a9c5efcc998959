/**
 * The engine fuzz loop (test/dataplane/fuzz*.test.ts): bursts of random, template and
 * mutated packets, each slot followed by a canary slot, through one engine. Collects what
 * must never happen: a throw (it propagates), a write outside the packet's slot, a verdict or
 * drop reason the engine does not define, a forwarded packet longer than its slot, and
 * (for packets sent as their template was made) a forwarded or generated packet whose
 * checksums are wrong. With `headroom` (TUN offloads) a slot starts with the template's
 * virtio_net_hdr and partial checksums are completed the way the kernel does before the check.
 */

import { SLOT_SIZE_BYTES } from '../../src/constants.js';
import type { Engine } from '../../src/dataplane/engine.js';
import { PacketRing } from '../../src/dataplane/ring.js';
import { ETH_HEADER_LEN } from '../../src/packet/headers.js';
import {
  DROP_REASON_COUNT,
  VERDICT_DROP,
  VERDICT_FORWARD,
  VERDICT_LINK,
  VERDICT_REDIRECT,
} from '../../src/nat/verdict.js';
import { checksumsOk, refChecksum, upperLayer } from './packets.js';
import type { Rng } from './rng.js';
import { NEEDS_CSUM } from './vnet.js';

/** Session timeouts of a few seconds: a run of a million packets covers ~80 s of the
 * engine's clock, in which sessions of every state expire (RSTs on expiry) and make room. */
export const FUZZ_TIMEOUTS_SEC = {
  established: 3,
  synSent: 2,
  synRecv: 2,
  finWait: 2,
  timeWait: 2,
  close: 1,
  closeWait: 2,
  lastAck: 2,
  udp: 4,
};

export interface FuzzTally {
  sent: number;
  forwarded: number;
  linked: number;
  dropped: number;
  held: number;
  redirected: number;
  generated: number;
  problems: string[];
  /** The engine's clock after the last burst. */
  endMs: number;
}

/** Whether the IP packet `p` is a fragment (its upper layer's checksum covers more than it). */
export function isFragment(p: Uint8Array): boolean {
  if (p.length < 20) return false;
  if (p[0]! >> 4 === 4) return ((p[6]! << 8) | p[7]!) & 0x3fff ? true : false;
  if (p.length < 40) return false;
  return upperLayer(p).proto === 44;
}

/**
 * What a receiver makes of a slot's `len` bytes at `off`: the IP packet (past a virtio_net_hdr
 * of `headroom` bytes and, for a LINK verdict, the Ethernet header), its partial checksum
 * completed as the kernel does (csum_start and csum_offset count from after the header).
 */
export function received(bytes: Uint8Array, off: number, len: number, headroom: number, link: boolean): Uint8Array {
  const frame = bytes.slice(off + headroom, off + len);
  if (headroom > 0 && (bytes[off]! & NEEDS_CSUM) !== 0) {
    const dv = new DataView(bytes.buffer, bytes.byteOffset + off, headroom);
    const start = dv.getUint16(6, true);
    const at = start + dv.getUint16(8, true);
    if (at + 2 <= frame.length) {
      // The field holds the pseudo-header's sum: the kernel sums over it, as here.
      const sum = refChecksum(frame.subarray(start));
      frame[at] = sum >> 8;
      frame[at + 1] = sum & 0xff;
    }
  }
  return link ? frame.subarray(ETH_HEADER_LEN) : frame;
}

/** A packet for a problem's text: its length and first 96 bytes. */
export function hexHead(p: Uint8Array): string {
  return `${p.length} bytes ${Buffer.from(p.subarray(0, 96)).toString('hex')}${p.length > 96 ? '…' : ''}`;
}

/** What a forwarded or generated packet must be: as long as its IP header says, and (unless
 * a fragment) with right checksums, a tunnel's inner packet's too (GUE's: UDP to `guePort`). */
function checkSums(what: string, p: Uint8Array, problems: string[], guePort = 0): void {
  const v4 = p[0]! >> 4 === 4;
  const said = p.length < (v4 ? 20 : 40) ? -1 : v4 ? (p[2]! << 8) | p[3]! : 40 + ((p[4]! << 8) | p[5]!);
  if (said !== p.length) {
    problems.push(`${what}: IP length ${said}, packet ${hexHead(p)}`);
    return;
  }
  if (isFragment(p)) {
    // Its upper layer's checksum covers the whole datagram: only IPv4's header is its own.
    if (v4 && refChecksum(p.subarray(0, (p[0]! & 15) * 4)) !== 0)
      problems.push(`${what}: bad IPv4 header checksum: ${hexHead(p)}`);
    return;
  }
  let ok: { ip: boolean; l4: boolean };
  try {
    ok = checksumsOk(p);
  } catch (e) {
    problems.push(`${what}: unreadable (${(e as Error).message}): ${hexHead(p)}`);
    return;
  }
  if (!ok.ip || !ok.l4) {
    problems.push(`${what}: bad checksum: ${hexHead(p)}`);
    return;
  }
  const { at, proto } = upperLayer(p);
  if (guePort > 0 && proto === 17 && ((p[at + 2]! << 8) | p[at + 3]!) === guePort)
    checkSums(`${what} (inside GUE)`, p.subarray(at + 8 + 4), problems);
}

/** What the engine generated (RSTs, SYN-ACKs, ICMP, fragments, a tunnel's segments): checked,
 * then forgotten as the forwarder does once written. */
function checkGenerated(engine: Engine, headroom: number, t: FuzzTally, guePort: number): void {
  const e = engine.emit;
  for (let g = 0; g < engine.emitCount && t.problems.length <= 5; g++) {
    t.generated++;
    const len = e.lens[g]!;
    if (len > e.slotSize) t.problems.push(`generated length ${len} beyond the slot`);
    else
      checkSums(
        'generated',
        received(e.bytes, g * e.slotSize, len, headroom, e.verdicts[g] === VERDICT_LINK),
        t.problems,
        guePort,
      );
  }
  engine.clearEmitted();
}

/**
 * Send `count` packets through `engine` in bursts of 64 (each followed by a canary slot),
 * drawn from `pool` (as made, mutated, or cut short) or random bytes. The engine's clock
 * moves 5 ms a burst (its timers with it); with FUZZ_TIMEOUTS_SEC sessions expire during the
 * run and the table does not stay full.
 */
export function fuzzBursts(
  engine: Engine,
  pool: readonly Uint8Array[],
  count: number,
  rng: Rng,
  {
    headroom = 0,
    slotBytes = SLOT_SIZE_BYTES,
    afterBurst,
    guePort = 0,
    startMs = 0,
  }: {
    headroom?: number;
    slotBytes?: number;
    /** Called after each burst with the problems so far and the engine's clock. */
    afterBurst?: (problems: string[], nowMs: number) => void;
    /** The engine's clock before the first burst (a later run on an engine that ran before). */
    startMs?: number;
    /** GUE's UDP port: what goes there is checked inside too. */
    guePort?: number;
  } = {},
): FuzzTally {
  const HALF = 64;
  const ring = new PacketRing(HALF * 2, slotBytes, undefined, headroom);
  const slot = ring.slotSize;
  const CANARY = 0xa5;
  const canaryRow = Buffer.alloc(slot, CANARY);
  const wellFormed = new Uint8Array(HALF);
  const t: FuzzTally = {
    sent: 0,
    forwarded: 0,
    linked: 0,
    dropped: 0,
    held: 0,
    redirected: 0,
    generated: 0,
    problems: [],
    endMs: startMs,
  };
  const problems = t.problems;
  let nowMs = startMs;
  while (t.sent < count) {
    for (let k = 0; k < HALF; k++) {
      const i = 2 * k;
      const off = i * slot;
      const kind = rng.below(10);
      let len: number;
      if (kind < 2) {
        // Random bytes, often with a plausible version nibble (after a header of zeros).
        len = headroom + rng.below(200);
        ring.bytes.fill(0, off, off + headroom);
        for (let j = off + headroom; j < off + len; j++) ring.bytes[j] = rng.below(256);
        if (len > headroom && rng.below(2) === 0)
          ring.bytes[off + headroom] = (rng.below(2) ? 0x45 : 0x60) | (ring.bytes[off + headroom]! & 0x0f);
        wellFormed[k] = 0;
      } else {
        const p = pool[rng.below(pool.length)]!;
        ring.bytes.set(p, off);
        len = p.length;
        wellFormed[k] = kind < 6 ? 1 : 0;
        if (kind >= 6) {
          // Mutate: flip bytes in the headers (a virtio_net_hdr's too), or cut it short.
          const flips = 1 + rng.below(4);
          for (let f = 0; f < flips; f++) ring.bytes[off + rng.below(Math.min(len, headroom + 80))] = rng.below(256);
          if (rng.below(4) === 0) len = rng.below(len + 1);
        }
      }
      ring.lens[i] = len;
      // The odd neighbour is a canary slot: empty (length 0) and filled with a pattern.
      ring.bytes.set(canaryRow, off + slot);
      ring.lens[i + 1] = 0;
    }
    nowMs += 5;
    engine.processBurst(ring, HALF * 2, nowMs);
    // (processBurst moves the timers first: expiry's RSTs, SYN proxy retries, fragments
    // timed out.)
    checkGenerated(engine, headroom, t, guePort);
    engine.handedOver(); // no other worker here to take them
    afterBurst?.(problems, nowMs);
    for (let k = 0; k < HALF; k++) {
      const i = 2 * k;
      const v = ring.verdicts[i]!;
      if (v === VERDICT_FORWARD || v === VERDICT_LINK) {
        if (v === VERDICT_FORWARD) t.forwarded++;
        else t.linked++;
        const len = ring.lens[i]!;
        if (len > slot) problems.push(`forwarded length ${len} beyond the slot`);
        else if (wellFormed[k] === 1)
          checkSums('forwarded', received(ring.bytes, i * slot, len, headroom, v === VERDICT_LINK), problems, guePort);
      } else if (v === VERDICT_DROP) {
        const why = ring.aux[i]!;
        // 0: held, not dropped (a fragment waiting for the rest of its datagram).
        if (why === 0) t.held++;
        else t.dropped++;
        if (why < 0 || why >= DROP_REASON_COUNT) problems.push(`drop without a known reason: ${why}`);
      } else if (v === VERDICT_REDIRECT) t.redirected++;
      else problems.push(`unknown verdict ${v}`);
      const neighbour = Buffer.from(ring.bytes.buffer, (i + 1) * slot, slot);
      if (!neighbour.equals(canaryRow))
        problems.push(`slot ${i} wrote into its neighbour at byte ${neighbour.findIndex((b) => b !== CANARY)}`);
      if (problems.length > 5) break;
    }
    if (problems.length > 5) break;
    t.sent += HALF;
  }
  t.endMs = nowMs;
  return t;
}
