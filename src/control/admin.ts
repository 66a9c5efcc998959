/**
 * The admin API: newline-delimited JSON over a unix socket created with mode 0600 (only
 * its owner — root — may talk to it). One request per line, `{"cmd": ...}`; one JSON
 * reply per line, `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.
 * `tunvs list` and `tunvs stats` are clients of it.
 */

import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { dirname } from 'node:path';

export type AdminHandler = (req: Record<string, unknown>) => unknown;

export function serveAdmin(path: string, handle: AdminHandler): Server {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  if (existsSync(path)) unlinkSync(path); // a stale socket of a dead instance
  const server = createServer((sock) => {
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
            reply = { ok: true, ...((await handle(req)) as object) };
          } catch (e) {
            reply = { ok: false, error: (e as Error).message };
          }
          if (!sock.destroyed) sock.write(`${JSON.stringify(reply)}\n`);
        })();
      }
    });
    sock.on('error', () => undefined);
  });
  const oldMask = process.umask(0o177);
  try {
    server.listen(path);
  } finally {
    process.umask(oldMask);
  }
  server.on('listening', () => chmodSync(path, 0o600));
  return server;
}

/** Send one request and return the reply; rejects with a message that says what to check. */
export function adminRequest(
  path: string,
  req: Record<string, unknown>,
  timeoutMs = 5000,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify(req)}\n`));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.end();
        const reply = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        if (reply.ok === true) resolve(reply);
        else reject(new Error(String(reply.error)));
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new Error(
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
            ? `tunvs is not running here (no admin socket at ${path}); start it with: tunvs run --config FILE`
            : e.code === 'EACCES'
              ? `permission denied on ${path}: the admin socket is root-only (mode 0600)`
              : e.message,
        ),
      );
    });
  });
}
