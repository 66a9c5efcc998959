/**
 * An HA node on the main thread: a pair's master or standby, or a cluster member.
 *
 *   role       what the node does (ha/role.ts): a pair follows keepalived (notify FIFO or
 *              `tunvs role`): the master forwards and publishes, the standby installs; a
 *              cluster node always forwards, publishes and installs.
 *   stand down a pair's master losing its role stops forwarding at once and publishes on
 *              until its sessions younger than syncAfterMs are out (publishYoung; also on
 *              an orderly stop, runtime.ts), so a planned switch loses no connection.
 *   registry   every HEARTBEAT_MS: the node's entry in tunvs:<cluster>:nodes and its alive
 *              key; then the peers it finds there are the ones it follows (and its workers
 *              learn their worker counts: tellPeerWorkers; a peer with another ISN key is
 *              named: checkIsnKeys). The node id is
 *              claimed first (claimId): nothing is published, restored or registered under
 *              it until the alive key shows no other live node with the same id.
 *   publisher  (ha/publisher.ts) every HA_TICK_MS while publishing: this node's sessions.
 *   follower   (ha/follower.ts) every peer's sessions; a pair's master follows its peer too
 *              (nothing comes while the peer stands by).
 *   format     every heartbeat: the sync format published is the newest every registered
 *              node reads (ha/sync_format.ts), so nodes of two versions run side by side
 *              during an upgrade.
 *   takeover   a pair's standby promoted to master adopts every peer's sessions, then
 *              rewrites its own hash with them (they are its sessions now); a master adopts
 *              what its peer published while both were master once the peer stands down,
 *              and a node standing by drops its own hash once its peer has published since
 *              (adoptStoodDown, dropSupersededHash). A cluster node
 *              adopts a dead peer's sessions when it is that peer's first live backup (the
 *              node the routers now send its local addresses to: ha/announce.ts), and drops
 *              the peer's hash once its own carries them.
 *   holders    a cluster's FULLNAT session is owned by the node its local address is routed
 *              to: the address's own node while it is alive, else that node's first live
 *              backup (only there are the real server's replies seen, so only there is the
 *              connection known to be alive). The node tells its workers each peer's local
 *              addresses and who holds them; when that changes (a peer died or is back), and
 *              once it is ready, the workers reconcile (hand over what another node holds,
 *              take what this one holds: ha/session_sync.ts) and a claim is resynced. A node
 *              whose alive key lapsed (paused, or cut off from Redis, longer than
 *              NODE_ALIVE_MS: its backup may have adopted its sessions) reconciles, hands
 *              the sessions of the other modes (no address of its own) to that backup, and
 *              republishes all.
 *   restore    a cluster node starting reads its own hash back first (it may have been
 *              restarted faster than the peers take a dead node over: those connections are
 *              still its own), before its first resync rewrites it.
 *
 * Ready (keepalived's check, and what a cluster node waits for before it announces itself):
 * a pair's master is; any other node once it has loaded every live peer's sessions (and a
 * cluster node its own), or when Redis has been unreachable for READY_GRACE_MS (forwarding
 * without them beats not at all).
 */

import { HA_STAND_DOWN_MS, HA_TICK_MS, SESSION_SHARDS } from '../constants.js';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { HaConfig } from '../config/config.js';
import { rateLimited, type Logger } from '../control/log.js';
import { followNotifyFifo } from './notify_fifo.js';
import { Follower, type PeerStatus } from './follower.js';
import { Publisher } from './publisher.js';
import {
  CLAIM_CONFIRM_MS,
  connectRedis,
  describeRedis,
  HEARTBEAT_MS,
  NODE_ALIVE_MS,
  nodeKeys,
  registryKey,
  type NodeKeys,
} from './redis.js';
import { adopterOf } from './announce.js';
import { prefixAddresses } from '../service/addr.js';
import type { PeerLocalAddress } from '../service/service.js';
import { HaControl, type Role } from './role.js';
import type { HaWorkerLink } from './session_sync.js';
import { chooseFormat, LEGACY_FORMATS, SYNC_FORMATS, type FormatRange } from './sync_format.js';

const LOG_EVERY_MS = 10_000;
/** A node that cannot reach Redis is still "ready" (better than no LB) after this. */
const READY_GRACE_MS = 5000;

/** A pair node's VRRP role, or `active` for a cluster node. */
export type NodeRole = Role | 'active';

export interface HaPeer extends PeerStatus {
  name: string;
  alive: boolean;
  publishing: boolean;
  /** The sync formats it reads (registered by it; an older version registers none). */
  syncFormats: FormatRange;
  /** Its workers, and the shards it cuts its sessions into (a version before shards: its
   * workers); this node installs its sessions only where they agree (dataplane/shard.ts). */
  workers: number;
  shards: number;
  /** Cluster: the node its local addresses (and their sessions) go to now: itself while it
   * is alive, else its first live backup; 0 for none. */
  holder?: number;
  /** Whether its ISN key is this node's (absent: it or this node does not say). */
  sameIsnKey?: boolean;
}

