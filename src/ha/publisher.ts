/**
 * Publishing this node's sessions (main thread; ha/node.ts runs it while the node publishes).
 *
 *   tick      every HA_TICK_MS: drain the workers' event rings (ha/session_sync.ts) into one
 *             MULTI: HSET/HDEL on node:<id>:sessions and one XADD of the batch to
 *             node:<id>:events. Not one round trip per packet or per event. A session
 *             handed over to another node (OP_HANDOVER) is HDELed here and streamed as
 *             that node's record.
 *   lost      Redis unreachable or a ring overflowed: forwarding is not affected, the events
 *             are counted lost, and a full resync follows.
 *   resync    each worker snapshots the sessions it owns and has published (and its share of
 *             the persistence templates this node published); they are written
 *             to a new hash that is RENAMEd over the node's own (no other node's keys are
 *             touched), then r=resync tells the peers to reload it. Events older than the
 *             snapshot are skipped (each snapshot carries its ring position).
 *   format    records go out in the format every registered node reads (ha/sync_format.ts);
 *             when that changes, a resync rewrites the hash in the new one.
 */

import type { ChainableCommander, Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { HA_EVENTS_PER_TICK, HA_RESYNC_BATCH, HA_STREAM_MAXLEN } from '../constants.js';
import { asBuffer, fieldOf, positionFields, shardFields, type NodeKeys } from './redis.js';
import {
  EVENT_WORDS,
  OP_DELETE,
  OP_HANDOVER,
  OP_UPSERT,
  SYNC_FORMAT,
  SYNC_WORDS,
  type HaWorkerLink,
} from './session_sync.js';
import { eventsToWire, recordsToWire, recordWords } from './sync_format.js';

export interface PublisherStats {
  published: number;
  lost: number;
  resyncs: number;
}

export class Publisher {
  /** Rewrite the hash from the workers' tables before publishing more (start, promotion,
   * after lost events, after Redis came back). */
  needResync = true;
  readonly stats: PublisherStats = { published: 0, lost: 0, resyncs: 0 };
  private readonly batch = new Int32Array(HA_EVENTS_PER_TICK * EVENT_WORDS);
  /** Per worker: ring events before this write count predate a snapshot: skip them. */
  private readonly skipUntil: (number | undefined)[];
  private wireFormat = SYNC_FORMAT;
  private resyncing = false;
  /** This publisher's run and the number of its last entry (redis.ts StreamPosition). */
  private readonly run = randomBytes(6).toString('hex');
  private entries = 0;

  constructor(
    private readonly keys: NodeKeys,
    private readonly nodeId: number,
    private readonly workers: HaWorkerLink[],
    private readonly fail: (msg: string) => void,
    private readonly info: (msg: string, fields: Record<string, unknown>) => void,
  ) {
    this.skipUntil = workers.map(() => undefined);
  }

  /** The format records are published in. */
  get format(): number {
    return this.wireFormat;
  }

  /** Publish in `format` from now on (one this version writes); a change rewrites the hash. */
  set format(format: number) {
    if (format === this.wireFormat) return;
    this.wireFormat = format;
    this.needResync = true;
  }

  /** Events waiting in the workers' rings. */
  get pending(): number {
    return this.workers.reduce((n, w) => n + w.ring.pending, 0);
  }

  /** One publishing round; `redis` is undefined while Redis is unreachable. A resync that is
   * due waits while `mayResync` is false (the events go out meanwhile). */
  async tick(redis: Redis | undefined, mayResync = true): Promise<void> {
    let lost = 0;
    for (const w of this.workers) lost += w.ring.takeLost();
    if (lost > 0) {
      this.stats.lost += lost;
      this.needResync = true;
      this.fail(`${lost} session events lost (event ring full): full resync follows`);
    }
    if (!redis) {
      const n = this.collect();
      if (n > 0) {
        this.stats.lost += n;
        this.needResync = true;
        this.fail(`Redis unavailable: ${n} session events not published; forwarding goes on, resync when it returns`);
      }
      return;
    }
    if (this.needResync && mayResync) {
      await this.resync(redis);
      return;
    }
    const n = this.collect();
    if (n > 0) await this.publish(redis, n);
  }

  /** Drain the rings into this.batch (events older than a snapshot are skipped). */
  private collect(): number {
    let n = 0;
    this.workers.forEach((w, i) => {
      if (this.skipUntil[i] !== undefined) {
        w.ring.skipTo(this.skipUntil[i]);
        this.skipUntil[i] = undefined;
      }
      n += w.ring.drain(this.batch.subarray(n * EVENT_WORDS), HA_EVENTS_PER_TICK - n);
    });
    return n;
  }

  private async publish(redis: Redis, n: number): Promise<void> {
    const format = this.wireFormat;
    // A handover leaves this node's hash and goes out as the new owner's upsert (its record
    // names that node), so every peer's copy names it.
    const handedOver = new Uint8Array(n);
    for (let e = 0; e < n; e++) {
      if (this.batch[e * EVENT_WORDS] !== OP_HANDOVER) continue;
      handedOver[e] = 1;
      this.batch[e * EVENT_WORDS] = OP_UPSERT;
    }
    const events = eventsToWire(this.batch.slice(0, n * EVENT_WORDS), format);
    const stride = events.length / n;
    const upserts: Buffer[] = [];
    const deletes: Buffer[] = [];
    for (let e = 0; e < n; e++) {
      const off = e * stride;
      const field = fieldOf(this.batch, e * EVENT_WORDS + 1); // keys: words every format has
      if (events[off] === OP_DELETE || handedOver[e] === 1) deletes.push(field);
      else upserts.push(field, asBuffer(events.slice(off + 1, off + stride)));
    }
    const m = redis.multi();
    if (upserts.length > 0) m.hset(this.keys.sessions, ...upserts);
    if (deletes.length > 0) m.hdel(this.keys.sessions, ...deletes);
    this.addEntry(m, [
      ...shardFields(this.workers.length),
      'n',
      String(this.nodeId),
      'v',
      String(format),
      'b',
      asBuffer(events),
    ]);
    try {
      await m.exec();
      this.stats.published += n;
    } catch (e) {
      this.stats.lost += n;
      this.needResync = true;
      throw e;
    }
  }

  /** An entry of this node's stream, in `m`: `fields`, the time, its position (the next
   * number: one whose MULTI fails still counts, so its followers may see a number skipped and
   * load this node's hash again; a resync follows a failed publish anyway), trimmed at
   * ~HA_STREAM_MAXLEN entries. */
  private addEntry(m: ChainableCommander, fields: (string | Buffer)[]): void {
    const position = positionFields({ run: this.run, n: ++this.entries });
    m.xadd(
      this.keys.events,
      'MAXLEN',
      '~',
      String(HA_STREAM_MAXLEN),
      '*',
      't',
      String(Date.now()),
      ...position,
      ...fields,
    );
  }

  /** Resyncs that will have completed once the one in progress (if any) has: a session
   * adopted now is in the hash of the resync after that (its snapshot may be taken already). */
  get resyncsUnderway(): number {
    return this.stats.resyncs + (this.resyncing ? 1 : 0);
  }

  /** Rewrite this node's hash from the workers' tables, then tell the peers to reload it. */
  private async resync(redis: Redis): Promise<void> {
    this.resyncing = true;
    try {
      await this.rewrite(redis);
    } finally {
      this.resyncing = false;
    }
  }

  private async rewrite(redis: Redis): Promise<void> {
    const snaps = await Promise.all(this.workers.map((w) => w.snapshot()));
    snaps.forEach((s, i) => (this.skipUntil[i] = s.writeCount));
    // A key of its own while it is written: a reader must see the old hash or the new one.
    const tmp = `${this.keys.sessions}:resync:${process.pid}:${Date.now()}`;
    await redis.del(tmp);
    let total = 0;
    const words = recordWords(this.wireFormat)!;
    for (const chunk of snaps.flatMap((s) => s.records)) {
      const records = recordsToWire(chunk, this.wireFormat);
      const count = records.length / words;
      for (let i = 0; i < count; i += HA_RESYNC_BATCH) {
        const args: Buffer[] = [];
        for (let k = i; k < Math.min(count, i + HA_RESYNC_BATCH); k++) {
          const off = k * words;
          args.push(fieldOf(chunk, k * SYNC_WORDS), asBuffer(records.slice(off, off + words)));
        }
        await redis.hset(tmp, ...args);
      }
      total += count;
    }
    const m = redis.multi();
    if (total > 0) m.rename(tmp, this.keys.sessions);
    else m.del(this.keys.sessions);
    this.addEntry(m, ['r', 'resync', ...shardFields(this.workers.length)]);
    await m.exec();
    this.needResync = false;
    this.stats.resyncs++;
    this.info('HA: full resync published', { sessions: total, format: this.wireFormat });
  }
}
