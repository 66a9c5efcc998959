/**
 * Following the peers' sessions (main thread; ha/node.ts says which peers and when).
 *
 * One loop on its own connection (XREAD blocks it):
 *   1. load     for each peer that needs it (new peer, its r=resync, after a reconnect): note
 *               the last entry of its stream, mark the sessions installed from it stale,
 *               HSCAN its hash into the owner workers, then drop what is still stale (gone
 *               from the peer). Its sessions never vanish meanwhile. Nothing between the
 *               snapshot and the stream is missed, and applying an upsert twice is harmless.
 *   2. follow   one XREAD BLOCK over every peer's stream, from each one's position; each
 *               batch goes to the workers that own its sessions (session_sync.ts syncOwnerWorker),
 *               which install them owned by that peer (ha/session_sync.ts install). An
 *               entry whose number jumps (ha/redis.ts StreamPosition: Redis trimmed what came
 *               between before this node read it) makes the peer load again.
 * Records of every format this version reads are turned into the data plane's first
 * (ha/sync_format.ts): a peer of an older version is followed like any other. A peer's
 * sessions are installed whatever its worker count, as long as its shards agree with this
 * node's (dataplane/shard.ts shardsAgree; every entry says how it cut them).
 */

import type { Redis } from 'ioredis';
import { HA_HSCAN_COUNT, HA_XREAD_BLOCK_MS, HA_XREAD_COUNT, SESSION_SHARDS } from '../constants.js';
import { shardsAgree } from '../dataplane/shard.js';
import { asInt32, entriesMissed, nodeKeys, positionOf, shardsOf, type StreamPosition } from './redis.js';
import {
  EVENT_WORDS,
  OP_HANDOVER,
  OP_UPSERT,
  SYNC_NODE_WORD,
  syncOwnerWorker,
  type HaWorkerLink,
} from './session_sync.js';
import {
  eventsFromWire,
  formatOfRecord,
  readable,
  recordsFromWire,
  SYNC_FORMATS,
  wireEventBytes,
  type FormatRange,
} from './sync_format.js';

/** Pause of the loop while there is nothing to follow, and after an error. */
const IDLE_MS = 100;

export interface PeerStatus {
  id: number;
  /** Its snapshot has been loaded since it was last (re)announced. */
  loaded: boolean;
  /** Events applied from it (since start). */
  applied: number;
  /** Its clock on the last applied batch vs ours (ms); null before any. */
  syncLagMs: number | null;
}

interface Peer extends PeerStatus {
  keys: { sessions: string; events: string };
  lastId: string;
  /** The position of the entry at lastId, when its publisher writes positions. */
  position: StreamPosition | undefined;
  needLoad: boolean;
}

export class Follower {
  private readonly peers = new Map<number, Peer>();
  private running = false;
  private loop: Promise<void> | undefined;
  /** Follow at all (off until the node's role says; a pair's master follows too: ha/node.ts). */
  enabled = false;
  readonly stats = { applied: 0, snapshotsLoaded: 0 };

  constructor(
    private readonly cluster: string,
    private readonly workers: HaWorkerLink[],
    /** The loads' connection (not blocked) and the stream reader's (blocked by XREAD). */
    private readonly conns: () => { redis: Redis | undefined; reader: Redis | undefined },
    private readonly fail: (msg: string) => void,
    private readonly info: (msg: string, fields: Record<string, unknown>) => void,
    /** The formats this node reads (an older version's range in tests). */
    private readonly formats: FormatRange = SYNC_FORMATS,
  ) {}

  /** Follow exactly these peers from now on. */
  setPeers(ids: readonly number[]): void {
    for (const id of ids) {
      if (this.peers.has(id)) continue;
      const k = nodeKeys(this.cluster, id);
      this.peers.set(id, {
        id,
        keys: { sessions: k.sessions, events: k.events },
        lastId: '0-0',
        position: undefined,
        needLoad: true,
        loaded: false,
        applied: 0,
        syncLagMs: null,
      });
    }
    for (const id of [...this.peers.keys()]) if (!ids.includes(id)) this.peers.delete(id);
  }

  /** Load every peer (or one) afresh before following it further. */
  reload(id?: number): void {
    for (const p of this.peers.values()) {
      if (id === undefined || p.id === id) {
        p.needLoad = true;
        p.loaded = false;
      }
    }
  }

  /** The newest entry of peer `id`'s stream applied here (sent to the workers, which take
   * what follows after it), or undefined while it is not loaded. */
  appliedThrough(id: number): string | undefined {
    const p = this.peers.get(id);
    return p?.loaded === true ? p.lastId : undefined;
  }

