/**
 * tunvs's XDP decapsulator for TUNNEL-mode real servers (`tunvs rs decap`), on its own: two
 * namespaces of its own joined by a veth, the decapsulator on the server's end with one GUE
 * port. A GUE datagram to that port arrives at the server's socket as the inner packet (its
 * source the client's), IPv4 and IPv6; one to another port, or one the decapsulator must not
 * take (a control message, the wrong inner family), reaches the UDP socket on its port as
 * sent. The lab's TUNNEL tests run the whole path through tunvs; this one shows what the
 * program takes and what it leaves. Needs root; removes what it made, also on failure.
 */

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { distSrc } from '../../src/paths.js';
import { ipBatch, inNs, runInNs } from '../../src/lab/netns.js';
import { csumFromSum, sumWords } from '../../src/packet/checksum.js';
import { parseAddress } from '../../src/service/addr.js';

const root = process.getuid?.() === 0;
const tag = `td${process.pid % 100000}`;
const LB = `${tag}-lb`;
const RS = `${tag}-rs`;
const GUE_PORT = 6080;
const OTHER_PORT = 6081;
const APP_PORT = 7000;
const ADDR = {
  4: { lb: '198.18.250.1', rs: '198.18.250.2', client: '198.18.251.9', vip: '198.18.0.77' },
  6: { lb: 'fd18:18:250::1', rs: 'fd18:18:250::2', client: 'fd18:18:251::9', vip: 'fd18:18::77' },
} as const;

/** The inner packet: a UDP datagram from the client to VIP:APP_PORT with `text`, checksummed. */
function innerPacket(v: 4 | 6, text: string): Buffer {
  const a = ADDR[v];
  const body = Buffer.from(text);
  const udp = Buffer.alloc(8 + body.length);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(APP_PORT, 2);
  udp.writeUInt16BE(udp.length, 4);
  body.copy(udp, 8);
  const addr = (s: string): Buffer => {
    const words = parseAddress(s)!.words;
    const b = Buffer.alloc(v === 4 ? 4 : 16);
    for (let k = 0; k < b.length / 4; k++) b.writeInt32BE(words[k]!, 4 * k);
    return b;
  };
  const src = addr(a.client);
  const dst = addr(a.vip);
  const pseudo = Buffer.concat([src, dst, Buffer.from([0, 17, udp.length >> 8, udp.length & 255])]);
  const sum = csumFromSum(sumWords(pseudo, 0, pseudo.length) + sumWords(udp, 0, udp.length));
  udp.writeUInt16BE(sum || 0xffff, 6);
  if (v === 6) {
    const h = Buffer.alloc(40);
    h.writeUInt32BE(0x60000000, 0);
    h.writeUInt16BE(udp.length, 4);
    h[6] = 17;
    h[7] = 64;
    src.copy(h, 8);
    dst.copy(h, 24);
    return Buffer.concat([h, udp]);
  }
  const h = Buffer.alloc(20);
  h[0] = 0x45;
  h.writeUInt16BE(20 + udp.length, 2);
  h.writeUInt16BE(0x4000, 6);
  h[8] = 64;
  h[9] = 17;
  src.copy(h, 12);
  dst.copy(h, 16);
  h.writeUInt16BE(csumFromSum(sumWords(h, 0, 20)), 10);
  return Buffer.concat([h, udp]);
}

/** A GUE header (version 0) before `inner`: `first` byte (Ver, C, Hlen), protocol `proto`. */
function gue(inner: Buffer, proto: number, first = 0): Buffer {
  return Buffer.concat([Buffer.from([first, proto, 0, 0]), inner]);
}

/** The server's sockets for 2 s: what each received, as `port from what` lines: the text
 * of what reached the application's port, the first 4 bytes (hex) of what reached another. */
