/**
 * Load generators for the lab benchmark, run inside the client namespace by lab_bench.ts.
 * Each prints one JSON line. Every run is bounded by its duration.
 *
 *   node client.js http URL CONNECTIONS SECONDS [RATE] [READY_FILE]
 *                                                         autocannon, keep-alive: req/s, p50,
 *                                                         p99 (RATE: at most that many req/s;
 *                                                         READY_FILE: created at the first
 *                                                         answer, when its connections are up)
 *   node client.js conns HOST PORT PARALLEL SECONDS [RATE]  a new TCP connection per request
 *                                                         (HTTP/1.0 GET, close): connections/s
 *                                                         (RATE: started at that pace)
 *   node client.js udp HOST PORT FLOWS SECONDS RATE         datagrams from FLOWS sockets (each
 *                                                         a flow), RATE per second in all, each
 *                                                         answered by the lab's UDP echo: sent,
 *                                                         answered, wrong (not the datagram)
 */

import autocannon from 'autocannon';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { connect, isIPv6 } from 'node:net';

const [mode, ...rest] = process.argv.slice(2);

async function http(url: string, connections: number, seconds: number, rate?: number, ready?: string): Promise<void> {
  /** The failed requests by what failed them (an error code, "request timed out", "HTTP 502"). */
  const why: Record<string, number> = {};
  /** When the first of them failed (ms since the epoch, to line up with other clocks). */
  const errorsAt: number[] = [];
  const count = (k: string): void => {
    why[k] = (why[k] ?? 0) + 1;
    if (errorsAt.length < 20) errorsAt.push(Date.now());
  };
  /** READY_FILE written (once: the response handler runs per request). */
  let announced = false;
  const r = await new Promise<autocannon.Result>((resolve, reject) => {
    const job = autocannon({ url, connections, duration: seconds, ...(rate ? { overallRate: rate } : {}) }, (e, res) =>
      e ? reject(e as Error) : resolve(res),
    );
    job.on('reqError', (e: NodeJS.ErrnoException) => count(e.code ?? e.message));
    job.on('response', (_client, status: number) => {
      if (ready !== undefined && !announced) {
        writeFileSync(ready, '');
        announced = true;
      }
      if (status < 200 || status > 299) count(`HTTP ${status}`);
    });
  });
  console.log(
    JSON.stringify({
      reqPerSec: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      // autocannon counts a timeout among its errors too.
      errors: r.errors + r.non2xx,
      why,
      errorsAt,
      total: r.requests.total,
    }),
  );
}

async function conns(host: string, port: number, parallel: number, seconds: number, rate?: number): Promise<void> {
  const started = Date.now();
  const deadline = started + seconds * 1000;
  // Paced: connection k starts no earlier than k / rate seconds in, whichever worker is free.
  let paced = 0;
  const pace = async (): Promise<void> => {
    if (!rate) return;
    const due = started + (paced++ * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  };
  let done = 0;
  let errors = 0;
  // Connects that took a SYN retransmission (Linux's first SYN RTO is 1 s): a SYN the server
  // refused (PAWS, a tuple in TIME_WAIT) or one lost on the way.
  let slowConnects = 0;
  const request = Buffer.from(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = Date.now();
      const s = connect({ host, port });
      s.setNoDelay(true);
      s.on('connect', () => {
        if (Date.now() - t0 >= 900) slowConnects++;
        s.write(request);
      });
      s.on('data', () => undefined);
      s.on('end', () => {
        done++;
        s.destroy();
        resolve();
      });
      s.on('error', () => {
        errors++;
        s.destroy();
        resolve();
      });
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    });
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < deadline) {
        await pace();
        if (Date.now() < deadline) await one();
      }
    }),
  );
  console.log(
    JSON.stringify({ connPerSec: done / ((Date.now() - started) / 1000), errors, total: done, slowConnects }),
  );
}

async function udp(
  host: string,
  port: number,
  flows: number,
  seconds: number,
  rate: number,
  largeEvery = 0,
): Promise<void> {
  const sockets = Array.from({ length: flows }, () => createSocket(isIPv6(host) ? 'udp6' : 'udp4'));
  let sent = 0;
  let answered = 0;
  let wrong = 0;
  // The lab's UDP echo answers "<server> <datagram>"; each datagram is unique.
  const pending = new Set<string>();
  for (const s of sockets) {
    s.on('message', (m) => {
      const text = m.toString();
      const q = text.slice(text.indexOf(' ') + 1);
      if (pending.delete(q)) answered++;
      else wrong++;
    });
    s.on('error', () => undefined);
  }
  const started = Date.now();
  while (Date.now() - started < seconds * 1000) {
    const due = started + (sent * 1000) / rate;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    // Every largeEvery-th datagram is 3,000 bytes: fragmented both ways (the LB reassembles).
    const id = `q${sent}-${started}`;
    const q = largeEvery > 0 && sent % largeEvery === 0 ? `${id} ${'x'.repeat(3000 - id.length - 1)}` : id;
    pending.add(q);
    sockets[sent % flows]!.send(q, port, host);
    sent++;
  }
  // The last answers: a datagram not answered within 2 s is lost.
  await new Promise((r) => setTimeout(r, 2000));
  for (const s of sockets) s.close();
  console.log(JSON.stringify({ sent, answered, wrong, lost: pending.size }));
}

const rate = (s: string | undefined): number | undefined => (s === undefined ? undefined : Number(s));
if (mode === 'http') await http(rest[0]!, Number(rest[1]), Number(rest[2]), rate(rest[3]), rest[4]);
else if (mode === 'conns') await conns(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]), rate(rest[4]));
else if (mode === 'udp')
  await udp(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]), Number(rest[4]), Number(rest[5] ?? 0));
else {
  console.error(
    'usage: client.js http URL CONNECTIONS SECONDS [RATE] | conns HOST PORT PARALLEL SECONDS [RATE] | udp HOST PORT FLOWS SECONDS RATE [LARGE_EVERY]',
  );
  process.exit(2);
}