export interface HaStatus {
  mode: 'pair' | 'cluster';
  nodeId: number;
  name: string;
  role: NodeRole;
  /** keepalived's role changes since start (a pair; a cluster node has none). */
  roleChanges: number;
  forwarding: boolean;
  publishing: boolean;
  ready: boolean;
  redis: 'up' | 'down';
  /** The Redis server the node is connected to (with Sentinel: the current primary). */
  redisServer?: string;
  /** Events this node published / applied from peers (since start). */
  published: number;
  applied: number;
  /** Events lost (ring full or Redis down) since start; each such loss triggers a resync. */
  lost: number;
  resyncs: number;
  snapshotsLoaded: number;
  /** Largest sync lag over the peers followed (ms); null before any batch. */
  syncLagMs: number | null;
  /** Events waiting in the workers' rings. */
  pending: number;
  /** The sync formats this node reads, and the one it publishes (the newest every registered
   * node reads). */
  syncFormats: FormatRange;
  syncFormat: number;
  /** This node's workers and session shards (docs/ha.md, "Workers"). */
  workers: number;
  shards: number;
  peers: HaPeer[];
  lastError?: string;
  /** Another live node has this node's id (and started first): this one stands down. */
  nodeIdConflict?: string;
}

/** A node's alive key (ha/redis.ts). */
interface AliveValue {
  publishing: boolean;
  ready: boolean;
  /** Random per process: tells two nodes with one id apart. */
  token: string;
  name: string;
  startedAt: number;
}

interface RegistryEntry {
  id: number;
  name: string;
  mode: string;
  workers: number;
  startedAt: number;
  /** Its local addresses (prefixes): a cluster node routes its peers' as their backup. */
  laddrs?: string[];
  /** The sync formats it reads (none: a version before formats were registered). */
  syncFormats?: FormatRange;
  /** The shards it cuts its sessions into (none: a version before shards, its workers). */
  shards?: number;
  /** The name of its ISN key (nat/seq.ts isnKeyId; none: a version before it was registered). */
  isnKeyId?: string;
}

export interface HaNodeOptions {
  /** The node's local addresses as prefixes (registry; cluster backups route them). */
  laddrs?: () => string[];
  /** The sync formats this node reads and publishes (default: all this version has; tests
   * narrow it to play a node of an older version). */
  syncFormats?: FormatRange;
  /** The name of this node's ISN key (nat/seq.ts isnKeyId), registered so that a peer with
   * another key is named (the SYN proxy's cookies and the ISNs the real servers see need one
   * key on every node: docs/ha.md). */
  isnKeyId?: string;
}

export class HaNode {
  readonly control: HaControl;
  private readonly keys: NodeKeys;
  private redis: Redis | undefined;
  private reader: Redis | undefined;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private role: NodeRole;
  private roleChanges = 0;
  private busy = false;
  /** Registry beats under way (beat): stop() lets them finish before it closes the connection. */
  private beats = 0;
  private stopped = false;
  private stopFifo: (() => void) | undefined;
  private readonly startedAt = Date.now();
  private readonly errors: ReturnType<typeof rateLimited>;
  private lastError: string | undefined;
  private readonly publisher: Publisher;
  private readonly follower: Follower;
  /** Peers as last read from the registry (undefined: not read yet). */
  private peers: { entry: RegistryEntry; alive: boolean; publishing: boolean }[] | undefined;
  /** Peers named for another ISN key (checkIsnKeys), until theirs agrees. */
  private readonly otherIsnKey = new Set<number>();

  /** Cluster: dead peers whose sessions this node adopted (cleared when they return). */
  private readonly adopted = new Set<number>();
  /** Cluster: adopted peers whose hash goes once this node's resync count passes the value
   * (the adopted sessions are in this node's hash by then). */
  private readonly dropHashAfter = new Map<number, number>();
  /** Cluster: this node's own sessions from before a restart are back in its tables (a pair
   * needs none: its new master adopts what the old one published). */
  private ownRestored: boolean;
  /** Pair master: the newest entry of its own stream once its first resync as master is out
   * (undefined before), the resyncs it had published when it became master, the peers that
   * have published since, and for each peer adopted the newest entry that adoption covered:
   * only an entry after it is a new split (adoptStoodDown). */
  private masterSince: string | undefined;
  private resyncsAtPromotion = 0;
  private readonly splitPeers = new Set<number>();
  private readonly adoptedUpTo = new Map<number, string>();
  /** Split peers seen standing down at the last beat (adopted if so again at this one). */
  private readonly stoodDown = new Set<number>();
  /** Pair: this node is not publishing and its hash may still hold what it published as
   * master: dropped once the peer has published since (dropSupersededHash). */
  private ownHashStale: boolean;
  /** Role changes so far: a stand-down finishes only if no change came after it. */
  private roleGen = 0;
  /** Has been ready (see `ready`). */
  private readyOnce = false;
  /** This process's mark in its alive key: another writer there means another node with
   * this id (see `claimId`). */
  private readonly token = randomBytes(8).toString('hex');
  /** The node id: not yet confirmed as this node's alone, confirmed, or held by another live
   * node that started first (this one then stands down). */
  private claim: 'unconfirmed' | 'held' | 'conflict' = 'unconfirmed';
  /** When this node first wrote its mark (0: not yet). */
  private firstClaimAt = 0;
  private conflictWith: string | undefined;
  /** The sync formats this node reads (see HaNodeOptions). */
  private readonly formats: FormatRange;
  /** Cluster: who holds which local address changed (or the node lapsed) since the workers
   * last reconciled; done once the node is ready. */
  private needReconcile = true;
  /** Cluster: the reconcile follows a lapse: resync even if nothing was claimed (the node's
   * hash may have been removed by its adopter meanwhile). */
  private lapsed = false;
  /** Cluster: a reconcile runs (beside the ticks that publish its handovers). */
  private reconciling = false;
  /** This process has written its alive key: a later write that finds it gone (Redis's own
   * word: SET ... GET) follows a lapse. */
  private aliveWritten = false;
  /** The peers' local addresses the workers were last told (cluster), and who holds each
   * peer's. */
  private toldAddresses = '';
  /** The peers' worker counts the workers were last told. */
  private toldWorkers = '';
  private readonly holders = new Map<number, number>();

