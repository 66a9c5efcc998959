import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probe } from '../../src/control/health.js';
import { HEALTH_DEFAULT } from '../../src/service/service.js';

let server: Server;
let port = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/bad') res.writeHead(503).end('no');
    else res.writeHead(200).end('all good here');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('health probes (loopback)', () => {
  it('tcp: a listening port passes, a closed one fails', async () => {
    expect(await probe({ ...HEALTH_DEFAULT, type: 'tcp' }, '127.0.0.1', port)).toBeUndefined();
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const p = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    expect(await probe({ ...HEALTH_DEFAULT, type: 'tcp' }, '127.0.0.1', p)).toMatch(/ECONNREFUSED/);
  });

  it('http: status and body are checked', async () => {
    const http = { ...HEALTH_DEFAULT, type: 'http' as const };
    expect(await probe(http, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, expectBody: 'good' }, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, expectBody: 'great' }, '127.0.0.1', port)).toMatch(/body does not contain/);
    expect(await probe({ ...http, path: '/bad' }, '127.0.0.1', port)).toBe('HTTP 503, expected 200');
    expect(await probe({ ...http, path: '/bad', expectStatus: 503 }, '127.0.0.1', port)).toBeUndefined();
  });
});
