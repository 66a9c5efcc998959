/**
 * Does the real-server application see *this* client? From the lab's client namespace: open
 * `connections` TCP connections at once, each sends one HTTP/1.0 GET, and each answer must
 * name the connection's own address and port ("... saw client ADDR:PORT", which every lab
 * server writes). Prints a JSON summary.
 *
 * Usage: node peer_check.js HOST PORT CONNECTIONS [TIMEOUT_SEC]
 */

import { connect } from 'node:net';

const [host, portText, countText, timeoutText] = process.argv.slice(2);
if (host === undefined || portText === undefined || countText === undefined) {
  console.error('usage: peer_check HOST PORT CONNECTIONS [TIMEOUT_SEC]');
  process.exit(2);
}
const port = Number(portText);
const count = Number(countText);
const deadline = Date.now() + Number(timeoutText ?? '60') * 1000;

interface Outcome {
  ok: boolean;
  expected?: string;
  saw?: string;
  error?: string;
}

function once(): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    let data = '';
    let expected = '';
    const timer = setTimeout(() => sock.destroy(new Error('timeout')), Math.max(1000, deadline - Date.now()));
    sock.setEncoding('utf8');
    sock.on('connect', () => {
      expected = `${(sock.localAddress ?? '').replace(/^::ffff:/, '')}:${sock.localPort}`;
      sock.write(`GET / HTTP/1.0\r\nHost: ${host}\r\n\r\n`);
    });
    sock.on('data', (c: string) => (data += c));
    sock.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, expected, error: e.message });
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const m = /saw client (\S+):(\d+)/.exec(data);
      const saw = m ? `${m[1]!.replace(/^::ffff:/, '')}:${m[2]}` : undefined;
      resolve({ ok: saw === expected, expected, ...(saw !== undefined ? { saw } : { error: 'no answer' }) });
    });
  });
}

const results = await Promise.all(Array.from({ length: count }, once));
const wrong = results.filter((r) => !r.ok);
console.log(
  JSON.stringify({
    connections: count,
    ok: results.length - wrong.length,
    sample: results[0],
    wrong: wrong.slice(0, 10),
  }),
);
