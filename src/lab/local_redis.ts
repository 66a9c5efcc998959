/**
 * Real Redis servers and Sentinels on loopback, for the HA sync tests and benchmark: each
 * started on a free port with a working directory of its own, stopped by its PID.
 * (The netns lab runs its Redis in the lab's redis namespace instead: pair.ts.)
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface LocalRedis {
  port: number;
  child: ChildProcess;
  /** SIGKILL (a crash) or SIGTERM, by PID; resolves once it exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A redis-server on 127.0.0.1 (no persistence); `replicaOf` makes it a replica. */
export async function startLocalRedis(opts: { port?: number; replicaOf?: number } = {}): Promise<LocalRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'tunvs-redis-'));
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir];
  if (opts.replicaOf !== undefined) args.push('--replicaof', '127.0.0.1', String(opts.replicaOf));
  return started(spawn('redis-server', args, { stdio: 'ignore' }), port, dir, 'redis-server', 'redis-server');
}

/** A Sentinel on 127.0.0.1 watching the primary on `primaryPort` under `name`; a quorum of
 * one, and `downAfterMs` before it calls the primary down (tests use ~1 s). */
export async function startLocalSentinel(opts: {
  primaryPort: number;
  name: string;
  downAfterMs: number;
  port?: number;
}): Promise<LocalRedis> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'tunvs-sentinel-'));
  const conf = join(dir, 'sentinel.conf'); // Sentinel rewrites its config: a file of its own
  writeFileSync(
    conf,
    sentinelConfig({
      bind: '127.0.0.1',
      port,
      dir,
      name: opts.name,
      primary: `127.0.0.1 ${opts.primaryPort}`,
      quorum: 1,
      downAfterMs: opts.downAfterMs,
    }),
  );
  return started(
    spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }),
    port,
    dir,
    'Sentinel',
    'redis-server',
  );
}

/** A Sentinel's configuration: watch `primary` ("host port") as `name`; call it down after
 * `downAfterMs`, fail over when `quorum` Sentinels agree. */
export function sentinelConfig(o: {
  bind: string;
  port: number;
  dir: string;
  name: string;
  primary: string;
  quorum: number;
  downAfterMs: number;
}): string {
  return [
    `port ${o.port}`,
    `bind ${o.bind}`,
    'protected-mode no',
    `dir ${o.dir}`,
    `sentinel monitor ${o.name} ${o.primary} ${o.quorum}`,
    `sentinel down-after-milliseconds ${o.name} ${o.downAfterMs}`,
    `sentinel failover-timeout ${o.name} ${Math.max(3000, o.downAfterMs * 3)}`,
    `sentinel parallel-syncs ${o.name} 1`,
    '',
  ].join('\n');
}

async function started(child: ChildProcess, port: number, dir: string, what: string, pkg: string): Promise<LocalRedis> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  r.on('error', () => undefined); // refused until the server listens: retried below
  for (let i = 0; i < 100; i++) {
    try {
      await r.connect();
      await r.ping();
      r.disconnect();
      return { port, child, stop };
    } catch {
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  await stop('SIGKILL');
  throw new Error(`${what} did not start on 127.0.0.1:${port} (is it installed? apt-get install ${pkg})`);
}
