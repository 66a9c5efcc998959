/**
 * The admin socket as the guard against a second instance (src/control/admin.ts):
 * socketAnswers tells a live listener from a stale socket file a killed process left behind,
 * which serveAdmin replaces.
 */

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { adminRequest, serveAdmin, socketAnswers } from '../../src/control/admin.js';

const dir = mkdtempSync(join(tmpdir(), 'tunvs-admin-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('admin socket', () => {
  it('no file: free; a live listener: taken; the file a killed one left: free, and served anew', async () => {
    const path = join(dir, 'admin.sock');
    expect(await socketAnswers(path)).toBe(false);

    // A listener in another process, then killed: its socket file stays, nobody accepts.
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer(() => {}).listen(${JSON.stringify(path)}, () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    await new Promise((r) => child.stdout.once('data', r));
    expect(await socketAnswers(path)).toBe(true);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(existsSync(path)).toBe(true);
    expect(await socketAnswers(path)).toBe(false);

    const server = serveAdmin(path, () => Promise.resolve({ ok: true, pong: 1 }));
    try {
      await new Promise((r) => server.once('listening', r));
      expect(await socketAnswers(path)).toBe(true);
      expect((await adminRequest(path, { cmd: 'ping' })).pong).toBe(1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
