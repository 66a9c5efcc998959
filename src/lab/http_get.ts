/**
 * A tiny HTTP GET for the lab's client namespace (no curl needed): prints the body.
 * Usage: node http_get.js URL [count]   — `count` sequential requests, new connection each.
 */

import { get } from 'node:http';

const url = process.argv[2];
const count = Number(process.argv[3] ?? '1');
if (url === undefined) {
  console.error('usage: http_get URL [count]');
  process.exit(2);
}

function once(): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url!, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout waiting for ${url}`)));
    req.on('error', reject);
  });
}

for (let i = 0; i < count; i++) {
  try {
    process.stdout.write(await once());
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
    break;
  }
}