function receive(v: 4 | 6): Promise<{ code: number; out: string }> {
  const any = v === 4 ? '0.0.0.0' : '::';
  const script = `const d = require('dgram'); const socks = [];
    for (const [host, port] of [['${ADDR[v].vip}', ${APP_PORT}], ['${any}', ${GUE_PORT}], ['${any}', ${OTHER_PORT}]]) {
      const s = d.createSocket({ type: 'udp${v}'${v === 6 ? ', ipv6Only: true' : ''} });
      s.on('message', (m, r) => console.log(port + ' ' + r.address + ' ' + (port === ${APP_PORT} ? m.toString() : m.subarray(0, 4).toString('hex'))));
      s.bind(port, host); socks.push(s);
    }
    setTimeout(() => socks.forEach((s) => s.close()), 2000);`;
  return runInNs(RS, [process.execPath, '-e', script], true);
}

/** Send each datagram from the LB's end to the server's `port`. */
function send(v: 4 | 6, datagrams: [number, Buffer][]): void {
  const script = `const d = require('dgram'); const s = d.createSocket('udp${v}');
    const list = ${JSON.stringify(datagrams.map(([p, b]) => [p, b.toString('hex')]))};
    let n = 0; for (const [port, hex] of list) s.send(Buffer.from(hex, 'hex'), port, '${ADDR[v].rs}', () => { if (++n === list.length) s.close(); });`;
  inNs(LB, [process.execPath, '-e', script]);
}

describe.skipIf(!root)('tunvs rs decap: GUE (and what it leaves alone)', () => {
  beforeAll(() => {
    ipBatch([`netns add ${LB}`, `netns add ${RS}`]);
    ipBatch([`link add eth0 type veth peer name eth0 netns ${RS}`, 'link set eth0 up'], LB);
    ipBatch([`addr add ${ADDR[4].lb}/24 dev eth0`, `addr add ${ADDR[6].lb}/64 dev eth0 nodad`, 'link set lo up'], LB);
    ipBatch(
      [
        'link set eth0 up',
        'link set lo up',
        `addr add ${ADDR[4].rs}/24 dev eth0`,
        `addr add ${ADDR[6].rs}/64 dev eth0 nodad`,
        `addr add ${ADDR[4].vip}/32 dev lo`,
        `addr add ${ADDR[6].vip}/128 dev lo`,
        `route add default via ${ADDR[4].lb}`,
        `route add default via ${ADDR[6].lb}`,
      ],
      RS,
    );
    inNs(RS, [
      process.execPath,
      join(distSrc(), 'cli', 'main.js'),
      'rs',
      'decap',
      'attach',
      '--dev',
      'eth0',
      '--gue-port',
      String(GUE_PORT),
    ]);
  }, 30_000);

  afterAll(() => {
    for (const ns of [LB, RS]) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
      } catch {
        // not made (setup failed before it)
      }
    }
  });

  it.each([4, 6] as const)('IPv%s: GUE to its port arrives as the inner packet; the rest passes as sent', async (v) => {
    const rx = receive(v);
    for (let i = 0; i < 100 && inNs(RS, ['ss', '-Hlun', `sport = :${OTHER_PORT}`]).trim() === ''; i++)
      await new Promise((r) => setTimeout(r, 50));
    const proto = v === 4 ? 4 : 41;
    send(v, [
      [GUE_PORT, gue(innerPacket(v, `inner-v${v}`), proto)],
      [OTHER_PORT, gue(innerPacket(v, 'other port'), proto)],
      [GUE_PORT, gue(innerPacket(v, 'control'), proto, 0x20)], // C set: a control message
      [GUE_PORT, gue(innerPacket(v, 'wrong family'), v === 4 ? 41 : 4)],
    ]);
    const lines = (await rx).out.trim().split('\n').sort();
    const head = (first: number, p: number): string => gue(Buffer.alloc(0), p, first).toString('hex');
    expect(lines).toEqual(
      [
        `${APP_PORT} ${ADDR[v].client} inner-v${v}`,
        `${OTHER_PORT} ${ADDR[v].lb} ${head(0, proto)}`,
        `${GUE_PORT} ${ADDR[v].lb} ${head(0x20, proto)}`,
        `${GUE_PORT} ${ADDR[v].lb} ${head(0, v === 4 ? 41 : 4)}`,
      ].sort(),
    );
  });
});
