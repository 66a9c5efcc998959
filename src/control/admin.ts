/**
 * The admin API: newline-delimited JSON over a unix socket created with mode 0600 (only
 * its owner — root — may talk to it). One request per line, `{"cmd": ...}`; one JSON
 * reply per line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`. Optionally also
 * over TCP (admin.tcp): loopback unless configured otherwise, every request with the token.
 * `tunvs list` and `tunvs stats` are clients of it.
 */

import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { timingSafeEqual } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';

export type AdminHandler = (req: Record<string, unknown>) => unknown;

/** Serve one connection: requests line by line; with `token`, every request must carry it. */
function connection(sock: Socket, handle: AdminHandler, token?: string): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    if (buf.length > 1 << 20) {
      sock.end(`${JSON.stringify({ ok: false, error: 'request too large' })}\n`);
      return;
    }
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      void (async () => {
        let reply: unknown;
        try {
          const req = JSON.parse(line) as Record<string, unknown>;
          if (token !== undefined && !sameToken(req.token, token)) {
            sock.end(`${JSON.stringify({ ok: false, error: 'admin token missing or wrong' })}\n`);
            return;
          }
          delete req.token;
          reply = { ok: true, ...((await handle(req)) as object) };
        } catch (e) {
          reply = { ok: false, error: (e as Error).message };
        }
        if (!sock.destroyed) sock.write(`${JSON.stringify(reply)}\n`);
      })();
    }
  });
  sock.on('error', () => undefined);
}

function sameToken(given: unknown, token: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether a process listens on the unix socket `path` (a live tunvs; a file nobody accepts
 * on is a stale socket of a dead instance, which serveAdmin replaces). */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = createConnection(path);
    const done = (answers: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(answers);
    };
    // A listener whose process is stopped (SIGSTOP) still accepts: the kernel queues the
    // connection. Not answering within the time is taken as a live one too.
    const timer = setTimeout(() => done(true), timeoutMs);
    sock.on('connect', () => done(true));
    sock.on('error', () => done(false));
  });
}

export function serveAdmin(path: string, handle: AdminHandler): Server {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) unlinkSync(path); // a stale socket of a dead instance
  const server = createServer((sock) => connection(sock, handle));
  const oldMask = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(oldMask);
  }
  server.on('listening', () => chmodSync(path, 0o600));
  return server;
}

/** The admin API over TCP: every request must carry the token (loopback by default). */
export function serveAdminTcp(host: string, port: number, token: string, handle: AdminHandler): Server {
  const server = createServer((sock) => connection(sock, handle, token));
  server.listen(port, host);
  return server;
}

/** A pause between connects to a unix socket whose listener's queue is full. */
const ADMIN_CONNECT_RETRY_MS = 5;

/** Send one request and return the reply; rejects with a message that says what to check.
 * `path` is the unix socket, or tcp://host:port with `token`. A unix socket whose listener's
 * queue of unaccepted connections is full (tunvs's main thread held) refuses with EAGAIN, with
 * nothing in progress: connected again until the time is up. */
export function adminRequest(
  path: string,
  req: Record<string, unknown>,
  timeoutMs = 5000,
  token?: string,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const tcp = /^tcp:\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)\/?$/.exec(path);
    if (token !== undefined) req = { ...req, token };
    let sock: Socket | undefined;
    let over = false;
    const timer = setTimeout(() => {
      over = true;
      sock?.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    const attempt = (): void => {
      if (over) return;
      const s = tcp ? createConnection({ host: tcp[1] ?? tcp[2], port: Number(tcp[3]) }) : createConnection(path);
      sock = s;
      let buf = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
      s.on('data', (chunk: string) => {
        buf += chunk;
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          clearTimeout(timer);
          s.end();
          const reply = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
          if (reply.ok === true) resolve(reply);
          else reject(new Error(String(reply.error)));
        }
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        if (e.code === 'EAGAIN' && !tcp) {
          setTimeout(attempt, ADMIN_CONNECT_RETRY_MS);
          return;
        }
        clearTimeout(timer);
        reject(
          new Error(
            e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
              ? `tunvs is not running here (nothing answers at ${path}); start it with: tunvs run --config FILE`
              : e.code === 'EACCES'
                ? `permission denied on ${path}: the admin socket is root-only (mode 0600)`
                : e.message,
          ),
        );
      });
    };
    attempt();
  });
}
