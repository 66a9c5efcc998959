import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { runCheck } from '../../src/control/checks/index.js';
import { HEALTH_DEFAULT, type HealthCheckSpec } from '../../src/service/service.js';

/** One check of 127.0.0.1:port: undefined when it passed, else its error. */
async function probe(spec: HealthCheckSpec, host: string, port: number): Promise<string | undefined> {
  const r = await runCheck(spec, { address: host, port, service: 'web' });
  return r.ok ? undefined : r.error;
}

let server: Server;
let port = 0;
/** An HTTPS server with a self-signed certificate (made here by openssl), noting what each
 * request's Host and TLS server name were. */
let tls: TlsServer;
let tlsPort = 0;
const seen: { host?: string; servername?: string | false | null }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/bad') res.writeHead(503).end('no');
    else res.writeHead(200).end('all good here');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'tunvs-health-'));
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-subj',
        '/CN=svc.example',
        '-days',
        '1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'));
    tls = createTlsServer({ key, cert }, (req, res) => {
      seen.push({ host: req.headers.host, servername: (req.socket as TLSSocket).servername });
      res.writeHead(req.url === '/bad' ? 503 : 200).end('secure and good');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
  tlsPort = (tls.address() as AddressInfo).port;
});
afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => tls.close(() => r()));
});

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

  it('http: a regular expression must match, or must not; the MD5 of the whole body', async () => {
    const http = { ...HEALTH_DEFAULT, type: 'http' as const };
    expect(await probe({ ...http, expectBodyMatch: '^all \\w+ here$' }, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, expectBodyMatch: 'bad|no' }, '127.0.0.1', port)).toBe('body does not match /bad|no/');
    expect(await probe({ ...http, expectBodyNoMatch: 'bad|no' }, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, path: '/bad', expectStatus: 503, expectBodyNoMatch: 'no' }, '127.0.0.1', port)).toBe(
      'body matches /no/',
    );
    const md5 = createHash('md5').update('all good here').digest('hex');
    expect(await probe({ ...http, expectBodyMd5: md5 }, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, expectBodyMd5: md5.toUpperCase() }, '127.0.0.1', port)).toBeUndefined();
    expect(await probe({ ...http, expectBodyMd5: '0'.repeat(32) }, '127.0.0.1', port)).toBe(
      `body MD5 ${md5}, expected ${'0'.repeat(32)}`,
    );
  });

  it('https: status and body over TLS, the certificate not verified (self-signed here); host is the Host and the server name', async () => {
    const https = { ...HEALTH_DEFAULT, type: 'https' as const };
    expect(await probe({ ...https, expectBody: 'secure' }, '127.0.0.1', tlsPort)).toBeUndefined();
    expect(await probe({ ...https, path: '/bad' }, '127.0.0.1', tlsPort)).toBe('HTTP 503, expected 200');
    expect(seen.at(-1)).toEqual({ host: `127.0.0.1:${tlsPort}`, servername: false });
    expect(await probe({ ...https, host: 'svc.example' }, '127.0.0.1', tlsPort)).toBeUndefined();
    expect(seen.at(-1)).toEqual({ host: 'svc.example', servername: 'svc.example' });
    expect(await probe({ ...https, host: '198.18.0.100:8443' }, '127.0.0.1', tlsPort)).toBeUndefined();
    expect(seen.at(-1)).toEqual({ host: '198.18.0.100:8443', servername: false });
    // The wrong protocol fails either way.
    expect(await probe(https, '127.0.0.1', port)).toMatch(/^HTTP: /);
    expect(await probe({ ...https, type: 'http' }, '127.0.0.1', tlsPort)).toMatch(/^HTTP: |^HTTP 400/);
  });

  it('config: type https and host are taken; host on a tcp check, or not a host name, is refused', () => {
    const cfg = (healthCheck: object) =>
      parseConfig({
        services: [
          { vip: '198.18.0.100', port: 443, realServers: [{ address: '198.18.1.11', port: 443 }], healthCheck },
        ],
      });
    expect(cfg({ type: 'https', host: 'svc.example' }).services[0]!.healthCheck).toMatchObject({
      type: 'https',
      host: 'svc.example',
      path: '/',
      expectStatus: 200,
    });
    expect(() => cfg({ type: 'tcp', host: 'svc.example' })).toThrow(
      /healthCheck\.host: a tcp check takes no host: it is for type http or https/,
    );
    expect(() => cfg({ type: 'http', host: 'a b' })).toThrow(/healthCheck\.host: "a b" is not valid: use a host name/);
    expect(() => cfg({ type: 'ftp' })).toThrow(/healthCheck\.type/);
  });
});
