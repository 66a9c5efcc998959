/**
 * HA on the main thread: the role keepalived gives this LB, and session sync through Redis.
 *
 * Redis holds, per pair (`tunvs:<cluster>:`):
 *   sessions   a hash: every published session, field = its OUT key (40 bytes: unique on
 *              the LB), value = the sync record (SYNC_WORDS int32). The state a standby
 *              loads when it starts or reconnects.
 *   events     a stream of batches, one entry per master tick with events:
 *              t (ms, master clock), w (master's workers), b (op + record, EVENT_WORDS
 *              each); or r=resync when the master rewrote the hash from its own tables.
 *
 * master   every TICK_MS: drain the workers' event rings into one MULTI (HSET/HDEL on the
 *          hash + XADD of the batch). Redis unavailable: forwarding is not affected, events
 *          are dropped and counted, an error is logged once per LOG_EVERY_MS; when Redis is
 *          back, a full resync (each worker's snapshot → a new hash, RENAMEd into place,
 *          then r=resync) replaces what was lost. Also after promotion to master.
 * standby  load the hash (HSCAN), then follow the stream (XREAD BLOCK) from the entry that
 *          was last before the load; on r=resync or after any reconnect, load again
 *          (sessions installed by sync are flushed first, so nothing stale survives).
 *          Records go to the worker that owns them (local port % workers).
 */

import { Redis } from 'ioredis';
import type { HaConfig } from '../config/config.js';
import { rateLimited, type Logger } from '../control/log.js';
import { R_OUT_PORTS } from '../conn/layout.js';
import { ROLE_BACKUP, ROLE_MASTER } from '../dataplane/engine.js';
import { followNotifyFifo } from './notify_fifo.js';
import { EVENT_WORDS, OP_DELETE, OP_UPSERT, SYNC_WORDS, syncOutKey, type SyncRing } from './session_sync.js';

export const TICK_MS = 100;
const LOG_EVERY_MS = 10_000;
const STREAM_MAXLEN = 100_000;
const MAX_EVENTS_PER_TICK = 50_000;
const HSCAN_COUNT = 2000;
/** A standby that cannot reach Redis is still "ready" (better than no LB) after this. */
const READY_GRACE_MS = 5000;

/** What the main thread can ask of one forwarder (workers/forwarder.ts implements it). */
export interface HaWorkerLink {
  ring: SyncRing;
  install(events: Int32Array, count: number): void;
  /** The worker's published sessions, and its ring's write count when it took them. */
  snapshot(): Promise<{ records: Int32Array; writeCount: number }>;
  flushSynced(): Promise<void>;
}

export type Role = 'master' | 'backup' | 'fault';

export interface HaStatus {
  role: Role;
  ready: boolean;
  redis: 'up' | 'down';
  /** Master: events published; standby: events applied (since start). */
  published: number;
  applied: number;
  /** Events lost (ring full or Redis down) since start; each such loss triggers a resync. */
  lost: number;
  resyncs: number;
  snapshotsLoaded: number;
  /** Standby: master clock of the last applied batch vs now (ms); null before any. */
  syncLagMs: number | null;
  /** Master: events waiting in the workers' rings. */
  pending: number;
  lastError?: string;
}

/** The hash field of a session: its OUT key's 40 bytes. */
function fieldOf(rec: Int32Array, off: number): Buffer {
  return Buffer.from(syncOutKey(rec, off, new Int32Array(10)).buffer);
}

