/**
 * The lab's real-server application: an HTTP server that answers with the client address
 * and port it sees through accept()/getpeername() — the LB's local address until the
 * real-server TOA reader is attached, the real client after. Listens on [::] (dual stack,
 * like most production servers).
 *
 *   GET /          "<name> saw client <addr>:<port>" (text), or JSON with ?json
 *   POST /echo     the request body back
 * and a plain TCP echo service on --echo-port (integrity tests: bytes in = bytes out), with a
 * UDP one on the same port that answers each datagram with "<name> " and the datagram.
 *
 * With --saved-syn it reads the client address the way a server without eBPF can: from the
 * TOA in the saved SYN (src/rs/saved_syn.ts; the tunvs service needs toa.inSyn).
 *
 * Usage: node demo_server.js --name rs1 --port 8080 [--echo-port 9000] [--saved-syn]
 */

import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { clientAddress, enableSavedSyn } from '../rs/saved_syn.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

const name = arg('name', 'rs');
const port = Number(arg('port', '8080'));

const savedSyn = process.argv.includes('--saved-syn');

const server = createServer((req, res) => {
  const peer = savedSyn
    ? clientAddress(req.socket)
    : { address: (req.socket.remoteAddress ?? '?').replace(/^::ffff:/, ''), port: req.socket.remotePort ?? 0 };
  const addr = peer.address;
  const rport = peer.port;
  if (req.method === 'POST' && req.url === '/echo') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    req.pipe(res);
    return;
  }
  if (req.url?.includes('json') === true) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify({ server: name, clientAddress: addr, clientPort: rport })}\n`);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`${name} saw client ${addr}:${rport}\n`);
});
server.keepAliveTimeout = 65_000;
const echoPort = Number(arg('echo-port', '0'));
if (echoPort > 0) {
  createTcpServer((sock) => {
    sock.on('error', () => sock.destroy());
    sock.pipe(sock);
  }).listen({ port: echoPort, host: '::', backlog: 4096 });
  const udp = createSocket({ type: 'udp6', ipv6Only: false });
  udp.on('message', (msg, from) => udp.send(Buffer.concat([Buffer.from(`${name} `), msg]), from.port, from.address));
  udp.bind(echoPort, '::');
}
server.listen(port, '::', () => {
  if (savedSyn) enableSavedSyn(server);
  console.log(`${name} listening on [::]:${port}${savedSyn ? ' (client address from the saved SYN)' : ''}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
