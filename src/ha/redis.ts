/**
 * Where HA nodes meet in Redis: the keys, the connections (one server, or the primary that
 * Redis Sentinel names), and the byte forms of sync records.
 *
 * Keys, per pair or cluster (`tunvs:<cluster>:`):
 *   nodes                a hash: node id → {id, name, mode, workers, startedAt} (JSON), every
 *                        node that has run; how peers find each other
 *   node:<id>:alive      set by the node every HEARTBEAT_MS, expires after NODE_ALIVE_MS:
 *                        {publishing, ready, token, name, startedAt} (JSON); Redis's own
 *                        clock decides expiry; the token (random per process) exposes two
 *                        live nodes configured with one id
 *   node:<id>:sessions   a hash: every session the node owns and has published, field = its
 *                        OUT key (40 bytes: unique on the node), value = the sync record
 *   node:<id>:events     a stream of the node's batches (publisher.ts): t (ms, its clock),
 *                        n (its id), v (the record format), b (op + record, EVENT_WORDS
 *                        each); or r=resync when it rewrote its hash from its own tables;
 *                        every entry e and s (its StreamPosition, below), w and sh (its
 *                        workers and shards, shardFields below)
 */

import { Redis, type RedisOptions } from 'ioredis';
import type { HaRedis } from '../config/config.js';
import { SESSION_SHARDS } from '../constants.js';
import { syncKey } from './session_sync.js';

/** A node refreshes its alive key this often... */
export const HEARTBEAT_MS = 1000;
/** ...and is taken for gone when the key has not been refreshed for this long. */
export const NODE_ALIVE_MS = 3000;
/** A starting node's id is its own once its alive key has kept its mark this long: another
 * live node with the id would have overwritten it within a heartbeat (ha/node.ts claimId). */
export const CLAIM_CONFIRM_MS = HEARTBEAT_MS * 1.5;

export interface NodeKeys {
  sessions: string;
  events: string;
  alive: string;
}

export function registryKey(cluster: string): string {
  return `tunvs:${cluster}:nodes`;
}

export function nodeKeys(cluster: string, nodeId: number): NodeKeys {
  const p = `tunvs:${cluster}:node:${nodeId}`;
  return { sessions: `${p}:sessions`, events: `${p}:events`, alive: `${p}:alive` };
}

/**
 * A connection as HA sync wants it: commands fail at once while Redis is unreachable
 * (forwarding never waits for Redis; lost events are repaired by a resync), reconnects back
 * off to 2 s. With Sentinel, ioredis asks the Sentinels for the current primary at each
 * (re)connect and checks its role.
 */
export function connectRedis(where: HaRedis, blocking: boolean): Redis {
  const opts: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: blocking ? null : 1,
    connectTimeout: 2000,
    retryStrategy: (times: number) => Math.min(200 * times, 2000),
  };
  if ('url' in where) return new Redis(where.url, opts);
  return new Redis({
    ...opts,
    sentinels: where.sentinel.addresses,
    name: where.sentinel.name,
    role: 'master',
    sentinelRetryStrategy: (times: number) => Math.min(200 * times, 2000),
    // Not ioredis's failoverDetector: it left connections ended for good after a failover in
    // the cluster lab (and ioredis turned it off by default for such trouble). A dead
    // primary closes our sockets, which is what ioredis reconnects on; node.ts also revives a
    // connection ioredis has given up on.
  });
}

/** What a status line says about the connection: the server it is on. */
export function describeRedis(r: Redis | undefined): string | undefined {
  const s = r?.stream as { remoteAddress?: string; remotePort?: number } | undefined;
  return s?.remoteAddress ? `${s.remoteAddress}:${s.remotePort}` : undefined;
}

/** The hash field of a session: its identifying key's 40 bytes (session_sync.ts syncKey). */
export function fieldOf(rec: Int32Array, off: number): Buffer {
  return Buffer.from(syncKey(rec, off, new Int32Array(10)).buffer);
}

export function asBuffer(a: Int32Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength);
}

export function asInt32(b: Buffer): Int32Array {
  const copy = new Int32Array(b.length >>> 2);
  Buffer.from(copy.buffer).set(b.subarray(0, copy.length * 4));
  return copy;
}

/**
 * Where an entry stands in its publisher's stream: the publisher's run (`e`, new each time a
 * publisher starts) and the entry's number in that run (`s`, from 1, one per XADD). Redis
 * trims a stream at ~HA_STREAM_MAXLEN entries whether every follower has read them or not; a
 * follower that was behind by more (paused, or its reads stalled) would otherwise go on from
 * the next entry left without knowing what it missed. A jump in the number within one run
 * says so (ha/follower.ts loads that peer's hash again). Entries of a version before these
 * fields have no position and are followed as before.
 */
export interface StreamPosition {
  run: string;
  n: number;
}

/** The position fields of an entry, to add to its XADD. */
export function positionFields(p: StreamPosition): string[] {
  return ['e', p.run, 's', String(p.n)];
}

/** An entry's position, read through `get` (its field's value as text), if it has one. */
export function positionOf(get: (field: string) => string | undefined): StreamPosition | undefined {
  const run = get('e');
  const n = Number(get('s'));
  return run !== undefined && Number.isSafeInteger(n) && n > 0 ? { run, n } : undefined;
}

/**
 * How a publisher cut its sessions into shards (dataplane/shard.ts): every entry carries its
 * workers (`w`) and its shard count (`sh`), so a follower knows whether it finds each
 * session's owner (shardsAgree) before it installs any. A node of the version before wrote
 * only `w` (its shards were its workers) and installs an entry only when `w` is its own worker
 * count; this version writes `w` as a number only where that reading is right (its workers
 * divide the shard count), else as `W/shards`, which such a node refuses.
 */
export function shardFields(workers: number): string[] {
  const w = SESSION_SHARDS % workers === 0 ? String(workers) : `${workers}/${SESSION_SHARDS}`;
  return ['w', w, 'sh', String(SESSION_SHARDS)];
}

/** A publisher's workers and shard count, read through `get`, if the entry has them. */
export function shardsOf(get: (field: string) => string | undefined): { workers: number; shards: number } | undefined {
  const w = get('w');
  if (w === undefined) return undefined;
  const workers = parseInt(w, 10);
  const shards = Number(get('sh') ?? workers);
  return Number.isSafeInteger(workers) && workers > 0 && Number.isSafeInteger(shards) && shards > 0
    ? { workers, shards }
    : undefined;
}

/** Entries missed between `prev` and `next` (0: none, or not known: another run, or no
 * position on either). */
export function entriesMissed(prev: StreamPosition | undefined, next: StreamPosition | undefined): number {
  return prev && next && prev.run === next.run && next.n > prev.n + 1 ? next.n - prev.n - 1 : 0;
}