function asBuffer(a: Int32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

function asInt32(b: Buffer): Int32Array {
  const copy = new Int32Array(b.length >>> 2);
  Buffer.from(copy.buffer).set(b.subarray(0, copy.length * 4));
  return copy;
}

export class HaSync {
  private readonly key: { sessions: string; events: string };
  private redis: Redis | undefined;
  private reader: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly roleWord: Int32Array;
  private role: Role;
  private needResync = true;
  private busy = false;
  private following = false;
  private readonly startedAt = Date.now();
  private loadedOnce = false;
  /** Errors are logged once per LOG_EVERY_MS, with how many were held back. */
  private readonly errors: ReturnType<typeof rateLimited>;
  private readonly batch = new Int32Array(MAX_EVENTS_PER_TICK * EVENT_WORDS);
  private readonly st = { published: 0, applied: 0, lost: 0, resyncs: 0, snapshotsLoaded: 0 };
  private lagMs: number | null = null;
  private lastError: string | undefined;
  /** Per worker: ring events before this write count predate a snapshot: skip them. */
  private readonly skipUntil: (number | undefined)[];

  constructor(
    private readonly cfg: HaConfig,
    roleSab: SharedArrayBuffer,
    private readonly workers: HaWorkerLink[],
    private readonly logger: Logger,
  ) {
    this.key = { sessions: `tunvs:${cfg.cluster}:sessions`, events: `tunvs:${cfg.cluster}:events` };
    this.roleWord = new Int32Array(roleSab, 0, 1);
    this.role = cfg.initialRole;
    Atomics.store(this.roleWord, 0, this.role === 'master' ? ROLE_MASTER : ROLE_BACKUP);
    this.skipUntil = workers.map(() => undefined);
    this.errors = rateLimited(logger, LOG_EVERY_MS);
  }

  start(): void {
    const opts = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
      retryStrategy: (times: number) => Math.min(200 * times, 2000),
    };
    this.redis = new Redis(this.cfg.redis, opts);
    this.reader = new Redis(this.cfg.redis, { ...opts, maxRetriesPerRequest: null });
    for (const [name, r] of [
      ['redis', this.redis],
      ['redis reader', this.reader],
    ] as const) {
      r.on('error', (e: Error) => {
        if (!this.stopped) this.fail(`${name}: ${e.message}`);
      });
      r.on('ready', () => {
        if (name === 'redis') {
          this.logger.log('info', 'HA: connected to Redis', { redis: this.cfg.redis });
          this.needResync = true; // master: rebuild what may have been lost; standby: reload
          this.following = false;
        }
      });
    }
    this.timer = setInterval(() => void this.tick(), TICK_MS);
    if (this.cfg.notifyFifo) {
      this.stopFifo = followNotifyFifo(this.cfg.notifyFifo, (role) => this.setRole(role));
    }
    this.logger.log('info', `HA: starting as ${this.role}`, {
      cluster: this.cfg.cluster,
      ...(this.cfg.notifyFifo ? { notifyFifo: this.cfg.notifyFifo } : {}),
    });
  }

  private stopFifo: (() => void) | undefined;
  private stopped = false;

  /** Stop syncing: the last batch in flight is given up to a second to reach Redis. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.stopFifo?.();
    this.following = false;
    const deadline = Date.now() + 1000;
    while (this.busy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.redis?.disconnect();
    this.reader?.disconnect();
  }

  /** keepalived's notify: MASTER, BACKUP or FAULT. */
  setRole(role: Role): void {
    if (role === this.role) return;
    const was = this.role;
    this.role = role;
    Atomics.store(this.roleWord, 0, role === 'master' ? ROLE_MASTER : ROLE_BACKUP);
    // A new master rewrites the hash from its own tables; a new standby reloads it.
    this.needResync = true;
    this.following = false;
    this.logger.log('info', `HA: role ${was} -> ${role}`);
  }

  status(): HaStatus {
    return {
      role: this.role,
      ready: this.ready,
      redis: this.redis?.status === 'ready' ? 'up' : 'down',
      ...this.st,
      syncLagMs: this.lagMs,
      pending: this.workers.reduce((n, w) => n + w.ring.pending, 0),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }

  /** For keepalived's check: a standby is ready once it loaded the sessions (or Redis has
   * been unreachable for a while: forwarding without them beats not forwarding). */
  get ready(): boolean {
    return this.role === 'master' || this.loadedOnce || Date.now() - this.startedAt > READY_GRACE_MS;
  }

  private fail(msg: string): void {
    this.lastError = msg;
    this.errors.logKeyed('sync', 'error', `HA sync: ${msg}`);
  }

  private get up(): boolean {
    return this.redis?.status === 'ready';
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.role === 'master') await this.masterTick();
      else await this.standbyTick();
    } catch (e) {
      this.fail((e as Error).message);
    } finally {
      this.busy = false;
    }
  }

  // --- master ----------------------------------------------------------------------------

  private async masterTick(): Promise<void> {
    let lost = 0;
    for (const w of this.workers) lost += w.ring.takeLost();
    if (lost > 0) {
      this.st.lost += lost;
      this.needResync = true;
      this.fail(`${lost} session events lost (event ring full): full resync follows`);
    }
    if (!this.up) {
      const n = this.collect();
      if (n > 0) {
        this.st.lost += n;
        this.needResync = true;
        this.fail(`Redis unavailable: ${n} session events not published; forwarding goes on, resync when it returns`);
      }
      return;
    }
    if (this.needResync) {
      await this.resync();
      return;
    }
    const n = this.collect();
    if (n > 0) await this.publish(n);
  }

  /** Drain the rings into this.batch (events older than a snapshot are skipped). */
  private collect(): number {
    let n = 0;
    this.workers.forEach((w, i) => {
      if (this.skipUntil[i] !== undefined) {
        w.ring.skipTo(this.skipUntil[i]);
        this.skipUntil[i] = undefined;
      }
      n += w.ring.drain(this.batch.subarray(n * EVENT_WORDS), MAX_EVENTS_PER_TICK - n);
    });
    return n;
  }

  private async publish(n: number): Promise<void> {
    const upserts: Buffer[] = [];
    const deletes: Buffer[] = [];
    for (let e = 0; e < n; e++) {
      const off = e * EVENT_WORDS;
      const field = fieldOf(this.batch, off + 1);
      if (this.batch[off] === OP_DELETE) deletes.push(field);
      else upserts.push(field, asBuffer(this.batch.slice(off + 1, off + 1 + SYNC_WORDS)));
    }
    const m = this.redis!.multi();
    if (upserts.length > 0) m.hset(this.key.sessions, ...upserts);
    if (deletes.length > 0) m.hdel(this.key.sessions, ...deletes);
    m.xadd(
      this.key.events,
      'MAXLEN',
      '~',
      String(STREAM_MAXLEN),
      '*',
      't',
      String(Date.now()),
      'w',
      String(this.workers.length),
      'b',
      asBuffer(this.batch.slice(0, n * EVENT_WORDS)),
    );
    try {
      await m.exec();
      this.st.published += n;
    } catch (e) {
      this.st.lost += n;
      this.needResync = true;
      throw e;
    }
  }

  /** Rewrite the hash from the workers' tables, then tell standbys to reload. */
  private async resync(): Promise<void> {
    const snaps = await Promise.all(this.workers.map((w) => w.snapshot()));
    snaps.forEach((s, i) => (this.skipUntil[i] = s.writeCount));
    // a key of its own: two nodes that both think they are master must not mix their hashes
    const tmp = `${this.key.sessions}:resync:${process.pid}:${Date.now()}`;
    const r = this.redis!;
    await r.del(tmp);
    let total = 0;
    for (const s of snaps) {
      const count = s.records.length / SYNC_WORDS;
      for (let i = 0; i < count; i += 5000) {
        const args: Buffer[] = [];
        for (let k = i; k < Math.min(count, i + 5000); k++) {
          const off = k * SYNC_WORDS;
          args.push(fieldOf(s.records, off), asBuffer(s.records.slice(off, off + SYNC_WORDS)));
        }
        await r.hset(tmp, ...args);
      }
      total += count;
    }
    const m = r.multi();
    if (total > 0) m.rename(tmp, this.key.sessions);
    else m.del(this.key.sessions);
    m.xadd(this.key.events, 'MAXLEN', '~', String(STREAM_MAXLEN), '*', 'r', 'resync', 't', String(Date.now()));
    await m.exec();
    this.needResync = false;
    this.st.resyncs++;
    this.logger.log('info', 'HA: full resync published', { sessions: total });
  }

  // --- standby ---------------------------------------------------------------------------

  private async standbyTick(): Promise<void> {
    if (!this.up || this.following) return;
    if (this.needResync || !this.loadedOnce) {
      // the stream position first: entries after it are applied after the load
      await this.load();
    }
    this.following = true;
    void this.follow();
  }

  private lastId = '0-0';

  private async load(): Promise<void> {
    const r = this.redis!;
    const last = (await r.xrevrange(this.key.events, '+', '-', 'COUNT', 1)) as [string, string[]][];
    this.lastId = last[0]?.[0] ?? '0-0';
    await Promise.all(this.workers.map((w) => w.flushSynced()));
    let cursor = '0';
    let total = 0;
    do {
      const [next, items] = await r.hscanBuffer(this.key.sessions, cursor, 'COUNT', HSCAN_COUNT);
      cursor = next.toString();
      const events = new Int32Array((items.length / 2) * EVENT_WORDS);
      for (let i = 1, e = 0; i < items.length; i += 2, e++) {
        events[e * EVENT_WORDS] = OP_UPSERT;
        events.set(asInt32(items[i]!).subarray(0, SYNC_WORDS), e * EVENT_WORDS + 1);
      }
      this.route(events, items.length / 2);
      total += items.length / 2;
    } while (cursor !== '0');
    this.needResync = false;
    this.loadedOnce = true;
    this.st.snapshotsLoaded++;
    this.logger.log('info', 'HA: loaded the session snapshot from Redis', { sessions: total, from: this.lastId });
  }

  /** Follow the stream until the role changes, a resync is due or the connection drops. */
  private async follow(): Promise<void> {
    const reader = this.reader!;
    try {
      while (this.following && this.role !== 'master') {
        const res = await reader.xreadBuffer('COUNT', 200, 'BLOCK', 500, 'STREAMS', this.key.events, this.lastId);
        if (!res) continue;
        for (const [id, fields] of res[0]![1]) {
          this.lastId = id.toString();
          const f = new Map<string, Buffer>();
          for (let i = 0; i < fields.length; i += 2) f.set(fields[i]!.toString(), fields[i + 1]!);
          if (f.has('r')) {
            this.needResync = true;
            this.following = false;
            return;
          }
          const workers = Number(f.get('w')?.toString());
          if (workers !== this.workers.length) {
            this.fail(
              `the master runs ${workers} workers and this LB ${this.workers.length}: sessions cannot be installed (the local port says which worker owns a session); set the same workers on both`,
            );
            continue;
          }
          const events = asInt32(f.get('b')!);
          const n = events.length / EVENT_WORDS;
          this.route(events, n);
          this.st.applied += n;
          this.lagMs = Date.now() - Number(f.get('t')?.toString());
        }
      }
    } catch (e) {
      if (!this.stopped) this.fail(`following ${this.key.events}: ${(e as Error).message}`);
      this.needResync = true;
    } finally {
      this.following = false;
    }
  }

  /** Send each event to the worker that owns it (local port % workers). */
  private route(events: Int32Array, n: number): void {
    const W = this.workers.length;
    const per: number[][] = this.workers.map(() => []);
    for (let e = 0; e < n; e++) {
      const lport = events[e * EVENT_WORDS + 1 + R_OUT_PORTS]! & 0xffff;
      per[lport % W]!.push(e);
    }
    per.forEach((list, w) => {
      if (list.length === 0) return;
      const out = new Int32Array(list.length * EVENT_WORDS);
      list.forEach((e, k) => out.set(events.subarray(e * EVENT_WORDS, (e + 1) * EVENT_WORDS), k * EVENT_WORDS));
      this.workers[w]!.install(out, list.length);
    });
  }
}
