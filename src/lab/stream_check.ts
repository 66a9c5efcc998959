/**
 * Long-lived connections for failover tests, from the lab's client namespace: `connections`
 * TCP connections to an echo service, each sending a deterministic byte stream in small
 * chunks every CHUNK_EVERY_MS for `seconds`, checking every echoed byte in order. At the end
 * each connection stops sending, waits for the rest of its echo, and closes: DRAIN_MS, and
 * longer (up to DRAIN_MAX_MS) while echoes still arrive — a connection that a failure left in
 * TCP's retransmission backoff on a slow machine is slow, not broken. Prints JSON:
 * per-connection outcome counts, bytes, the longest gap without data per connection (the
 * failover stall), median and max, and the first incomplete connections (bytes sent and
 * echoed, milliseconds since their last echo): whether they were dead or still recovering.
 *
 * Usage: node stream_check.js HOST PORT CONNECTIONS SECONDS [READY_FILE]
 *   READY_FILE: written once every connection is established (the test waits for it).
 */

import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';

const [host, portText, countText, secondsText, readyFile] = process.argv.slice(2);
if (host === undefined || portText === undefined || countText === undefined || secondsText === undefined) {
  console.error('usage: stream_check HOST PORT CONNECTIONS SECONDS [READY_FILE]');
  process.exit(2);
}
const port = Number(portText);
const count = Number(countText);
const seconds = Number(secondsText);
const CHUNK = 2048;
const CHUNK_EVERY_MS = 100;
const DRAIN_MS = 15_000;
/** Past DRAIN_MS, wait on while some connection got an echo within DRAIN_PROGRESS_MS: one
 * retransmission timeout after six doublings from 200 ms (12.8 s) fits in it. */
const DRAIN_PROGRESS_MS = 14_000;
const DRAIN_MAX_MS = 30_000;
/** Incomplete connections listed in the output. */
const INCOMPLETE_SHOWN = 10;

/** Byte `i` of connection `c`'s stream. */
function byteAt(c: number, i: number): number {
  return (Math.imul(i ^ (c * 0x9e3779b9), 0x85ebca6b) >>> 24) & 255;
}

interface Conn {
  sock: Socket;
  sent: number;
  received: number;
  corrupted: number;
  error?: string;
  lastData: number;
  maxGap: number;
  closed: boolean;
}

const conns: Conn[] = [];
let established = 0;
let stopSending = false;

function open(c: number): Conn {
  const sock = connect({ host, port });
  const st: Conn = { sock, sent: 0, received: 0, corrupted: 0, lastData: 0, maxGap: 0, closed: false };
  sock.setNoDelay(true);
  sock.on('connect', () => {
    established++;
    st.lastData = Date.now();
    if (established === count && readyFile) writeFileSync(readyFile, `${Date.now()}\n`);
  });
  sock.on('data', (d: Buffer) => {
    const now = Date.now();
    if (!stopSending) st.maxGap = Math.max(st.maxGap, now - st.lastData);
    st.lastData = now;
    for (let k = 0; k < d.length; k++) if (d[k] !== byteAt(c, st.received + k)) st.corrupted++;
    st.received += d.length;
  });
  sock.on('error', (e: Error & { code?: string }) => (st.error = e.code ?? e.message));
  sock.on('close', () => (st.closed = true));
  return st;
}

for (let c = 0; c < count; c++) conns.push(open(c));

const chunk = Buffer.alloc(CHUNK);
const sender = setInterval(() => {
  conns.forEach((st, c) => {
    if (st.closed || st.error || !st.sock.writable || st.sock.connecting) return;
    for (let k = 0; k < CHUNK; k++) chunk[k] = byteAt(c, st.sent + k);
    st.sock.write(Buffer.from(chunk));
    st.sent += CHUNK;
  });
}, CHUNK_EVERY_MS);

setTimeout(() => {
  stopSending = true;
  clearInterval(sender);
  const started = Date.now();
  const complete = (st: Conn): boolean => st.error !== undefined || st.closed || st.received >= st.sent;
  const waitEcho = setInterval(() => {
    const now = Date.now();
    const open = conns.filter((st) => !complete(st));
    const recovering = open.some((st) => now - st.lastData < DRAIN_PROGRESS_MS);
    const waited = now - started;
    if (open.length > 0 && (waited < DRAIN_MS || (recovering && waited < DRAIN_MAX_MS))) return;
    clearInterval(waitEcho);
    for (const st of conns) st.sock.end();
    const gaps = conns.map((st) => st.maxGap).sort((a, b) => a - b);
    const ok = conns.filter((st) => !st.error && st.corrupted === 0 && st.received === st.sent && st.sent > 0);
    const errors: Record<string, number> = {};
    for (const st of conns) if (st.error) errors[st.error] = (errors[st.error] ?? 0) + 1;
    console.log(
      JSON.stringify({
        connections: count,
        established,
        ok: ok.length,
        reset: conns.filter((st) => st.error === 'ECONNRESET').length,
        errors,
        corruptedBytes: conns.reduce((n, st) => n + st.corrupted, 0),
        bytesSent: conns.reduce((n, st) => n + st.sent, 0),
        bytesLost: conns.reduce((n, st) => n + Math.max(0, st.sent - st.received), 0),
        stallMsMedian: gaps[Math.floor(gaps.length / 2)] ?? 0,
        stallMsMax: gaps[gaps.length - 1] ?? 0,
        drainMs: waited,
        incomplete: open.slice(0, INCOMPLETE_SHOWN).map((st) => ({
          conn: conns.indexOf(st),
          port: st.sock.localPort,
          sent: st.sent,
          echoed: st.received,
          msSinceEcho: now - st.lastData,
        })),
      }),
    );
    setTimeout(() => process.exit(0), 200);
  }, 100);
}, seconds * 1000);