  /** Every given peer has been loaded (the node may announce itself / become ready). */
  loadedAll(ids: readonly number[]): boolean {
    return ids.every((id) => this.peers.get(id)?.loaded === true);
  }

  status(): PeerStatus[] {
    return [...this.peers.values()].map(({ id, loaded, applied, syncLagMs }) => ({ id, loaded, applied, syncLagMs }));
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      const { redis, reader } = this.conns();
      if (!this.enabled || !redis || !reader || this.peers.size === 0) {
        await sleep(IDLE_MS);
        continue;
      }
      try {
        for (const p of [...this.peers.values()]) if (p.needLoad) await this.load(redis, p);
        await this.follow(reader);
      } catch (e) {
        if (!this.running) return;
        this.fail(`following the peers' sessions: ${(e as Error).message}`);
        this.reload();
        await sleep(IDLE_MS);
      }
    }
  }

  private async load(redis: Redis, p: Peer): Promise<void> {
    // The stream position first: entries after it are applied after the load.
    const { from, fields } = await lastEntry(redis, p.keys.events);
    // Its copies stay in place (forwarding goes on) while the snapshot confirms them.
    await Promise.all(this.workers.map((w) => w.markStale(p.id)));
    const total = this.installable(p.id, fields) ? await this.loadHash(redis, p.keys.sessions) : 0;
    await Promise.all(this.workers.map((w) => w.sweepStale(p.id)));
    p.lastId = from;
    p.position = positionOf((k) => fields.get(k));
    p.needLoad = false;
    p.loaded = true;
    this.stats.snapshotsLoaded++;
    this.info('HA: loaded a peer snapshot from Redis', { peer: p.id, sessions: total, from });
  }

  /**
   * A cluster node starting: the sessions it published before (it was restarted, or
   * crashed, faster than its peers take a dead node over): still its own, and connections
   * on the wire. Its workers install them as its own (the records name this node).
   */
  async restoreOwn(redis: Redis, nodeId: number): Promise<number> {
    const keys = nodeKeys(this.cluster, nodeId);
    const { fields } = await lastEntry(redis, keys.events);
    const n = this.installable(nodeId, fields) ? await this.loadHash(redis, keys.sessions) : 0;
    this.info("HA: restored this node's own sessions from Redis", { sessions: n });
    return n;
  }

  /** HSCAN a hash of sync records into the owner workers; returns how many. A record of a
   * format this node does not read is left out (and said). */
  private async loadHash(redis: Redis, key: string): Promise<number> {
    let cursor = '0';
    let total = 0;
    const unreadable = new Set<number>();
    do {
      const [next, items] = await redis.hscanBuffer(key, cursor, 'COUNT', HA_HSCAN_COUNT);
      cursor = next.toString();
      const events = new Int32Array((items.length / 2) * EVENT_WORDS);
      let n = 0;
      for (let i = 1; i < items.length; i += 2) {
        const bytes = items[i]!.length;
        const format = formatOfRecord(bytes);
        if (format === undefined || !readable(format, this.formats)) {
          unreadable.add(bytes);
          continue;
        }
        events[n * EVENT_WORDS] = OP_UPSERT;
        events.set(recordsFromWire(asInt32(items[i]!), format), n * EVENT_WORDS + 1);
        n++;
      }
      this.route(events, n);
      total += n;
    } while (cursor !== '0');
    if (unreadable.size > 0)
      this.fail(
        `${key} holds records of ${[...unreadable].join(', ')} bytes, a format this node does not read (it reads formats ${this.formats.join('–')}): those sessions were not loaded; upgrade this node`,
      );
    return total;
  }

  /** One XREAD over every loaded peer's stream; apply what came. */
  private async follow(reader: Redis): Promise<void> {
    const peers = [...this.peers.values()].filter((p) => !p.needLoad);
    if (peers.length === 0) return;
    const res = await reader.xreadBuffer(
      'COUNT',
      HA_XREAD_COUNT,
      'BLOCK',
      HA_XREAD_BLOCK_MS,
      'STREAMS',
      ...peers.map((p) => p.keys.events),
      ...peers.map((p) => p.lastId),
    );
    if (!res) return;
    for (const [key, entries] of res) {
      const p = peers.find((x) => x.keys.events === key.toString());
      if (!p || p.needLoad || this.peers.get(p.id) !== p) continue;
      for (const [id, fields] of entries) {
        p.lastId = id.toString();
        const f = new Map<string, Buffer>();
        for (let i = 0; i < fields.length; i += 2) f.set(fields[i]!.toString(), fields[i + 1]!);
        const position = positionOf((k) => f.get(k)?.toString());
        const missed = entriesMissed(p.position, position);
        p.position = position;
        if (missed > 0) {
          // Trimmed before this node read them: what they carried is in the peer's hash.
          this.fail(
            `node ${p.id}'s stream had lost ${missed} entries before this node read them (trimmed while it was behind): node ${p.id}'s sessions are loaded again from its hash`,
          );
          this.reload(p.id);
          break;
        }
        if (f.has('r')) {
          this.reload(p.id); // it rewrote its hash: load it again, then go on from there
          break;
        }
        if (!this.installable(p.id, f)) continue;
        const format = Number(f.get('v')?.toString() ?? '1');
        if (!readable(format, this.formats)) {
          this.fail(
            `node ${p.id} publishes sync records of format ${format} and this node reads formats ${this.formats.join('–')}: upgrade this node (a node publishes a newer format only once every registered node reads it)`,
          );
          continue;
        }
        const body = f.get('b');
        const wireEvent = wireEventBytes(format);
        if (body === undefined || body.length === 0 || body.length % wireEvent !== 0) {
          // Damaged (or written by something else): its sessions are in the peer's hash.
          this.fail(
            `node ${p.id}'s stream entry ${p.lastId} is not whole sync records (${body?.length ?? 'no'} bytes, ${wireEvent} per record of format ${format}): skipped; node ${p.id}'s sessions are loaded again from its hash`,
          );
          this.reload(p.id);
          break;
        }
        const events = eventsFromWire(asInt32(body), format);
        const n = events.length / EVENT_WORDS;
        // A record naming another node than its publisher is a session handed to that node
        // (its new holder): said so to the install, which publishes it there if it is new.
        for (let e = 0; e < n; e++) {
          const off = e * EVENT_WORDS;
          if (events[off] === OP_UPSERT && events[off + 1 + SYNC_NODE_WORD] !== p.id) events[off] = OP_HANDOVER;
        }
        this.route(events, n);
        p.applied += n;
        this.stats.applied += n;
        p.syncLagMs = Date.now() - Number(f.get('t')?.toString());
      }
    }
  }

  /**
   * Whether this node finds the owner of every session of node `id`, by how the entry
   * `fields` of its stream says it cut them into shards (ha/redis.ts shardFields); says so
   * when not. An entry that does not say (none yet, or a resync mark of the version before)
   * is taken as agreeing, as that version did.
   */
  private installable(id: number, fields: ReadonlyMap<string, { toString(): string }>): boolean {
    const rule = shardsOf((k) => fields.get(k)?.toString());
    const W = this.workers.length;
    if (!rule || shardsAgree(rule.shards, W)) return true;
    this.fail(
      `node ${id} cut its sessions into ${rule.shards} shards over ${rule.workers} workers, this node into ${SESSION_SHARDS} over ${W} workers: this node cannot tell which of its workers owns them, so they are not installed; run one version on both (a node of the version before agrees only while both have the same workers and they divide ${SESSION_SHARDS}: docs/ha.md, "Workers")`,
    );
    return false;
  }

  /** Send each event to the worker that owns it (its mode's owner rule). */
  private route(events: Int32Array, n: number): void {
    const W = this.workers.length;
    const per: number[][] = this.workers.map(() => []);
    for (let e = 0; e < n; e++) per[syncOwnerWorker(events, e * EVENT_WORDS + 1, W)]!.push(e);
    per.forEach((list, w) => {
      if (list.length === 0) return;
      const out = new Int32Array(list.length * EVENT_WORDS);
      list.forEach((e, k) => out.set(events.subarray(e * EVENT_WORDS, (e + 1) * EVENT_WORDS), k * EVENT_WORDS));
      this.workers[w]!.install(out, list.length);
    });
  }
}

/** The id of the last entry of a stream ('0-0' for none) and its fields. */
async function lastEntry(redis: Redis, key: string): Promise<{ from: string; fields: Map<string, string> }> {
  const last = (await redis.xrevrange(key, '+', '-', 'COUNT', 1)) as [string, string[]][];
  const fields = new Map<string, string>();
  const flat = last[0]?.[1] ?? [];
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i]!, flat[i + 1]!);
  return { from: last[0]?.[0] ?? '0-0', fields };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
