/**
 * Load generators for the lab benchmark, run inside the client namespace by lab_bench.ts.
 * Each prints one JSON line. Every run is bounded by its duration.
 *
 *   node client.js http URL CONNECTIONS SECONDS    autocannon, keep-alive: req/s, p50, p99
 *   node client.js conns HOST PORT PARALLEL SECONDS  a new TCP connection per request
 *                                                  (HTTP/1.0 GET, close): connections/s
 */

import autocannon from 'autocannon';
import { connect } from 'node:net';

const [mode, ...rest] = process.argv.slice(2);

async function http(url: string, connections: number, seconds: number): Promise<void> {
  const r = await autocannon({ url, connections, duration: seconds });
  console.log(
    JSON.stringify({
      reqPerSec: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      errors: r.errors + r.timeouts + r.non2xx,
      total: r.requests.total,
    }),
  );
}

async function conns(host: string, port: number, parallel: number, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  const request = Buffer.from(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const s = connect({ host, port });
      s.setNoDelay(true);
      s.on('connect', () => s.write(request));
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
  const started = Date.now();
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (Date.now() < deadline) await one();
    }),
  );
  console.log(JSON.stringify({ connPerSec: done / ((Date.now() - started) / 1000), errors, total: done }));
}

if (mode === 'http') await http(rest[0]!, Number(rest[1]), Number(rest[2]));
else if (mode === 'conns') await conns(rest[0]!, Number(rest[1]), Number(rest[2]), Number(rest[3]));
else {
  console.error('usage: client.js http URL CONNECTIONS SECONDS | conns HOST PORT PARALLEL SECONDS');
  process.exit(2);
}
