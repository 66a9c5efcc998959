/**
 * The lab's judge of TCP checksums (src/lab/capture.ts): tshark's verdict, with a field of
 * 0xffff where the checksum comes to zero counted good, as Linux writes it when it completes
 * such a checksum (tshark calls it bad). A capture file made here, read back by tshark.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCapture, tcpChecksumGood } from '../../src/lab/capture.js';
import { tcp } from '../helpers/packets.js';

const dir = mkdtempSync(join(tmpdir(), 'tunvs-capture-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pcap file (Ethernet) of IP packets `packets`. */
function pcap(packets: Uint8Array[]): string {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20); // LINKTYPE_ETHERNET
  const records = packets.map((p) => {
    const frame = Buffer.concat([
      Buffer.alloc(12, 2),
      Buffer.from([p[0]! >> 4 === 6 ? 0x86 : 0x08, p[0]! >> 4 === 6 ? 0xdd : 0x00]),
      p,
    ]);
    const r = Buffer.alloc(16);
    r.writeUInt32LE(frame.length, 8);
    r.writeUInt32LE(frame.length, 12);
    return Buffer.concat([r, frame]);
  });
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.pcap`);
  writeFileSync(file, Buffer.concat([header, ...records]));
  return file;
}

/** An ACK of `family` whose two payload bytes make its checksum come to zero, with its
 * checksum field set to `field` (undefined: as computed). */
function zeroSumAck(family: 4 | 6, field?: number): Uint8Array {
  const [src, dst] = family === 4 ? ['198.18.2.1', '198.18.20.21'] : ['fd18:18:2::1', 'fd18:18:20::21'];
  const spec = { src, dst, sport: 40000, dport: 9600, seq: 1, ack: 2, flags: 0x10 };
  const l4 = family === 4 ? 20 : 40;
  // With a zero word as payload the checksum is c; with c as the payload word it is zero.
  const c = tcp({ ...spec, payload: new Uint8Array(2) });
  const p = tcp({ ...spec, payload: c.slice(l4 + 16, l4 + 18) });
  if (field !== undefined) new DataView(p.buffer).setUint16(l4 + 16, field);
  return p;
}

describe('the lab’s TCP checksum verdict', () => {
  it.each([4, 6] as const)(
    'IPv%i: 0x0000 and 0xffff are good for a checksum that comes to zero; anything else is bad',
    (family) => {
      const packets = [zeroSumAck(family), zeroSumAck(family, 0xffff), zeroSumAck(family, 0x1234)];
      expect(new DataView(packets[0]!.buffer).getUint16((family === 4 ? 20 : 40) + 16)).toBe(0);
      expect(readCapture(pcap(packets)).map((s) => s.tcpChecksumGood)).toEqual([true, true, false]);
    },
  );

  it('0xffff is good only where the checksum comes to zero', () => {
    expect(tcpChecksumGood('0', '0xffff', '0x0000')).toBe(true);
    expect(tcpChecksumGood('0', '0xffff', '0x8a3c')).toBe(false);
    expect(tcpChecksumGood('0', '0x1234', '0x0000')).toBe(false);
    expect(tcpChecksumGood('1', '0x1234', '0x1234')).toBe(true);
    expect(tcpChecksumGood('2', '0xffff', '')).toBe(false); // not verified: nothing calculated
    expect(tcpChecksumGood(undefined, undefined, undefined)).toBe(false);
  });
});
