/**
 * Data-integrity check through the VIP: N concurrent TCP connections each send `bytes`
 * of pseudo-random data to an echo server and compare the SHA-256 of what comes back.
 * Bounded: gives up after `timeoutSec`, unless by then only a few connections (at most 1%)
 * are still open: those get STRAGGLER_SEC more, one maximal TCP retransmission timeout. Under
 * 1,000 bulk flows on a starved 2-core machine the TUN queue drops packets, and a connection
 * whose retransmissions were dropped several times running waits out a long backoff: slow,
 * not broken. Prints a JSON summary (with how long the stragglers were given).
 *
 * Usage: node echo_check.js HOST PORT CONNECTIONS BYTES TIMEOUT_SEC
 */

import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { LAB } from './topology.js';

const [host, portText, connText, bytesText, timeoutText] = process.argv.slice(2);
const port = Number(portText);
const connections = Number(connText);
const bytes = Number(bytesText);
const timeoutSec = Number(timeoutText ?? '120');
if (!host || !(port > 0) || !(connections > 0) || !(bytes > 0)) {
  console.error('usage: echo_check HOST PORT CONNECTIONS BYTES [TIMEOUT_SEC]');
  process.exit(2);
}

// One random block, rotated per connection, keeps memory small while every stream differs.
const block = randomBytes(bytes + 256);
const started = Date.now();
let ok = 0;
let corrupted = 0;
let failed = 0;
const errors: string[] = [];

/** Bytes echoed back so far per connection still open (what a timeout reports)... */
const progress = new Map<number, number>();
/** ...and its client port (to find its session in `tunvs conns`). */
const ports = new Map<number, number | undefined>();

function one(i: number): Promise<void> {
  return new Promise((resolve) => {
    const data = block.subarray(i % 256, (i % 256) + bytes);
    const want = createHash('sha256').update(data).digest('hex');
    const got = createHash('sha256');
    let received = 0;
    const sock = connect({ host, port });
    const finish = (kind: 'ok' | 'corrupted' | 'failed', why?: string): void => {
      if (kind === 'ok') ok++;
      else if (kind === 'corrupted') corrupted++;
      else failed++;
      if (why && errors.length < 10) errors.push(`#${i}: ${why}`);
      progress.delete(i);
      ports.delete(i);
      sock.destroy();
      resolve();
    };
    progress.set(i, 0);
    sock.on('connect', () => {
      ports.set(i, sock.localPort);
      sock.end(data);
    });
    sock.on('data', (chunk: Buffer) => {
      received += chunk.length;
      progress.set(i, received);
      got.update(chunk);
    });
    sock.on('end', () => {
      if (received !== bytes) finish('corrupted', `received ${received} of ${bytes} bytes`);
      else if (got.digest('hex') !== want) finish('corrupted', 'SHA-256 mismatch');
      else finish('ok');
    });
    sock.on('error', (e) => finish('failed', e.message));
  });
}

const STRAGGLER_SEC = LAB.echoStragglerSec;
let stragglerSec = 0;

const giveUp = (): void => {
  console.log(
    JSON.stringify({
      connections,
      ok,
      corrupted,
      failed: connections - ok - corrupted,
      bytesEachWay: ok * bytes,
      seconds: (Date.now() - started) / 1000,
      stragglerSec,
      // The connections still open, with how much of their echo had come back.
      errors: [
        ...errors,
        `timed out with ${progress.size} open: ${[...progress]
          .slice(0, 10)
          .map(([i, n]) => `#${i} ${n}/${bytes} (port ${ports.get(i) ?? '-'})`)
          .join(', ')}`,
      ],
    }),
  );
  process.exit(1);
};
const timer = setTimeout(() => {
  if (progress.size > Math.max(1, Math.floor(connections / 100))) return giveUp();
  stragglerSec = STRAGGLER_SEC;
  setTimeout(giveUp, STRAGGLER_SEC * 1000).unref();
}, timeoutSec * 1000);

await Promise.all(Array.from({ length: connections }, (_, i) => one(i)));
clearTimeout(timer);
console.log(
  JSON.stringify({
    connections,
    ok,
    corrupted,
    failed,
    bytesEachWay: ok * bytes,
    seconds: (Date.now() - started) / 1000,
    stragglerSec,
    errors,
  }),
);