  constructor(
    private readonly cfg: HaConfig,
    private readonly workers: HaWorkerLink[],
    private readonly logger: Logger,
    control?: HaControl,
    private readonly opts: HaNodeOptions = {},
  ) {
    this.control = control ?? new HaControl();
    this.keys = nodeKeys(cfg.cluster, cfg.nodeId);
    this.role = cfg.mode === 'cluster' ? 'active' : cfg.initialRole;
    this.ownRestored = cfg.mode !== 'cluster';
    this.ownHashStale = cfg.mode === 'pair';
    this.errors = rateLimited(logger, LOG_EVERY_MS);
    const info = (msg: string, fields: Record<string, unknown>): void => this.logger.log('info', msg, fields);
    this.formats = opts.syncFormats ?? SYNC_FORMATS;
    this.publisher = new Publisher(this.keys, cfg.nodeId, workers, (m) => this.fail(m), info);
    this.publisher.format = this.formats[1];
    this.follower = new Follower(
      cfg.cluster,
      workers,
      () => ({ redis: this.up ? this.redis : undefined, reader: this.reader }),
      (m) => this.fail(m),
      info,
      this.formats,
    );
    this.applyRole();
  }

  start(): void {
    this.redis = connectRedis(this.cfg.redis, false);
    this.reader = connectRedis(this.cfg.redis, true);
    for (const [name, r] of [
      ['redis', this.redis],
      ['redis reader', this.reader],
    ] as const) {
      r.on('error', (e: Error) => {
        if (!this.stopped) this.fail(`${name}: ${e.message}`);
      });
      r.on('ready', () => {
        if (name !== 'redis') return;
        this.logger.log('info', 'HA: connected to Redis', { redis: describeRedis(r) });
        // Publishing: rebuild what may have been lost; following: load the peers again.
        this.publisher.needResync = true;
        this.follower.reload();
        void this.beat();
      });
    }
    this.timer = setInterval(() => void this.tick(), HA_TICK_MS);
    this.heartbeat = setInterval(() => void this.beat(), HEARTBEAT_MS);
    this.follower.start();
    if (this.cfg.mode === 'pair' && this.cfg.notifyFifo) {
      this.stopFifo = followNotifyFifo(this.cfg.notifyFifo, (role) => this.setRole(role));
    }
    this.logger.log('info', `HA: node ${this.cfg.nodeId} (${this.cfg.name}) starting as ${this.role}`, {
      mode: this.cfg.mode,
      cluster: this.cfg.cluster,
      ...(this.cfg.notifyFifo ? { notifyFifo: this.cfg.notifyFifo } : {}),
    });
  }

  /** Stop syncing: the last batch and registry beat in flight are given up to a second to
   * finish, so that nothing is sent after the alive key is deleted and the connection closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.stopFifo?.();
    const deadline = Date.now() + 1000;
    while ((this.busy || this.beats > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.reader?.disconnect(); // ends a blocked XREAD at once
    await this.follower.stop();
    // Gone now, not in NODE_ALIVE_MS: a cluster node's backup takes its sessions over at once
    // (it drained first: the routers send it nothing any more).
    if (this.up) await this.redis!.del(this.keys.alive).catch(() => undefined);
    this.redis?.disconnect();
  }

  /** Rewrite this node's hash from the workers' tables (a reload renamed what some records are
   * published under: their old fields would stay until the next resync). */
  republish(why: string): void {
    this.publisher.needResync = true;
    this.logger.log('info', `HA: ${why}: this node's sessions are written again`);
  }

  /** keepalived's notify (pair only): MASTER, BACKUP or FAULT. */
  setRole(role: Role): void {
    if (this.cfg.mode === 'cluster')
      throw new Error('a cluster node has no VRRP role: it always forwards (roles are for mode: pair)');
    if (role === this.role) return;
    const was = this.role;
    this.role = role;
    this.roleChanges++;
    const gen = ++this.roleGen;
    if (role === 'master') {
      // Every session it installed is now this node's to publish, expire and reset (each
      // worker's scans run in order: the resync's snapshot comes after the adopt). What a
      // peer publishes after the entries applied so far is installed after the adopt: it is
      // adopted once that peer stands by (adoptStoodDown), e.g. the young sessions the old
      // master publishes as it stands down.
      this.masterSince = undefined;
      this.resyncsAtPromotion = this.publisher.stats.resyncs;
      for (const p of this.peers ?? []) {
        const applied = this.follower.appliedThrough(p.entry.id);
        if (applied !== undefined) this.adoptedUpTo.set(p.entry.id, applied);
      }
      void this.adopt(0);
      this.publisher.needResync = true;
    }
    this.logger.log('info', `HA: role ${was} -> ${role}`);
    if (role === 'master') this.applyRole();
    else if (was === 'master' && this.control.publishing) void this.standDown(gen);
    else this.standBy();
  }

  /** Pair: stand by (backup or fault): load the peers afresh, the node's own hash to go once
   * the peer has published since. */
  private standBy(): void {
    this.follower.reload();
    this.ownHashStale = true;
    this.applyRole();
  }

  /**
   * Pair: the master stands down (keepalived gave the next hops to its peer: a planned switch,
   * a failback, its check failing). It stops forwarding at once and publishes on until its
   * sessions younger than syncAfterMs are out too (each worker's publishYoung, then the
   * publisher's ticks until the rings are empty; HA_STAND_DOWN_MS at most); then it stands by.
   * The peer, master by now or soon, installs them and adopts them once this node stands by
   * (adoptStoodDown), or with the rest at its promotion: a planned switch loses no
   * connection, not even one opened just before it. A failover by death cannot do this (the
   * limit in docs/ha.md).
   */
  private async standDown(gen: number): Promise<void> {
    this.control.set(false, true);
    await this.publishYoung('standing down', () => gen === this.roleGen);
    if (gen === this.roleGen && !this.stopped) this.standBy();
  }

