/**
 * keepalived's track script, both builds: tunvs-ha-check (native/ha_check.c, what the lab's
 * and the docs' keepalived run) and `tunvs ha check` (src/cli/ha_check.ts). Against the real
 * admin server (control/admin.ts), unix and TCP with a token: ready passes; not ready, an
 * error, a hung tunvs (accepts, never answers), no tunvs fail; a tunvs of the version before
 * the `ready` command is asked `ha` instead.
 */

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { serveAdmin, serveAdminTcp } from '../../src/control/admin.js';
import { haCheckBinary, packageRoot } from '../../src/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'tunvs-hacheck-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number;
  stderr: string;
  ms: number;
}

/** Run a check without blocking this process's event loop (the admin server is in it). */
function run(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(file, args, { env: { PATH: process.env.PATH, ...env } }, (err, _out, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stderr, ms: Date.now() - t0 });
    });
  });
}

const CHECKS = {
  'tunvs-ha-check': (args: string[], env?: NodeJS.ProcessEnv) => run(haCheckBinary(), args, env),
  'tunvs ha check': (args: string[], env?: NodeJS.ProcessEnv) =>
    run(process.execPath, [join(packageRoot(), 'bin', 'tunvs'), 'ha', 'check', ...args], env),
};

/** What the test's tunvs answers: the current version's `ready`, or the version before's. */
let answer: { ready: boolean; old?: boolean; error?: string } = { ready: true };
const handle = (req: Record<string, unknown>): Promise<unknown> => {
  if (answer.error !== undefined) return Promise.reject(new Error(answer.error));
  if (req.cmd === 'ready' && !answer.old) return Promise.resolve({ ready: answer.ready });
  if (req.cmd === 'ha')
    return Promise.resolve({
      ha: { mode: 'pair', nodeId: 1, name: 'lb-a', role: 'backup', ready: answer.ready, peers: [{ ready: true }] },
      routes: [],
    });
  return Promise.reject(new Error(`unknown command ${JSON.stringify(req.cmd)}: use list, stats, ha`));
};

const listening = (s: Server): Promise<void> => new Promise((r) => s.once('listening', () => r()));
const closed = (s: Server): Promise<void> => new Promise((r) => s.close(() => r()));

describe.each(Object.entries(CHECKS))('%s', (name, check) => {
  it('unix socket: ready passes; not ready, an error, the version before asked `ha`', async () => {
    const path = join(dir, `admin-${name.length}.sock`);
    const server = serveAdmin(path, handle);
    await listening(server);
    try {
      answer = { ready: true };
      expect((await check(['--admin', path])).code).toBe(0);
      answer = { ready: false };
      const notReady = await check(['--admin', path]);
      expect(notReady.code).toBe(1);
      answer = { ready: true, error: 'this LB runs without ha: in its config' };
      expect((await check(['--admin', path])).code).toBe(1);
      // Its package upgraded under a running tunvs: the old one knows `ha`, not `ready`.
      answer = { ready: true, old: true };
      expect((await check(['--admin', path])).code).toBe(0);
      answer = { ready: false, old: true };
      expect((await check(['--admin', path])).code).toBe(1);
    } finally {
      await closed(server);
    }
  });

  it('TCP: the token from --token or TUNVS_ADMIN_TOKEN, escaped; a wrong one fails', async () => {
    const token = 'a"quote\\back\tslash-0123456789';
    const server = serveAdminTcp('127.0.0.1', 0, token, handle);
    await listening(server);
    const url = `tcp://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      answer = { ready: true };
      expect((await check(['--admin', url, '--token', token])).code).toBe(0);
      expect((await check(['--admin', url], { TUNVS_ADMIN_TOKEN: token })).code).toBe(0);
      expect((await check(['--admin', url, '--token', `${token}x`])).code).toBe(1);
      expect((await check(['--admin', url])).code).toBe(1);
    } finally {
      await closed(server);
    }
  });

  it("a full queue (the listener's thread held): connected again, answered once the thread runs", async () => {
    // A unix socket refuses a connect with EAGAIN when the listener's queue of unaccepted
    // connections is full; nothing is in progress then. Here a listener with a queue of one
    // holds its thread HOLD_MS right after listening, and two connections fill the queue.
    const HOLD_MS = 500;
    const path = join(dir, `full-${name.replace(/ /g, '+')}.sock`);
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('net').createServer((c) => { c.on('error', () => {}); c.on('data', () => c.end('{"ok":true,"ready":true}\\n')); });
         s.listen({ path: ${JSON.stringify(path)}, backlog: 1 }, () => {
           process.stdout.write('listening\\n');
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${HOLD_MS});
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const fillers: Socket[] = [];
    try {
      await new Promise<void>((r, j) => {
        child.stdout.once('data', () => r());
        child.once('exit', (code) => j(new Error(`the listener exited (${code}) before listening`)));
      });
      for (let i = 0; i < 2; i++) fillers.push(createConnection(path).on('error', () => undefined));
      await new Promise((r) => setTimeout(r, 20));
      // Full: a plain connect is refused at once.
      const refused = await new Promise<string | undefined>((r) =>
        createConnection(path)
          .on('error', (e: NodeJS.ErrnoException) => r(e.code))
          .on('connect', function (this: Socket) {
            this.destroy();
            r(undefined);
          }),
      );
      expect(refused).toBe('EAGAIN');
      const r = await check(['--admin', path]);
      expect(r.code, r.stderr).toBe(0);
    } finally {
      for (const f of fillers) f.destroy();
      child.kill();
    }
  });

  it('no tunvs fails at once; a hung one (accepts, never answers) within the 0.9 s', async () => {
    const none = await check(['--admin', join(dir, 'none.sock')]);
    expect(none.code).toBe(1);
    const path = join(dir, `hung-${name.length}.sock`);
    const held: Socket[] = [];
    const hung = createServer((s) => held.push(s)).listen(path);
    await listening(hung);
    try {
      const r = await check(['--admin', path]);
      expect(r.code).toBe(1);
      expect(r.ms).toBeGreaterThanOrEqual(850);
      expect(r.ms).toBeLessThan(5000); // a Node start on a loaded machine included
    } finally {
      for (const s of held) s.destroy();
      await closed(hung);
    }
  });
});

describe('tunvs-ha-check says why it fails', () => {
  it('on stderr, one line', async () => {
    expect((await CHECKS['tunvs-ha-check'](['--admin', join(dir, 'none.sock')])).stderr).toMatch(
      /none\.sock: nothing answers \(tunvs is not running\)\n$/,
    );
    expect((await CHECKS['tunvs-ha-check'](['--admin', 'tcp://nohost'])).stderr).toMatch(/not a unix socket path/);
    expect((await CHECKS['tunvs-ha-check'](['--bogus'])).stderr).toMatch(/unknown argument \(see --help\): --bogus/);
    const help = await CHECKS['tunvs-ha-check'](['--help']);
    expect(help.code).toBe(0);
    const path = join(dir, 'why.sock');
    const server = serveAdmin(path, handle);
    await listening(server);
    try {
      answer = { ready: false };
      expect((await CHECKS['tunvs-ha-check'](['--admin', path])).stderr).toMatch(
        /not ready: \{"ok":true,"ready":false\}/,
      );
    } finally {
      await closed(server);
    }
  });
});