  /**
   * Publish the sessions younger than syncAfterMs now (each worker's publishYoung), and wait
   * until the publisher has sent them (its ticks drain the rings), HA_STAND_DOWN_MS at most
   * or while `still()` holds: a pair's master standing down, a cluster node leaving in order
   * (runtime.ts stop: its peers then carry its young connections on too). How many went.
   */
  async publishYoung(why: string, still: () => boolean = () => true): Promise<number> {
    if (!this.control.publishing) return 0;
    const deadline = Date.now() + HA_STAND_DOWN_MS;
    try {
      const published = await untilDeadline(
        Promise.all(this.workers.map((w) => w.publishYoung())),
        deadline,
        'the workers did not list their young sessions in time',
      );
      const sum = published.reduce((a, b) => a + b, 0);
      while (still() && !this.stopped && (this.publisher.pending > 0 || this.busy) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, HA_TICK_MS / 4));
      const left = this.publisher.pending;
      this.logger.log('info', `HA: ${why}: ${sum} sessions younger than syncAfterMs published`, {
        ...(left > 0 ? { notPublished: left } : {}),
      });
      return sum;
    } catch (e) {
      this.fail(`${why}: ${(e as Error).message}`);
      return 0;
    }
  }

  private applyRole(): void {
    const r = this.role === 'active' ? 'master' : this.role;
    this.control.apply(this.cfg.mode, r);
    // A pair's master follows its peer too: nothing comes while the peer stands by, and what
    // comes while both are master (a split) is adopted when the peer stands down.
    this.follower.enabled = true;
  }

  status(): HaStatus {
    const peers = this.follower.status();
    const server = this.up ? describeRedis(this.redis) : undefined;
    const lags = peers.map((p) => p.syncLagMs).filter((x): x is number => x !== null);
    return {
      mode: this.cfg.mode,
      nodeId: this.cfg.nodeId,
      name: this.cfg.name,
      role: this.role,
      roleChanges: this.roleChanges,
      forwarding: this.control.forwarding,
      publishing: this.control.publishing,
      ready: this.ready,
      redis: this.up ? 'up' : 'down',
      ...(server ? { redisServer: server } : {}),
      published: this.publisher.stats.published,
      applied: this.follower.stats.applied,
      lost: this.publisher.stats.lost,
      resyncs: this.publisher.stats.resyncs,
      snapshotsLoaded: this.follower.stats.snapshotsLoaded,
      syncLagMs: lags.length > 0 ? Math.max(...lags) : null,
      pending: this.publisher.pending,
      syncFormats: this.formats,
      syncFormat: this.publisher.format,
      workers: this.workers.length,
      shards: SESSION_SHARDS,
      peers: peers.map((p) => {
        const r = this.peers?.find((x) => x.entry.id === p.id);
        const sameIsnKey = r && this.sameIsnKey(r.entry);
        return {
          ...p,
          name: r?.entry.name ?? '?',
          alive: r?.alive ?? false,
          publishing: r?.publishing ?? false,
          syncFormats: r?.entry.syncFormats ?? LEGACY_FORMATS,
          workers: r?.entry.workers ?? 0,
          shards: r?.entry.shards ?? r?.entry.workers ?? 0,
          ...(this.holders.has(p.id) ? { holder: this.holders.get(p.id)! } : {}),
          ...(sameIsnKey === undefined ? {} : { sameIsnKey }),
        };
      }),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.claim === 'conflict' ? { nodeIdConflict: this.conflictWith } : {}),
    };
  }

  /**
   * Cluster: remove a decommissioned node from the registry (`tunvs cluster forget`), so the
   * others stop following it and stop routing its local addresses as its backup. Refused for
   * this node itself, for a node that is alive, and for one whose sessions are still in
   * Redis (no live node has adopted them yet: ha/announce.ts adopterOf); its stream goes too.
   */
  async forget(id: number): Promise<void> {
    if (this.cfg.mode !== 'cluster') throw new Error('forget is for cluster nodes (a pair has no registry to tidy)');
    if (id === this.cfg.nodeId) throw new Error(`node ${id} is this node: forget it from another one`);
    if (!this.up) throw new Error('Redis is not reachable from this node');
    const r = this.redis!;
    const k = nodeKeys(this.cfg.cluster, id);
    const [entry, alive, held] = await Promise.all([
      r.hget(registryKey(this.cfg.cluster), String(id)),
      r.exists(k.alive),
      r.exists(k.sessions),
    ]);
    if (entry === null) throw new Error(`node ${id} is not in cluster ${this.cfg.cluster}'s registry`);
    if (alive) throw new Error(`node ${id} is alive: stop tunvs on it first`);
    if (held)
      throw new Error(
        `node ${id}'s sessions are still in Redis (its backup has not adopted them yet): try again in a few seconds`,
      );
    await r.multi().hdel(registryKey(this.cfg.cluster), String(id)).del(k.events).exec();
    this.logger.log('info', `HA: node ${id} forgotten (removed from cluster ${this.cfg.cluster})`);
    await this.beat(); // this node's peer list without it now, not a heartbeat later
  }

  /** Cluster: every registered peer with its local addresses (the route plan's input). */
  peerAddresses(): { id: number; laddrs: string[] }[] {
    return (this.peers ?? []).map((p) => ({ id: p.entry.id, laddrs: p.entry.laddrs ?? [] }));
  }

  /** Cluster: node `id`'s first live backup (this node included), as every node computes it
   * from the registry (ha/announce.ts adopterOf); 0 for none. */
  private backupOf(id: number): number {
    const peers = this.peers ?? [];
    const alive = new Set([this.cfg.nodeId, ...peers.filter((p) => p.alive).map((p) => p.entry.id)]);
    const nodes = [this.cfg.nodeId, ...peers.map((p) => p.entry.id)];
    return adopterOf(id, nodes, (n) => alive.has(n)) ?? 0;
  }

  /**
   * Cluster: adopt the sessions of every dead peer this node is the best live backup for
   * (the routers send that peer's local addresses here: ha/announce.ts), once per death.
   * They become this node's to publish, expire and reset, and its next resync carries them.
   */
  private takeOver(): void {
    const peers = this.peers ?? [];
    for (const p of peers) {
      const id = p.entry.id;
      if (p.alive) {
        this.adopted.delete(id);
        continue;
      }
      if (this.adopted.has(id) || this.backupOf(id) !== this.cfg.nodeId) continue;
      if (!this.follower.loadedAll([id])) continue; // its sessions first
      this.adopted.add(id);
      this.logger.log('info', `HA: node ${id} (${p.entry.name}) is gone; its sessions are this node's now`);
      void this.adopt(id).then((done) => {
        if (!done) {
          this.adopted.delete(id); // again at the next look at the registry
          return;
        }
        // A resync underway may have read part of the table before the adopt: the one after
        // it carries them all, and only then does the peer's hash go.
        this.publisher.needResync = true;
        this.dropHashAfter.set(id, this.publisher.resyncsUnderway);
      });
    }
  }

  /** Every worker takes over the sessions installed from peer `owner` (0: every peer);
   * false (and said) when one did not. */
  private async adopt(owner: number): Promise<boolean> {
    try {
      await Promise.all(this.workers.map((w) => w.adopt(owner)));
      return true;
    } catch (e) {
      this.fail(`adopting ${owner === 0 ? "the peer's" : `node ${owner}'s`} sessions: ${(e as Error).message}`);
      return false;
    }
  }

  /**
   * Cluster: each session goes to the node that holds its local address (see the file
   * header). What this node took as its own is published by a resync, which every peer
   * reloads (the one that owned each hands it over on this node's record); what it handed
   * over goes out as the holder's records.
   */
  private async reconcile(): Promise<void> {
    this.needReconcile = false;
    // After a lapse the sessions without an address of this node's own go to the node that
    // took it for dead (its first live backup), which adopted them meanwhile.
    const lapsed = this.lapsed;
    this.lapsed = false;
    const othersTo = lapsed ? this.backupOf(this.cfg.nodeId) : 0;
    const done = await Promise.all(this.workers.map((w) => w.reconcile(othersTo))).catch((e: Error) => {
      this.needReconcile = true; // a worker did not answer: again at the next tick
      this.lapsed ||= lapsed;
      throw e;
    });
    const claimed = done.reduce((n, d) => n + d.claimed, 0);
    const handedOver = done.reduce((n, d) => n + d.handedOver, 0);
    if (claimed + handedOver > 0)
      this.logger.log('info', 'HA: sessions moved to the node that holds their local address', {
        claimed,
        handedOver,
      });
    if (claimed > 0 || lapsed) this.publisher.needResync = true;
  }

  /** Cluster: tell the workers the peers' local addresses and who holds each now (the peer
   * while it is alive, else its first live backup: where the routers send it), when that
   * changes; the workers reconcile at the next tick. */
  private tellAddresses(): void {
    this.holders.clear();
    const addrs: PeerLocalAddress[] = (this.peers ?? []).flatMap((p) => {
      const id = p.entry.id;
      const holder = p.alive ? id : this.backupOf(id);
      this.holders.set(id, holder);
      return prefixAddresses(p.entry.laddrs ?? []).map((a) => ({ ...a, holder }));
    });
    const text = JSON.stringify(addrs);
    if (text === this.toldAddresses) return;
    this.toldAddresses = text;
    for (const w of this.workers) w.peerLocalAddresses(addrs);
    this.needReconcile = true;
  }

  /** Tell the workers the registered peers' worker counts when they change: a FULLNAT session
   * whose client's shard is full borrows a port of a shard all of them give the same owner
   * (service/laddr.ts), so that a failover to any of them keeps it. A registered peer counts
   * while it is down too: it installs this node's sessions when it is back. */
  private tellPeerWorkers(): void {
    const registered = (this.peers ?? []).map((p) => p.entry.workers).filter((w) => Number.isInteger(w) && w > 0);
    const counts = [...new Set(registered)].sort((a, b) => a - b);
    const text = counts.join(',');
    if (text === this.toldWorkers) return;
    this.toldWorkers = text;
    for (const w of this.workers) w.peerWorkers(counts);
  }

  /**
   * Once this node's resync carries a dead peer's adopted sessions, that peer's hash goes:
   * when it comes back it must not restore records that are stale by then; it installs this
   * node's copies instead (and, once ready, takes back those on its own local addresses:
   * reconcile).
   */
  private async dropAdoptedHashes(redis: Redis): Promise<void> {
    for (const [id, before] of this.dropHashAfter) {
      if (this.publisher.stats.resyncs <= before) continue;
      this.dropHashAfter.delete(id);
      if (this.peers?.find((p) => p.entry.id === id)?.alive) continue; // back already: its own
      await redis.del(nodeKeys(this.cfg.cluster, id).sessions);
    }
  }

  /** Ready: see the file header. Once ready, a node stays ready: a peer joining or a Redis
   * reconnect (both reload snapshots) must not withdraw a serving node's announcements, nor
   * fail a pair standby's check that already passed. */
  get ready(): boolean {
    if (this.claim === 'conflict') return false;
    if (this.readyOnce || (this.cfg.mode === 'pair' && this.role === 'master')) return true;
    if (!this.up) return (this.readyOnce = Date.now() - this.startedAt > READY_GRACE_MS);
    if (this.peers === undefined || !this.ownRestored) return false;
    this.readyOnce = this.follower.loadedAll(this.peers.filter((p) => p.alive).map((p) => p.entry.id));
    return this.readyOnce;
  }

  private get up(): boolean {
    return this.redis?.status === 'ready';
  }

  private fail(msg: string): void {
    this.lastError = msg;
    this.errors.logKeyed('sync', 'error', `HA sync: ${msg}`);
  }

  private async tick(): Promise<void> {
    // Nothing of this node's id is written or restored before the id is known to be its own.
    // Nor before the registry has been read: the format depends on it.
    if (this.busy || !this.control.publishing || this.claim !== 'held' || this.peers === undefined) return;
    this.busy = true;
    try {
      const redis = this.up ? this.redis : undefined;
      if (!this.ownRestored) {
        // Before the first resync rewrites this node's hash from its (empty) tables.
        if (!redis) return;
        await this.follower.restoreOwn(redis, this.cfg.nodeId);
        this.ownRestored = true;
      }
      // Beside the publishing, not before it: a handover waits for room in the worker's sync
      // ring, which only the publisher's ticks make. No resync meanwhile: its snapshot would
      // wait for the reconcile in each worker (their scans run in turn), and the reconcile
      // for the ring that publisher no longer drains.
      if (this.cfg.mode === 'cluster' && this.needReconcile && this.ready && !this.reconciling) {
        this.reconciling = true;
        void this.reconcile()
          .catch((e: Error) => this.fail(e.message))
          .finally(() => (this.reconciling = false));
      }
      await this.publisher.tick(redis, !this.reconciling);
      if (redis && this.dropHashAfter.size > 0) await this.dropAdoptedHashes(redis);
    } catch (e) {
      this.fail((e as Error).message);
    } finally {
      this.busy = false;
    }
  }

  /**
   * Is this node's id its own? `prev` is what the alive key held before this beat wrote it
   * (or, standing down, what it holds now). Someone else's mark after this node's own first
   * write means a second live node with the same id (a dead one writes nothing; its key from
   * before a restart is overwritten once and gone). Confirmed after CLAIM_CONFIRM_MS without
   * another mark: a live holder would have refreshed its key by then. Of two live holders,
   * the one that started later stands down (no publishing, no restore of the hash, not
   * ready, not in the registry) until the key is free again; the other goes on. Nodes of
   * older versions write no token and are never taken for a second holder.
   */
  private claimId(prev: string | null): void {
    const other = prev === null ? undefined : (JSON.parse(prev) as Partial<AliveValue>);
    const foreign = other !== undefined && other.token !== undefined && other.token !== this.token;
    if (this.claim === 'conflict') {
      if (foreign) return;
      this.claim = 'unconfirmed'; // the other node is gone: claim the id again
      this.firstClaimAt = 0;
      this.logger.log('info', `HA: node id ${this.cfg.nodeId} is free again; claiming it`);
      return;
    }
    if (foreign && this.firstClaimAt > 0) {
      const desc = `${other.name ?? '?'}, started ${new Date(other.startedAt ?? 0).toISOString()}`;
      const otherFirst =
        (other.startedAt ?? 0) < this.startedAt ||
        ((other.startedAt ?? 0) === this.startedAt && other.token! < this.token);
      if (otherFirst) {
        this.claim = 'conflict';
        this.conflictWith = desc;
        this.fail(
          `node id ${this.cfg.nodeId} is in use by another live node (${desc}): this node stands down (publishes nothing, is not ready) until it is gone; give every node its own ha.nodeId`,
        );
        return;
      }
      this.fail(
        `node id ${this.cfg.nodeId} is also used by another node (${desc}), which started later and stands down`,
      );
    }
    if (this.firstClaimAt === 0) this.firstClaimAt = Date.now();
    // Confirmed once this node's mark has stood for longer than another holder's heartbeat.
    if (this.claim === 'unconfirmed' && !foreign && Date.now() - this.firstClaimAt > CLAIM_CONFIRM_MS) {
      this.claim = 'held';
      void this.beat(); // registered now, not a heartbeat later
    }
  }

  /**
   * Publish the newest format every registered node reads (alive or not: a node stopped to
   * be upgraded may come back as it was). A change is logged and rewrites this node's hash.
   */
  private chooseFormat(): void {
    const peers = (this.peers ?? []).map((p) => ({ id: p.entry.id, formats: p.entry.syncFormats ?? LEGACY_FORMATS }));
    const c = chooseFormat(this.formats, peers);
    if (c.incompatible.length > 0)
      this.fail(
        `node(s) ${c.incompatible.join(', ')} read no sync format this node writes (${this.formats.join('–')}): their sessions and this node's cannot be exchanged; upgrade through the versions in between (docs/operations.md, "Upgrading")`,
      );
    if (c.format === this.publisher.format) return;
    this.logger.log('info', `HA: publishing sync format ${c.format} from now on (was ${this.publisher.format})`, {
      ...(c.heldBy.length > 0 ? { olderNodes: c.heldBy } : {}),
    });
    this.publisher.format = c.format;
  }

  /**
   * A heartbeat wrote the alive key, which held `prev` before. Gone although this process had
   * written it (a cluster node paused, or cut off from Redis, for longer than NODE_ALIVE_MS),
   * the node was taken for dead meanwhile and its backup may have adopted its sessions: it
   * takes back those on its own local addresses and republishes all (reconcile, next tick).
   * Redis's word, not this node's clock: a heartbeat sent in time but held up on the way
   * lapses too.
   */
  private renewed(prev: string | null): void {
    if (this.cfg.mode === 'cluster' && this.aliveWritten && prev === null && this.claim === 'held') {
      this.logger.log(
        'warn',
        `HA: this node's alive key had expired (paused, or cut off from Redis, for over ${NODE_ALIVE_MS} ms); its peers may have adopted its sessions: taking back those on its own local addresses`,
      );
      this.needReconcile = true;
      this.lapsed = true;
    }
    this.aliveWritten = true;
  }

  /** Registry: say we are here, then find the peers (and which of them are alive). */
  private async beat(): Promise<void> {
    if (this.stopped) return;
    // A connection ioredis gave up on ("end") is never retried by it: start it again.
    for (const r of [this.redis, this.reader]) {
      if (r?.status === 'end') r.connect().catch((e: Error) => this.fail(`reconnecting to Redis: ${e.message}`));
    }
    if (!this.up) return;
    this.beats++;
    try {
      await this.register(this.redis!);
    } finally {
      this.beats--;
    }
  }

  /** beat's work on the connection `r`: this node's entry and alive key, then the peers. */
  private async register(r: Redis): Promise<void> {
    const me: RegistryEntry = {
      id: this.cfg.nodeId,
      name: this.cfg.name,
      mode: this.cfg.mode,
      workers: this.workers.length,
      shards: SESSION_SHARDS,
      startedAt: this.startedAt,
      laddrs: this.opts.laddrs?.() ?? [],
      syncFormats: this.formats,
      ...(this.opts.isnKeyId === undefined ? {} : { isnKeyId: this.opts.isnKeyId }),
    };
    const mark: AliveValue = {
      publishing: this.control.publishing,
      ready: this.ready,
      token: this.token,
      name: this.cfg.name,
      startedAt: this.startedAt,
    };
    try {
      // Registered (and so followed, and routed as a backup by the peers) only once the id is
      // this node's; until then, and while another node holds it, only the alive key speaks.
      const tx = r.multi();
      if (this.claim === 'held') tx.hset(registryKey(this.cfg.cluster), String(me.id), JSON.stringify(me));
      if (this.claim !== 'conflict') tx.set(this.keys.alive, JSON.stringify(mark), 'PX', NODE_ALIVE_MS, 'GET');
      else tx.get(this.keys.alive);
      tx.hgetall(registryKey(this.cfg.cluster));
      const res = (await tx.exec())!.map(([err, v]) => {
        if (err) throw err;
        return v;
      });
      const all = res[res.length - 1] as Record<string, string>;
      const prev = res[res.length - 2] as string | null;
      const wrote = this.claim !== 'conflict'; // before claimId, which may change it
      this.claimId(prev);
      if (wrote) this.renewed(prev);
      const entries = Object.values(all)
        .map((v) => JSON.parse(v) as RegistryEntry)
        .filter((e) => e.id !== me.id);
      const alive =
        entries.length === 0 ? [] : await r.mget(...entries.map((e) => nodeKeys(this.cfg.cluster, e.id).alive));
      this.peers = entries.map((entry, i) => {
        const a = alive[i] ? (JSON.parse(alive[i]) as { publishing: boolean }) : undefined;
        if (entry.mode !== this.cfg.mode)
          this.fail(
            `node ${entry.id} (${entry.name}) runs mode ${entry.mode} in cluster ${this.cfg.cluster}, this node ${this.cfg.mode}`,
          );
        return { entry, alive: a !== undefined, publishing: a?.publishing ?? false };
      });
      this.checkIsnKeys();
      if (this.cfg.mode === 'cluster') this.tellAddresses();
      this.tellPeerWorkers();
      this.follower.setPeers(this.peers.map((p) => p.entry.id));
      this.chooseFormat();
      if (this.cfg.mode === 'cluster') this.takeOver();
      else await this.pairStreams(r);
    } catch (e) {
      // A beat stop() gave up waiting for: not a failure of a running node.
      if (!this.stopped) this.fail(`registry: ${(e as Error).message}`);
    }
  }

  /**
   * Name each peer whose ISN key is not this node's, as it is found, and say when it agrees
   * again (its restart with the right secret). A connection that moves to it (a failover, an
   * ECMP change) in its SYN proxy handshake finds a cookie it cannot check, and the ISNs it
   * gives the real servers are not ahead of this node's (their TIME_WAIT refuses reused ports'
   * SYNs for a second): docs/ha.md. Forwarding goes on either way.
   */
  private checkIsnKeys(): void {
    for (const { entry } of this.peers ?? []) {
      const differs = this.sameIsnKey(entry) === false;
      if (differs === this.otherIsnKey.has(entry.id)) continue;
      if (differs) {
        this.otherIsnKey.add(entry.id);
        this.logger.log(
          'error',
          `HA: node ${entry.id} (${entry.name}) has another ISN key than this node: give every node of ${this.cfg.mode === 'pair' ? 'the pair' : `cluster ${this.cfg.cluster}`} the same isn.secret (or the same isn.secretFile's content); until then a handshake the SYN proxy answered fails when it moves between them, and new connections after a failover can stall on the real servers' TIME_WAIT`,
          { peer: entry.id, peerName: entry.name },
        );
      } else {
        this.otherIsnKey.delete(entry.id);
        this.logger.log('info', `HA: node ${entry.id} (${entry.name}) has this node's ISN key now`, {
          peer: entry.id,
          peerName: entry.name,
        });
      }
    }
  }

  /** Whether a peer's ISN key is this node's; undefined when it or this node does not say. */
  private sameIsnKey(entry: RegistryEntry): boolean | undefined {
    const mine = this.opts.isnKeyId;
    return mine === undefined || entry.isnKeyId === undefined ? undefined : entry.isnKeyId === mine;
  }

  /**
   * Pair: the newest entry of this node's stream and of each peer's (Redis's stream ids: one
   * clock), for what follows from who published last: adoptStoodDown on the master,
   * dropSupersededHash on a node standing by.
   */
  private async pairStreams(r: Redis): Promise<void> {
    const publishing = this.control.publishing;
    if (!publishing) {
      this.masterSince = undefined;
      this.splitPeers.clear();
      this.adoptedUpTo.clear();
      this.stoodDown.clear();
    }
    if (this.busy || this.claim !== 'held' || (!publishing && !this.ownHashStale)) return;
    const peers = this.peers ?? [];
    const tx = r.pipeline();
    for (const key of [this.keys.events, ...peers.map((p) => nodeKeys(this.cfg.cluster, p.entry.id).events)])
      tx.xrevrange(key, '+', '-', 'COUNT', 1);
    const [own, ...theirs] = (await tx.exec())!.map(([err, v]) => {
      if (err) throw err;
      return (v as [string, string[]][])[0]?.[0];
    });
    if (this.control.publishing !== publishing) return; // the role moved meanwhile: next beat
    if (publishing) this.adoptStoodDown(own, peers, theirs);
    else if (theirs.some((id) => id !== undefined && (own === undefined || streamIdAfter(id, own))))
      await this.dropSupersededHash(r);
  }

  /**
   * Pair, on the master: a peer that has published since this node's first resync as master
   * (a split: VRRP adverts lost between the two, or this node's keepalived stalled while the
   * peer's took the next hops) left copies here of what it made meanwhile (a master follows
   * its peer too). Once it publishes no more (it stood down, or died), nobody would publish,
   * expire or reset them: this node adopts them, and its next resync carries them, so the
   * connections made on the peer during the split go on here, as a promotion adopts the old
   * master's. A peer that stood by all along published nothing, and a peer's hash from before
   * (its entries older) is not adopted. Each split is adopted once: the peer's last entry stays
   * in its stream while it stands by, and only an entry after the one an adoption covered is
   * another split (adopting at every beat had this node resync, and its peer reload it, each
   * second).
   */
  private adoptStoodDown(
    own: string | undefined,
    peers: NonNullable<HaNode['peers']>,
    theirs: (string | undefined)[],
  ): void {
    if (this.masterSince === undefined) {
      if (this.publisher.stats.resyncs <= this.resyncsAtPromotion || own === undefined) return;
      this.masterSince = own; // this resync's entry, or one after it
    }
    peers.forEach((p, i) => {
      const id = p.entry.id;
      const newest = theirs[i];
      const since = this.adoptedUpTo.get(id) ?? this.masterSince!;
      if (newest !== undefined && streamIdAfter(newest, since)) this.splitPeers.add(id);
      if (!this.splitPeers.has(id) || (p.alive && p.publishing)) {
        this.stoodDown.delete(id);
        return;
      }
      // Standing down at two beats in a row: its alive key, rewritten at its own beat, still
      // says it stands by for up to a beat after it became master.
      if (!this.stoodDown.has(id)) {
        this.stoodDown.add(id);
        return;
      }
      // And all it published is applied here: the adopt runs after those installs.
      const applied = this.follower.appliedThrough(id);
      if (newest !== undefined && (applied === undefined || streamIdAfter(newest, applied))) return;
      this.splitPeers.delete(id);
      this.stoodDown.delete(id);
      // Its stream keeps that entry while it stands by: adopted once, not at every beat.
      if (newest !== undefined) this.adoptedUpTo.set(id, newest);
      this.logger.log(
        'info',
        `HA: node ${id} (${p.entry.name}) published while this node was master too and stands down now: its sessions are this node's`,
      );
      void this.adopt(id).then((done) => {
        if (done) this.publisher.needResync = true;
        else this.splitPeers.add(id); // again at the next beat
      });
    });
  }

  /**
   * Pair: a node that no longer publishes drops its hash once the peer has published since
   * this node last did (pairStreams). A pair's master publishes nothing before the resync
   * that follows its promotion, and that resync carries every session it adopted: what this
   * node's hash still holds is the peer's now, or ended under the peer (whose hash saw the
   * end). Left in place, it held the sessions of this node's last mastership in Redis until
   * this node's next promotion rewrote it, and a master loading its peer afresh (a Redis
   * reconnect) took them for live copies. Only this node's own key is written, on the
   * connection its publisher uses, and only while nothing of its own is being published: a
   * promotion after this check is written after the drop.
   */
  private async dropSupersededHash(r: Redis): Promise<void> {
    const dropped = await r.del(this.keys.sessions);
    this.ownHashStale = false;
    if (dropped > 0)
      this.logger.log(
        'info',
        "HA: the peer has published since this node last did: this node's hash (what it published as master) is dropped",
      );
  }
}

/** Is stream entry id `a` ("ms-seq") after `b`? */
function streamIdAfter(a: string, b: string): boolean {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am > bm || (am === bm && as > bs);
}

/** `p`, or an error saying `why` once `deadline` (ms since the epoch) has passed. */
function untilDeadline<T>(p: Promise<T>, deadline: number, why: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(why)), Math.max(0, deadline - Date.now()));
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
