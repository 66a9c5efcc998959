/**
 * HA session sync on the data plane (one per worker). The owner worker is the only writer of
 * its shard, so both directions of sync go through it:
 *
 *   publish  which sessions this node publishes and when: those it owns (recOwner 0), a TCP
 *            session once it is ESTABLISHED and has lived `syncAfter` (short connections are
 *            not worth it; DPVS does the same), then at every state change, every `refresh`
 *            while it carries traffic (fresh seq/ack, and the peers' timers restart), and
 *            its end. Events go into a SharedArrayBuffer ring that the main thread drains
 *            and batches to Redis (ha/publisher.ts). Only while the node publishes (ha/role.ts).
 *   install  upsert or delete records received from a peer (ha/follower.ts), into this shard,
 *            owned by that peer: this node forwards with them but does not publish them.
 *   adopt    take a peer's sessions over (they become this node's to publish and expire).
 *   holder   (cluster) a FULLNAT session is owned by the node its local address is routed to:
 *            the address's own node while it lives, else that node's first live backup
 *            (PeerLocalAddress.holder). Only that node sees the real server's replies, so
 *            only it knows whether the connection is alive; an owner elsewhere would expire
 *            it in the middle of its traffic. reconcile() hands each session this node owns
 *            on an address another node holds over to it, and takes back the copies on
 *            addresses it holds; install lets the holder's record win over ours.
 *   either   snapshotSessions(), snapshotTemplates(): every session this node owns and has
 *            published (a slice at a time), and the live persistence templates it
 *            published, for a full resync.
 *
 * A sync record is the session record minus what is local to one node (timer links, expiry,
 * local service / real-server ids, held segments, flags other than "RS ISN known" and
 * "proxied"): SYNC_WORDS words, record words 0–13, then 16–27, then 32–33 (the SYN proxy's
 * server-side timestamp delta and options), then 39–40 (the acks that cover each side's FIN);
 * syncWord maps one to the other. Word 7 (the record's SVC_RS) holds the publishing node's id
 * instead. This is the newest format (SYNC_FORMAT); ha/sync_format.ts turns it into the older
 * ones a peer of an older version reads, and theirs into it. The real server is named by its
 * address and port (the OUT key), so nodes need not number their services and servers alike;
 * they must have the same services and worker count (the mode's owner rule says which worker
 * owns a session: FULLNAT's local port, the client's address and port in the other modes). A
 * record is found by its OUT key, or by its IN key in the modes without one (TUNNEL).
 */

import {
  DIR_IN,
  DIR_OUT,
  FLAG_COUNTED_ACTIVE,
  FLAG_PROXIED,
  FLAG_TOA_OPEN,
  FLAG_STALE,
  FLAG_SYNCED,
  FLAG_TEMPLATE,
  FLAGS_MODE_BITS,
  KEY_BLOCK_WORDS,
  KEY_LO_WORDS,
  META_FLAGS_SHIFT,
  META_MODE_MASK,
  META_MODE_SHIFT,
  META_STATE_SHIFT,
  R_CREATED,
  R_HOLD,
  R_LINE2,
  R_LINE3,
  R_CLI_ACK,
  R_CLI_FIN_ACK,
  R_META,
  R_OUT,
  R_OUT_HI,
  R_SEQ_DELTA,
  addrWord,
  R_CIP0,
  R_CIP1,
  R_RIP0,
  R_RIP1,
  R_SVC_RS,
  R_SYNC,
  recOwner,
  recService,
  recServer,
  setRecOwner,
  svcRsWord,
  R_VIP0,
  R_VIP1,
  R_IN,
  R_IN_HI,
  R_IN_PORTS,
  R_OUT_PORTS,
  R_LIP0,
  R_LIP1,
  RECORD_WORDS,
  recMode,
} from '../conn/layout.js';
import {
  S_ESTABLISHED,
  S_FIN_WAIT,
  S_NONE,
  S_UDP,
  isActiveState,
  isClosing,
  isEnding,
  isHalfOpen,
  quietSinceFin,
} from '../conn/state.js';
import type { SessionTable } from '../conn/table.js';
import { HA_SYNC_RING_EVENTS, NODE_ID_MAX, TEMPLATE_SWEEP_MS, TIMER_TICK_MS } from '../constants.js';
import { AF_INET6, IPPROTO_TCP } from '../packet/headers.js';
import { ANY_PORT, type PeerLocalAddress, type ServiceTable } from '../service/service.js';
import { stateOf, uncountRecord } from '../nat/session.js';
import { MODE_FULLNAT, modeTable } from '../nat/modes/index.js';
import { TEMPLATE_KEY_WORDS, type TemplateTable } from '../conn/templates.js';

/** Record words carried: line 1 up to (not incl.) EXPIRE, the IPv6 key words, the SYN
 * proxy's per-packet words, and the FIN acks. */
const LINE1_WORDS = 14; // words 0–13
const HI_WORDS = 12; // words 16–27
const LINE3_WORDS = 2; // words 32–33
const FIN_WORDS = 2; // words 39–40
const FIN_AT = LINE1_WORDS + HI_WORDS + LINE3_WORDS;
export const SYNC_WORDS = FIN_AT + FIN_WORDS;
/** Format of the sync record the data plane reads and writes, published with every batch
 * (ha/sync_format.ts has every format and what each added). */
export const SYNC_FORMAT = 3;
/** Flags that travel with a record (the rest are local to a node), and the mode. */
const SYNCED_FLAGS = FLAG_TOA_OPEN | FLAG_PROXIED | FLAGS_MODE_BITS | FLAG_TEMPLATE;
/** A template's sync record (FLAG_TEMPLATE) carries its timeout (seconds) in this word. */
const TEMPLATE_TIMEOUT_WORD = R_SEQ_DELTA;
const MODES = modeTable();
/** Event = op + sync record. */
export const EVENT_WORDS = 1 + SYNC_WORDS;
export const OP_UPSERT = 1;
export const OP_DELETE = 2;
/** Ring only (never on the wire): this node hands the session over to the node that holds
 * its local address (the record names that node): the publisher removes it from this node's
 * hash and streams it as that node's upsert, so every other node's copy names the new owner
 * (and the new owner, named, takes its copy as its own). */
export const OP_HANDOVER = 3;

/** Sync-record word of record word w (w in 0–13, 16–27, 32–33 or 39–40). */
export function syncWord(w: number): number {
  if (w < LINE1_WORDS) return w;
  if (w < R_LINE3) return w - R_LINE2 + LINE1_WORDS;
  return w < R_CLI_FIN_ACK ? w - R_LINE3 + LINE1_WORDS + HI_WORDS : w - R_CLI_FIN_ACK + FIN_AT;
}

/** The worker (of `workers`) that owns the session of the sync record at `s`. */
export function syncOwnerWorker(ev: Int32Array, s: number, workers: number): number {
  const mode = MODES[(ev[s + R_META]! >>> META_MODE_SHIFT) & META_MODE_MASK] ?? MODES[0]!;
  return mode.owner(
    ev[s + R_CIP0]!,
    ev[s + syncWord(R_CIP1)]!,
    ev[s + syncWord(R_CIP1 + 2)]!,
    ev[s + syncWord(R_CIP1 + 4)]!,
    ev[s + R_OUT_PORTS]!,
    workers,
  );
}

/** Is the sync record at `s` a persistence template rather than a session? */
export function syncIsTemplate(ev: Int32Array, s: number): boolean {
  return ((ev[s + R_META]! >>> META_FLAGS_SHIFT) & FLAG_TEMPLATE) !== 0;
}

/** Does the sync record at `s` have an OUT index entry (its mode's replies pass the LB)?
 * (A template's identity is its IN key: client prefix, port 0, VIP.) */
export function syncTwoWay(ev: Int32Array, s: number): boolean {
  if (syncIsTemplate(ev, s)) return false;
  return MODES[(ev[s + R_META]! >>> META_MODE_SHIFT) & META_MODE_MASK]?.twoWay ?? true;
}

/** The lookup key (layout.ts "Lookup key") of the sync record at `s` that is the session's
 * identity on an LB: the OUT key (local side) for modes whose replies pass the LB, else the
 * IN key. Returns `key`. */
export function syncKey(ev: Int32Array, s: number, key: Int32Array): Int32Array {
  return syncKeyOf(ev, s, syncTwoWay(ev, s) ? R_OUT : R_IN, key);
}

/** The sync record's IN key (R_IN) or OUT key (R_OUT) as a lookup key in `key`. */
function syncKeyOf(ev: Int32Array, s: number, lo: number, key: Int32Array): Int32Array {
  const hi = lo === R_OUT ? R_OUT_HI : R_IN_HI;
  key[0] = ev[s + R_META]! & 0xffff;
  for (let i = 0; i < KEY_LO_WORDS; i++) key[1 + i] = ev[s + lo + i]!;
  for (let i = 0; i < KEY_BLOCK_WORDS - KEY_LO_WORDS; i++) key[1 + KEY_LO_WORDS + i] = ev[s + syncWord(hi + i)]!;
  return key;
}

/** Sync-record word that names the publishing node (the record's SVC_RS word). */
export const SYNC_NODE_WORD = R_SVC_RS;

export function copyToSync(rec: Int32Array, base: number, out: Int32Array, off: number, nodeId: number): void {
  for (let i = 0; i < LINE1_WORDS; i++) out[off + i] = rec[base + i]!;
  for (let i = 0; i < HI_WORDS; i++) out[off + LINE1_WORDS + i] = rec[base + R_LINE2 + i]!;
  for (let i = 0; i < LINE3_WORDS; i++) out[off + LINE1_WORDS + HI_WORDS + i] = rec[base + R_LINE3 + i]!;
  for (let i = 0; i < FIN_WORDS; i++) out[off + FIN_AT + i] = rec[base + R_CLI_FIN_ACK + i]!;
  const meta = out[off]!;
  out[off] = (meta & ~(0xff << META_FLAGS_SHIFT)) | (((meta >>> META_FLAGS_SHIFT) & SYNCED_FLAGS) << META_FLAGS_SHIFT);
  out[off + SYNC_NODE_WORD] = nodeId;
}

/**
 * Worker → main thread event ring (single producer, single consumer) in a SharedArrayBuffer.
 *   header: [0] write count, [1] read count (both only grow), [2] events lost (ring full)
 */
export class SyncRing {
  readonly sab: SharedArrayBuffer;
  readonly slots: number;
  private readonly ctl: Int32Array;
  private readonly data: Int32Array;

  constructor(slots = HA_SYNC_RING_EVENTS, sab?: SharedArrayBuffer) {
    this.slots = slots;
    const bytes = 16 + slots * EVENT_WORDS * 4;
    this.sab = sab ?? new SharedArrayBuffer(bytes);
    if (this.sab.byteLength !== bytes) throw new RangeError('sync ring size mismatch');
    this.ctl = new Int32Array(this.sab, 0, 4);
    this.data = new Int32Array(this.sab, 16, slots * EVENT_WORDS);
  }

  static fromSab(sab: SharedArrayBuffer): SyncRing {
    return new SyncRing((sab.byteLength - 16) / (EVENT_WORDS * 4), sab);
  }

  /** Producer: append an event for the record at `base`, published by node `nodeId`; false
   * when full (counted). */
  push(op: number, rec: Int32Array, base: number, nodeId: number): boolean {
    const w = this.ctl[0]!;
    if (w - Atomics.load(this.ctl, 1) >= this.slots) {
      Atomics.add(this.ctl, 2, 1);
      return false;
    }
    const off = (w % this.slots) * EVENT_WORDS;
    this.data[off] = op;
    copyToSync(rec, base, this.data, off + 1, nodeId);
    Atomics.store(this.ctl, 0, w + 1);
    return true;
  }

  /** Consumer: copy up to `max` events into `out` (EVENT_WORDS each); returns the count. */
  drain(out: Int32Array, max: number): number {
    const r = this.ctl[1]!;
    const n = Math.min(Atomics.load(this.ctl, 0) - r, max, Math.floor(out.length / EVENT_WORDS));
    for (let i = 0; i < n; i++) {
      const off = ((r + i) % this.slots) * EVENT_WORDS;
      out.set(this.data.subarray(off, off + EVENT_WORDS), i * EVENT_WORDS);
    }
    Atomics.store(this.ctl, 1, r + n);
    return n;
  }

  /** Consumer: discard the events written before write count `count` (they predate a
   * snapshot that already holds their effect). */
  skipTo(count: number): void {
    const r = this.ctl[1]!;
    const w = Atomics.load(this.ctl, 0);
    const to = count - r > w - r ? w : count;
    if (to - r > 0) Atomics.store(this.ctl, 1, to);
  }

  /** The producer's write count (taken with a snapshot: see skipTo). */
  get writeCount(): number {
    return Atomics.load(this.ctl, 0);
  }

  /** Events lost because the ring was full, since the last call (then reset). */
  takeLost(): number {
    return Atomics.exchange(this.ctl, 2, 0);
  }

  get pending(): number {
    return Atomics.load(this.ctl, 0) - Atomics.load(this.ctl, 1);
  }

  /** The producer: no room for another event until the consumer drains. */
  get full(): boolean {
    return this.ctl[0]! - Atomics.load(this.ctl, 1) >= this.slots;
  }
}

/** What the main thread (ha/node.ts, publisher.ts, follower.ts) can ask of one forwarder's
 * sync (workers/forwarder.ts implements it over messages). */
export interface HaWorkerLink {
  ring: SyncRing;
  install(events: Int32Array, count: number): void;
  /** The worker's published sessions in chunks of sync records, and its ring's write count
   * when it began to take them (Engine.syncSnapshot). */
  snapshot(): Promise<{ records: Int32Array[]; writeCount: number }>;
  /** A reload of peer `owner`'s snapshot begins: mark its copies stale (0: every peer's);
   * resolves once they are (the installs must come after). */
  markStale(owner: number): Promise<void>;
  /** The reload is done: drop the copies of `owner` it did not bring again. */
  sweepStale(owner: number): Promise<void>;
  /** Take over the sessions installed from peer `owner` (0: from every peer); resolves once
   * they are this node's (a resync's snapshot taken later carries them). */
  adopt(owner: number): Promise<void>;
  /** Cluster: hand over and take back sessions by who holds their local address, and
   * (othersTo > 0) those of the other modes to that node (SessionSync.reconcile). */
  reconcile(othersTo?: number): Promise<Reconciled>;
  /** A pair's master standing down, a node stopping in order: publish its sessions younger
   * than syncAfter (SessionSync.publishYoung); resolves with how many, once they are in the
   * ring. */
  publishYoung(): Promise<number>;
  /** Cluster: the peers' local addresses, each with the node that holds it now (replacing
   * the last). */
  peerLocalAddresses(addrs: PeerLocalAddress[]): void;
  /** The peers' worker counts, as registered (replacing the last): a FULLNAT session whose
   * client's shard is full takes a port every one of them serves where it can. */
  peerWorkers(counts: number[]): void;
}

/** One slice of a scan of the table: how many records it changed, and where the next slice
 * begins (−1: done). */
export interface ScanSlice {
  count: number;
  next: number;
}

/** Result counters of install(). */
export interface InstallResult {
  installed: number;
  updated: number;
  deleted: number;
  /** No matching service or real server here, the table is full, or the record names no
   * node. */
  failed: number;
  /** A peer's record for a local tuple this node owns while it publishes: ours is kept. Seen
   * when two nodes hand out the same local address (a misconfigured cluster; a pair whose
   * nodes both think they are master). */
  conflicts: number;
  /** Older records removed for a peer's newer connection on their local or client tuple. */
  replaced: number;
  /** Sessions of ours handed over to the peer that holds their local address (its record
   * came: it is alive again after this node adopted them). */
  handedOver: number;
}

/** What reconcile() did. */
export interface Reconciled {
  /** Copies on local addresses this node holds, now its own. */
  claimed: number;
  /** Sessions of its own on local addresses another node holds, handed over to it. */
  handedOver: number;
}

/** What one slice of reconcile() did, and the record to go on from (−1: done); `ringFull`:
 * it stopped there because its ring had no room for the next handover. */
export interface ReconcileSlice extends Reconciled {
  next: number;
  ringFull: boolean;
}

export class SessionSync {
  /** Sessions ESTABLISHED but not yet old enough: (record id, created tick) pairs, FIFO. */
  private pendingIds = new Int32Array(1024);
  private pendingHead = 0;
  private pendingTail = 0;
  private readonly key = new Int32Array(1 + KEY_BLOCK_WORDS);
  /** This node publishes (ha/role.ts PUBLISHING, copied here by the engine each tick). */
  active = true;

  constructor(
    private readonly table: SessionTable,
    readonly ring: SyncRing,
    private readonly afterTicks: number,
    private readonly refreshTicks: number,
    /** This node's id: stamped into every record it publishes. */
    readonly nodeId: number,
  ) {}

  /** Hot path, after a TCP/UDP packet moved session `base` (ns: its state now). */
  onPacket(base: number, changed: boolean, ns: number, tick: number): void {
    const rec = this.table.rec;
    const last = rec[base + R_SYNC]!;
    if (last !== 0) {
      if (changed || tick - last >= this.refreshTicks) this.publish(base, tick);
    } else if (changed && ns === S_ESTABLISHED) {
      this.defer(base / RECORD_WORDS, rec[base + R_CREATED]!);
    } else if (ns !== S_ESTABLISHED && (rec[base + R_META]! & 0xff) !== IPPROTO_TCP) {
      // UDP: no handshake to wait for; publish once it has lived syncAfter.
      if (tick - rec[base + R_CREATED]! >= this.afterTicks) this.publish(base, tick);
    }
  }

  /**
   * A client packet was forwarded here with peer's copy `base` of a session whose server's
   * packets skip the LBs (TUNNEL, DR): the client's packets come to this node now (ECMP moved
   * the flow: a node joined, left, or died and another adopted it), and its owner sees none
   * of them, so it would expire the session while the connection goes on here, and its delete
   * would end this copy. This node takes it: its own from now (it times it, publishes it, ends
   * it), and the old owner, hearing of it, makes its record this node's copy (install). A flow
   * that ECMP moves back is taken back the same way. Only while publishing (a pair's standby
   * forwards nothing; a master that holds copies adopts them). True when taken.
   */
  takeByTraffic(base: number, tick: number): boolean {
    if (!this.active || recOwner(this.table.rec, base) === 0) return false;
    this.markOwn(base);
    this.publish(base, tick);
    return true;
  }

  /** The record at `base` names this node as its owner, and is no reload's stale copy. */
  private markOwn(base: number): void {
    const rec = this.table.rec;
    setRecOwner(rec, base, 0);
    rec[base + R_META] = rec[base + R_META]! & ~(FLAG_STALE << META_FLAGS_SHIFT);
  }

  /**
   * Publish persistence template `key` (conn/templates.ts) of service `svc` → real server
   * `rs`, kept `timeoutSec` after its last session: a sync record with FLAG_TEMPLATE, the
   * client prefix and port 0 for the client side, the VIP and the real server as a session's
   * (peers match them by address, not id), the timeout in TEMPLATE_TIMEOUT_WORD.
   */
  publishTemplate(services: ServiceTable, key: Int32Array, rs: number, timeoutSec: number): void {
    this.ring.push(OP_UPSERT, this.templateUpsert(services, key, rs, timeoutSec), 0, this.nodeId);
  }

  /** The record publishTemplate publishes. */
  private templateUpsert(services: ServiceTable, key: Int32Array, rs: number, timeoutSec: number) {
    const rec = this.templateRecord(services, key);
    rec[R_OUT_PORTS] = services.rsPort[rs]! << 16;
    for (let k = 0; k < 4; k++) rec[addrWord(R_RIP0, R_RIP1, k)] = services.rsAddr[rs * 4 + k]!;
    rec[TEMPLATE_TIMEOUT_WORD] = timeoutSec;
    return rec;
  }

  /** A template record with its identity (the IN key: client prefix, port 0, VIP, port), of
   * the service that names the key's templates (ServiceTable.keyService). */
  private templateRecord(services: ServiceTable, key: Int32Array): Int32Array {
    const svc = services.keyService[key[0]! & 0xffff]!;
    const rec = this.templateRec;
    rec.fill(0);
    const af = key[0]! >>> 16;
    rec[R_META] = (af << 8) | services.proto[svc]! | (FLAG_TEMPLATE << META_FLAGS_SHIFT);
    rec[R_IN_PORTS] = services.vport[svc]!;
    for (let k = 0; k < 4; k++) {
      rec[addrWord(R_CIP0, R_CIP1, k)] = key[1 + k]!;
      rec[addrWord(R_VIP0, R_VIP1, k)] = services.vip[svc * 4 + k]!;
    }
    return rec;
  }
  private readonly templateRec = new Int32Array(RECORD_WORDS);
  private readonly templateKey = new Int32Array(TEMPLATE_KEY_WORDS);
  /** Where this worker's template sweep goes on (a slot of its share of the table). */
  private templateCursor = -1;

  /**
   * Every tick: sweep this worker's share of the template table (`worker` of `workers`; the
   * whole table every TEMPLATE_SWEEP_MS) for templates this node published that have died,
   * and delete each from Redis by its key (a delete record: the publisher HDELs its field;
   * peers ignore it, their copies die by their own timeout). Without this the node's hash
   * would keep every client that ever had a template until the next full resync. A removed
   * service's templates are named by its tombstone (its VIP, port and protocol stay in the
   * service table), so they leave Redis too once their sessions and timeout have run out.
   */
  sweepTemplates(
    services: ServiceTable,
    templates: TemplateTable,
    worker: number,
    workers: number,
    nowMs: number,
  ): void {
    const share = Math.ceil(templates.slots / workers);
    const first = worker * share;
    const end = Math.min(templates.slots, first + share);
    if (end <= first) return;
    if (this.templateCursor < first || this.templateCursor >= end) this.templateCursor = first;
    const perTick = Math.max(1, Math.ceil((share * TIMER_TICK_MS) / TEMPLATE_SWEEP_MS));
    const count = Math.min(perTick, end - this.templateCursor);
    const next = templates.sweepPublished(this.templateCursor, count, nowMs, (slot) => {
      const key = templates.keyOf(slot, this.templateKey);
      const svc = services.keyService[key[0]! & 0xffff]!;
      if (!this.active || services.proto[svc] === 0) return;
      if (services.af[svc] !== key[0]! >>> 16) return;
      this.ring.push(OP_DELETE, this.templateRecord(services, key), 0, this.nodeId);
    });
    this.templateCursor = next >= end || next < first ? first : next;
  }

  /** A published session ends (expired, or replaced by a new connection on its tuple). */
  onRemove(base: number): void {
    const rec = this.table.rec;
    if (rec[base + R_SYNC] !== 0 && this.active && recOwner(rec, base) === 0) {
      this.ring.push(OP_DELETE, rec, base, this.nodeId);
    }
  }

  /** Every tick: publish the sessions that have now lived syncAfter while ESTABLISHED. */
  tick(tick: number): void {
    const rec = this.table.rec;
    while (this.pendingHead !== this.pendingTail) {
      const i = this.pendingHead;
      const r = this.pendingIds[i]!;
      const created = this.pendingIds[i + 1]!;
      if (tick - created < this.afterTicks) return;
      this.pendingHead = (i + 2) % this.pendingIds.length;
      const base = r * RECORD_WORDS;
      // Still the same session (not freed and reused), still unpublished and established?
      if (
        rec[base + R_CREATED] === created &&
        (rec[base + R_META]! & 0xffff) !== 0 &&
        rec[base + R_SYNC] === 0 &&
        ((rec[base + R_META]! >>> META_STATE_SHIFT) & 0xff) === S_ESTABLISHED
      ) {
        this.publish(base, tick);
      }
    }
  }

  private defer(r: number, created: number): void {
    const len = this.pendingIds.length;
    if ((this.pendingTail + 2) % len === this.pendingHead) {
      // grow (keeps FIFO order)
      const bigger = new Int32Array(len * 2);
      let n = 0;
      for (let i = this.pendingHead; i !== this.pendingTail; i = (i + 2) % len) {
        bigger[n++] = this.pendingIds[i]!;
        bigger[n++] = this.pendingIds[i + 1]!;
      }
      this.pendingIds = bigger;
      this.pendingHead = 0;
      this.pendingTail = n;
    }
    this.pendingIds[this.pendingTail] = r;
    this.pendingIds[this.pendingTail + 1] = created;
    this.pendingTail = (this.pendingTail + 2) % this.pendingIds.length;
  }

  /** Publish session `base` if this node publishes and owns it (a peer's copy is the peer's
   * to publish: this node only forwards with it). */
  private publish(base: number, tick: number): void {
    const rec = this.table.rec;
    if (!this.active || recOwner(rec, base) !== 0) return;
    // tick + 1: 0 means "never published", and tick 0 exists.
    if (this.ring.push(OP_UPSERT, rec, base, this.nodeId)) rec[base + R_SYNC] = tick + 1;
  }

  /**
   * A pair's master standing down, or a node stopping in order (ha/node.ts publishYoung):
   * publish every session of its own that is still unpublished because it is younger than
   * syncAfter, so its peers, which get its traffic now, go on with those connections too
   * (they adopt them once this node stands by or is gone): TCP sessions in their handshake,
   * established or closing, and UDP flows. Not the SYN proxy's handshake with the server
   * (SYN_SENT: the client's request it holds is this node's alone; the client sends it again
   * and the peer's cookie check makes the session anew), nor a TIME_WAIT or CLOSE (over).
   * One slice as reconcile(): records `from` on, at most `slice` of them, stopping
   * (`ringFull`) at a full ring unless `overflow`; `count`: how many it published.
   */
  publishYoung(tick: number, from = 0, slice = Infinity, overflow = false): ScanSlice & { ringFull: boolean } {
    const rec = this.table.rec;
    const end = Math.min(this.table.used, from + slice);
    const res = { count: 0, next: -1, ringFull: false };
    for (let r = from; r < end; r++) {
      const base = r * RECORD_WORDS;
      if ((rec[base + R_META]! & 0xffff) === 0 || rec[base + R_SYNC] !== 0 || recOwner(rec, base) !== 0) continue;
      const state = stateOf(rec, base);
      if (!isActiveState(state) && !isClosing(state) && !isHalfOpen(state) && state !== S_UDP) continue;
      if (!this.active) return res;
      if (!overflow && this.ring.full) {
        res.next = r;
        res.ringFull = true;
        return res;
      }
      this.publish(base, tick);
      if (rec[base + R_SYNC] !== 0) res.count++;
    }
    if (end < this.table.used) res.next = end;
    return res;
  }

  /**
   * For a full resync, which replaces the node's Redis hash: every session this node owns and
   * has published (snapshotSessions), and the live persistence templates it has published
   * (snapshotTemplates).
   *
   * One slice of the sessions: records `from` on, at most `slice` of them, as sync records;
   * `next` −1 at the end. The caller serves its packets between slices (Engine.syncSnapshot).
   * That keeps the snapshot right: it takes the ring's write count before the first slice,
   * and every event from there on is published after the snapshot, so a session that changes
   * behind the scan ends as its last event says, and one in front of it is read as it is by
   * then (as a snapshot taken that late would have it).
   */
  snapshotSessions(from: number, slice: number): { records: Int32Array; next: number } {
    const rec = this.table.rec;
    const end = Math.min(this.table.used, from + slice);
    // Live, this node's own, published. Counted first: the chunk is made to size (new memory
    // is what the copy costs most, SNAPSHOT_SLICE_RECORDS).
    const published = (base: number): boolean =>
      (rec[base + R_META]! & 0xffff) !== 0 && rec[base + R_SYNC] !== 0 && recOwner(rec, base) === 0;
    let n = 0;
    for (let r = from; r < end; r++) if (published(r * RECORD_WORDS)) n++;
    const out = new Int32Array(n * SYNC_WORDS);
    let k = 0;
    for (let r = from; r < end && k < n; r++) {
      const base = r * RECORD_WORDS;
      if (!published(base)) continue;
      copyToSync(rec, base, out, k * SYNC_WORDS, this.nodeId);
      k++;
    }
    return { records: out, next: end < this.table.used ? end : -1 };
  }

  /** The live persistence templates this node has published among this worker's share of the
   * template table (`worker` of `workers`, as sweepTemplates divides it), as sync records, so
   * that the new hash has them too (a node loading it would otherwise miss them until each is
   * republished, up to half its timeout later). */
  snapshotTemplates(
    services: ServiceTable,
    templates: TemplateTable,
    worker: number,
    workers: number,
    nowMs: number,
  ): Int32Array {
    const share = Math.ceil(templates.slots / workers);
    const tpl: Int32Array[] = [];
    templates.eachPublished(worker * share, Math.min(templates.slots, (worker + 1) * share), nowMs, (slot, rs, sec) => {
      const key = templates.keyOf(slot, this.templateKey);
      const svc = services.keyService[key[0]! & 0xffff]!;
      if (!services.alive[svc] || services.af[svc] !== key[0]! >>> 16) return;
      if (services.persistKey[services.rsService[rs]!] !== (key[0]! & 0xffff)) return;
      tpl.push(this.templateUpsert(services, key, rs, sec).slice());
    });
    const out = new Int32Array(tpl.length * SYNC_WORDS);
    tpl.forEach((t, i) => copyToSync(t, 0, out, i * SYNC_WORDS, this.nodeId));
    return out;
  }

  /**
   * A reload of peer `owner`'s snapshot (or every peer's: 0), in two steps around the
   * installs, so that its sessions never vanish meanwhile (a flush before the reload dropped
   * the packets of every flow of that peer until it was back): markStale, then every record
   * the snapshot brings again is installed over its copy (which clears the mark), then
   * sweepStale removes what is still marked: gone from the peer. Like adopt, each takes
   * records `from` on, at most `slice` of them (`next`: where the next slice begins, −1 at
   * the end; Engine.markSynced and the others run the slices with the thread's packets
   * served between them).
   */
  markStale(owner: number, from = 0, slice = Infinity): ScanSlice {
    const rec = this.table.rec;
    return this.eachFrom(owner, from, slice, (_r, base) => {
      rec[base + R_META] = rec[base + R_META]! | (FLAG_STALE << META_FLAGS_SHIFT);
    });
  }

  /** The copies of `owner` still marked stale go (`remove`); `count`: how many. */
  sweepStale(owner: number, remove: (r: number) => void, from = 0, slice = Infinity): ScanSlice {
    const rec = this.table.rec;
    let n = 0;
    const { next } = this.eachFrom(owner, from, slice, (r, base) => {
      if (((rec[base + R_META]! >>> META_FLAGS_SHIFT) & FLAG_STALE) === 0) return;
      remove(r);
      n++;
    });
    return { count: n, next };
  }

  /**
   * Take over the sessions installed from peer `owner` (or from every peer: owner 0): this
   * node now publishes them (they are marked published, so the next resync carries them and
   * their changes go out) and answers for their expiry. `count`: how many.
   */
  adopt(
    owner: number,
    timeouts: Int32Array,
    idleTicks: Int32Array,
    tick: number,
    from = 0,
    slice = Infinity,
  ): ScanSlice {
    return this.eachFrom(owner, from, slice, (r) => this.takeOwn(r, timeouts, idleTicks, tick));
  }

  /** Copy `r` becomes this node's own session: published by it from now on (marked
   * published: the next resync carries it), and timed as its own (ownTicks), since this node
   * sees its packets from now on. */
  private takeOwn(r: number, timeouts: Int32Array, idleTicks: Int32Array, tick: number): void {
    const table = this.table;
    const rec = table.rec;
    const base = r * RECORD_WORDS;
    this.markOwn(base);
    rec[base + R_SYNC] = tick + 1;
    const state = stateOf(rec, base);
    const own = tick + ownTicks(timeouts, idleTicks[recService(rec, base)]!, state, recQuietClose(rec, base, state));
    if (own < table.expireOf(r)) table.setExpire(r, own);
  }

  /**
   * Cluster, when who holds which local address changed (a node died, came back, or its alive
   * key lapsed while it was paused or cut off from Redis): each FULLNAT session this node owns
   * on an address another node holds goes to that node (an OP_HANDOVER event: streamed as its
   * record, which it takes as its own); each copy on an address this node holds (its own, or
   * a dead peer's it is the first live backup of) becomes its own, to publish and expire:
   * the caller resyncs, which hands them over on the node that owned them (install). `timeouts`
   * and `idleTicks` as for install. `othersTo`, after this node's alive key lapsed: the node
   * that took it for dead (its first live backup) gets the sessions of the modes without a
   * local address of the node's own too (TUNNEL, DR, NAT), which it adopted meanwhile.
   * One slice: records `from` on, at most `slice` of them, and (unless `overflow`) no further
   * than a full ring, so the caller lets its packets and the publisher's drain run between
   * slices (Engine.reconcileSynced). A session made or changed behind the scan needs nothing:
   * a new one is this node's and unpublished, and installs judge holders themselves.
   */
  reconcile(
    services: ServiceTable,
    timeouts: Int32Array,
    idleTicks: Int32Array,
    tick: number,
    othersTo = 0,
    from = 0,
    slice = Infinity,
    overflow = false,
  ): ReconcileSlice {
    const table = this.table;
    const rec = table.rec;
    const res: ReconcileSlice = { claimed: 0, handedOver: 0, next: -1, ringFull: false };
    const end = Math.min(table.used, from + slice);
    for (let r = from; r < end; r++) {
      const base = r * RECORD_WORDS;
      if ((rec[base + R_META]! & 0xffff) === 0) continue;
      let holder = recHolder(services, rec, base, this.nodeId);
      if (othersTo > 0 && recMode(rec, base) !== MODE_FULLNAT) holder = othersTo;
      if (holder <= 0) continue;
      const owner = recOwner(rec, base);
      // Only a published session goes: the new owner knows no other.
      if (owner === 0 && holder !== this.nodeId && rec[base + R_SYNC] !== 0) {
        if (this.active && !overflow && this.ring.full) {
          res.next = r;
          res.ringFull = true;
          return res;
        }
        setRecOwner(rec, base, holder);
        const state = stateOf(rec, base);
        const quiet = recQuietClose(rec, base, state);
        table.setExpire(
          r,
          tick + copyTicks(timeouts, idleTicks[recService(rec, base)]!, state, this.refreshTicks, quiet),
        );
        if (this.active) this.ring.push(OP_HANDOVER, rec, base, holder);
        res.handedOver++;
      } else if (owner !== 0 && holder === this.nodeId) {
        this.takeOwn(r, timeouts, idleTicks, tick);
        res.claimed++;
      }
    }
    if (end < table.used) res.next = end;
    return res;
  }

  /** Call `fn` for every live session installed from peer `owner` (0: from any peer) among
   * records `from` on, at most `slice` of them. */
  private eachFrom(owner: number, from: number, slice: number, fn: (r: number, base: number) => void): ScanSlice {
    const rec = this.table.rec;
    const end = Math.min(this.table.used, from + slice);
    let n = 0;
    for (let r = from; r < end; r++) {
      const base = r * RECORD_WORDS;
      if ((rec[base + R_META]! & 0xffff) === 0) continue;
      const o = recOwner(rec, base);
      if (o !== 0 && (owner === 0 || o === owner)) {
        fn(r, base);
        n++;
      }
    }
    return { count: n, next: end < this.table.used ? end : -1 };
  }

  /**
   * Apply `count` events (op + sync record each, EVENT_WORDS apart) published by peers; each
   * record names its owner (SYNC_NODE_WORD): the peer, or (op OP_HANDOVER) the node the peer
   * handed it to. A record naming this node is installed as its own: one it published before
   * a restart, or one handed to it (published by it too if it had no copy). `timeouts` are in
   * ticks by state, `idleTicks` by service (nat/context.ts).
   */
  install(
    events: Int32Array,
    count: number,
    services: ServiceTable,
    timeouts: Int32Array,
    idleTicks: Int32Array,
    tick: number,
    counts: { active: Int32Array; inactive: Int32Array },
    drop: (r: number) => void,
    templates: TemplateTable | null = null,
    nowMs = 0,
  ): InstallResult {
    const res: InstallResult = {
      installed: 0,
      updated: 0,
      deleted: 0,
      failed: 0,
      conflicts: 0,
      replaced: 0,
      handedOver: 0,
    };
    const table = this.table;
    const rec = table.rec;
    const key = this.key;
    for (let e = 0; e < count; e++) {
      const off = e * EVENT_WORDS;
      // OP_HANDOVER: an upsert a peer streamed for another node (ha/follower.ts).
      const handedOn = events[off] === OP_HANDOVER;
      const op = handedOn ? OP_UPSERT : events[off]!;
      const s = off + 1;
      const meta = events[s + R_META]!;
      const peer = events[s + SYNC_NODE_WORD]!;
      if (peer <= 0 || peer > NODE_ID_MAX) {
        res.failed++;
        continue;
      }
      if (syncIsTemplate(events, s)) {
        if (op === OP_UPSERT && templates !== null && installTemplate(events, s, services, templates, nowMs))
          res.installed++;
        else if (op === OP_UPSERT) res.failed++;
        continue;
      }
      // This node's own record (its hash, read back after a restart): its own again.
      const owner = peer === this.nodeId ? 0 : peer;
      const af = (meta >>> 8) & 0xff;
      const blockWords = af === AF_INET6 ? KEY_BLOCK_WORDS : KEY_LO_WORDS;
      const twoWay = syncTwoWay(events, s);
      syncKey(events, s, key);
      let r = table.find(key, blockWords, twoWay ? DIR_OUT : DIR_IN, table.hashKey(key, blockWords));
      let handOver = false;
      if (r >= 0 && recOwner(rec, r * RECORD_WORDS) === 0 && this.active) {
        // Ours, and we publish it: a peer's word does not overwrite (nor delete) it, unless
        // that peer holds the session's local address (we adopted it while the peer was taken
        // for dead; it is back), or it took a TUNNEL or DR session whose client's packets go
        // there now (takeByTraffic). Our own record echoed (a peer handed it to us) changes
        // nothing.
        if (owner === 0) continue;
        const taken = op === OP_UPSERT && !syncTwoWay(events, s);
        if (!taken && syncHolder(services, events, s, this.nodeId) !== peer) {
          res.conflicts++;
          continue;
        }
        handOver = op === OP_UPSERT;
        // The holder saw it end: gone from our hash too.
        if (op === OP_DELETE && rec[r * RECORD_WORDS + R_SYNC] !== 0)
          this.ring.push(OP_DELETE, rec, r * RECORD_WORDS, this.nodeId);
      }
      if (op === OP_DELETE) {
        if (r >= 0) {
          drop(r);
          res.deleted++;
        }
        continue;
      }
      const state = (meta >>> META_STATE_SHIFT) & 0xff;
      const quiet = quietClose(twoWay, state, events, s, syncWord);
      if (r >= 0 && !sameInKey(rec, r * RECORD_WORDS, events, s)) {
        // The local tuple now belongs to another client (the peer reused the port after
        // this copy went stale): replace the record, so both index entries are right.
        drop(r);
        res.replaced++;
        r = -1;
      }
      if (r < 0 && twoWay) {
        const older = this.dropStaleClient(events, s, blockWords, drop);
        if (older === 'conflict') {
          res.conflicts++;
          continue;
        }
        if (older === 'replaced') res.replaced++;
      }
      if (r < 0) {
        const svc = services.lookup(
          af,
          meta & 0xff,
          events[s + R_VIP0]!,
          events[s + syncWord(R_VIP1)]!,
          events[s + syncWord(R_VIP1 + 2)]!,
          events[s + syncWord(R_VIP1 + 4)]!,
          events[s + R_IN_PORTS]! & 0xffff,
        );
        const rsId = svc < 0 ? -1 : findServer(services, svc, events, s);
        r = rsId < 0 ? -1 : table.alloc();
        if (r < 0) {
          res.failed++;
          continue;
        }
        const base = r * RECORD_WORDS;
        writeRecord(rec, base, events, s);
        rec[base + R_META] = (meta & ~(0xff << META_FLAGS_SHIFT)) | (flagsOf(meta) << META_FLAGS_SHIFT);
        rec[base + R_SVC_RS] = svcRsWord(svc, rsId, owner);
        rec[base + R_CREATED] = tick;
        rec[base + R_SYNC] = tick + 1;
        setCounts(rec, base, state, counts);
        table.insert(r, DIR_IN, table.hashRecord(r, DIR_IN));
        if (twoWay) table.insert(r, DIR_OUT, table.hashRecord(r, DIR_OUT));
        table.schedule(r, tick + lifeTicks(timeouts, idleTicks[svc]!, state, this.refreshTicks, quiet, owner === 0));
        res.installed++;
        // Handed to this node, which had no copy (a race): its own, so into its hash too.
        if (handedOn && owner === 0 && this.active) this.ring.push(OP_UPSERT, rec, base, this.nodeId);
      } else {
        const base = r * RECORD_WORDS;
        const keep = rec[base + R_META]! >>> META_FLAGS_SHIFT;
        const svcRs = rec[base + R_SVC_RS]!;
        const wasCopy = recOwner(rec, base) !== 0;
        uncountRecord(rec, base, counts);
        writeRecord(rec, base, events, s);
        rec[base + R_SVC_RS] = svcRs;
        // The copy is now the publishing peer's (a pair's standby that was master before,
        // or a session another node adopted).
        setRecOwner(rec, base, owner);
        rec[base + R_META] =
          (meta & ~(0xff << META_FLAGS_SHIFT)) |
          ((flagsOf(meta) | (keep & ~FLAG_COUNTED_ACTIVE & ~FLAG_STALE)) << META_FLAGS_SHIFT);
        rec[base + R_SYNC] = tick + 1;
        setCounts(rec, base, state, counts);
        const idle = idleTicks[recService(rec, base)]!;
        table.setExpire(r, tick + lifeTicks(timeouts, idle, state, this.refreshTicks, quiet, owner === 0));
        res.updated++;
        if (handOver) {
          res.handedOver++;
          this.ring.push(OP_HANDOVER, rec, base, peer);
        } else if (owner === 0 && wasCopy && this.active) {
          // A peer handed us a copy we held: ours now, published under our keys.
          this.ring.push(OP_UPSERT, rec, base, this.nodeId);
        }
      }
    }
    return res;
  }

  /**
   * Before a new copy is installed: an older record here with the same client tuple (IN key)
   * but another local tuple is a connection whose client has since reused the port for this
   * one (a stale copy, or one of ours still closing: a client does not reuse the ports of a
   * connection it holds). It goes, or the IN index would hold two records for the tuple and
   * the client's packets could be rewritten with the old one's port and sequence delta: the
   * real server answers those with an RST that the client accepts. A conflict when the older
   * record is ours, live, and published by us: it stays.
   */
  private dropStaleClient(
    events: Int32Array,
    s: number,
    blockWords: number,
    drop: (r: number) => void,
  ): 'none' | 'replaced' | 'conflict' {
    const table = this.table;
    const rec = table.rec;
    const key = syncKeyOf(events, s, R_IN, this.key);
    const old = table.find(key, blockWords, DIR_IN, table.hashKey(key, blockWords));
    if (old < 0) return 'none';
    const base = old * RECORD_WORDS;
    if (recOwner(rec, base) === 0 && this.active && !isEnding(stateOf(rec, base))) return 'conflict';
    drop(old);
    return 'replaced';
  }
}

/** How long a peer's copy of a session in `state` lives past its last record: an idle
 * connection or UDP flow its service's `idle` ticks, as on the publisher (nat/session.ts
 * timeoutOf), but at least two `refresh` intervals: the peer cannot see the session's
 * packets, and its publisher republishes a busy one only every refreshSec, so a copy that
 * died sooner (an idleTimeout or timeouts.established under refreshSec) would be gone from the
 * peers while the connection is alive. A closing one as long as an established one: its
 * publisher sees whether data still flows (which keeps it alive there, restartTimeout),
 * longer than FIN_WAIT's 7 s. Except a TUNNEL or DR session closed as far as its publisher
 * can tell (`quiet`: quietClose): FIN_WAIT's own, as there (its publisher publishes the
 * server's first data after the FIN at once); else the DR and TUNNEL sessions closed just
 * before a switch (published then: publishYoung) would stay on the peers for a minute and
 * more. An end comes as a delete, however long the copy would live. */
function copyTicks(timeouts: Int32Array, idle: number, state: number, refresh: number, quiet: boolean): number {
  return ownTicks(timeouts, Math.max(idle, 2 * refresh), state, quiet);
}

/** How long a session in `state` that this node owns lives from now without a packet, as
 * the engine times it: an idle one (ESTABLISHED, UDP, closing with data perhaps still
 * flowing) its service's `idle` ticks, the others (a TUNNEL or DR session closed: `quiet`)
 * their state's timeout. For a copy that becomes this node's (adopted, claimed, handed to
 * it, restored from its own hash): a live connection's next packet comes within that, and
 * its copy's longer life (copyTicks: refreshSec's floor) would keep an ended one, a UDP flow
 * of a 10 s idleTimeout for a minute. */
function ownTicks(timeouts: Int32Array, idle: number, state: number, quiet: boolean): number {
  if (state === S_ESTABLISHED || state === S_UDP) return idle;
  const t = timeouts[state]!;
  return isClosing(state) && !quiet ? Math.max(t, idle) : t;
}

/** An installed record's life: its own (`own`: it names this node) or a copy's. */
function lifeTicks(
  timeouts: Int32Array,
  idle: number,
  state: number,
  refresh: number,
  quiet: boolean,
  own: boolean,
): number {
  return own ? ownTicks(timeouts, idle, state, quiet) : copyTicks(timeouts, idle, state, refresh, quiet);
}

/** Is the session of record words `w` at `base` (a session record, or a sync record through
 * syncWord: `at`), in `state`, one that follows the client alone (not `twoWay`: TUNNEL, DR)
 * and is closed as far as its owner can tell (conn/state.ts quietSinceFin)? Its owner
 * publishes the server's first data after the FIN, so its copy lives FIN_WAIT's short
 * timeout until then, as it does there. */
function quietClose(
  twoWay: boolean,
  state: number,
  w: Int32Array,
  base: number,
  at: (word: number) => number,
): boolean {
  return !twoWay && state === S_FIN_WAIT && quietSinceFin(w[base + at(R_CLI_ACK)]!, w[base + at(R_CLI_FIN_ACK)]!);
}

/** quietClose of session record `base`, in `state`. */
function recQuietClose(rec: Int32Array, base: number, state: number): boolean {
  return quietClose(MODES[recMode(rec, base)]!.twoWay, state, rec, base, sameWord);
}

/** The node (`self` for this one) that holds the local address of a FULLNAT session: the
 * words `w` of the local address of the record at `base` (a session record, or a sync record
 * through syncWord: `at`), whose meta word is `meta`; 0 for none known, and for the other
 * modes (only FULLNAT sessions use a node's own addresses). */
function holderOf(
  services: ServiceTable,
  w: Int32Array,
  base: number,
  at: (word: number) => number,
  self: number,
): number {
  const meta = w[base + R_META]!;
  if (((meta >>> META_MODE_SHIFT) & META_MODE_MASK) !== MODE_FULLNAT) return 0;
  const af = (meta >>> 8) & 0xff;
  const a0 = w[base + at(addrWord(R_LIP0, R_LIP1, 0))]!;
  const a1 = w[base + at(addrWord(R_LIP0, R_LIP1, 1))]!;
  const a2 = w[base + at(addrWord(R_LIP0, R_LIP1, 2))]!;
  const a3 = w[base + at(addrWord(R_LIP0, R_LIP1, 3))]!;
  if (services.isOwnLocalAddress(af, a0, a1, a2, a3)) return self;
  return Math.max(0, services.peerLocalHolder(af, a0, a1, a2, a3));
}

const sameWord = (word: number): number => word;

/** holderOf for the sync record at `s`. */
function syncHolder(services: ServiceTable, ev: Int32Array, s: number, self: number): number {
  return holderOf(services, ev, s, syncWord, self);
}

/** holderOf for session record `base`. */
function recHolder(services: ServiceTable, rec: Int32Array, base: number, self: number): number {
  return holderOf(services, rec, base, sameWord, self);
}

/** installTemplate's key (one call at a time: a worker's thread). */
const installKey = new Int32Array(TEMPLATE_KEY_WORDS);

/** A peer's template (sync record at `s`) into this LB's table: its service by VIP, port and
 * protocol, its real server by address (and port, where the service has it there). False
 * when either is unknown here. */
function installTemplate(
  ev: Int32Array,
  s: number,
  services: ServiceTable,
  templates: TemplateTable,
  nowMs: number,
): boolean {
  const meta = ev[s + R_META]!;
  const af = (meta >>> 8) & 0xff;
  const word = (w0: number, hi: number, k: number): number => ev[s + syncWord(addrWord(w0, hi, k))]!;
  const svc = services.lookup(
    af,
    meta & 0xff,
    word(R_VIP0, R_VIP1, 0),
    word(R_VIP0, R_VIP1, 1),
    word(R_VIP0, R_VIP1, 2),
    word(R_VIP0, R_VIP1, 3),
    ev[s + R_IN_PORTS]! & 0xffff,
  );
  // A removed service (a tombstone here) takes no templates: it makes no new sessions. A
  // template's server is its address, at the record's port if the service has it there (a
  // persistence group's template may come from a service of the group forwarding elsewhere).
  if (svc < 0 || services.alive[svc] === 0) return false;
  let rs = findServer(services, svc, ev, s);
  if (rs < 0) rs = findServer(services, svc, ev, s, true);
  if (rs < 0) return false;
  const key = installKey;
  key[0] = (af << 16) | services.persistKey[svc]!;
  for (let k = 0; k < 4; k++) key[1 + k] = word(R_CIP0, R_CIP1, k);
  const timeoutSec = ev[s + syncWord(TEMPLATE_TIMEOUT_WORD)]!;
  templates.lock();
  try {
    templates.install(key, rs, nowMs + timeoutSec * 1000, timeoutSec, nowMs);
  } finally {
    templates.unlock();
  }
  return true;
}

/** Does record `base` have the IN key (client side) of the sync record at `s`? */
function sameInKey(rec: Int32Array, base: number, ev: Int32Array, s: number): boolean {
  for (let i = 0; i < KEY_LO_WORDS; i++) if (rec[base + R_IN + i] !== ev[s + R_IN + i]) return false;
  for (let i = 0; i < KEY_BLOCK_WORDS - KEY_LO_WORDS; i++) {
    if (rec[base + R_IN_HI + i] !== ev[s + syncWord(R_IN_HI + i)]) return false;
  }
  return true;
}

function flagsOf(syncMeta: number): number {
  return (((syncMeta >>> META_FLAGS_SHIFT) & SYNCED_FLAGS) | FLAG_SYNCED) & 0xff;
}

/** Write the sync record's words into a record (keys, seq fields), leaving local words. */
function writeRecord(rec: Int32Array, base: number, ev: Int32Array, s: number): void {
  for (let i = 0; i < LINE1_WORDS; i++) {
    if (i !== R_SVC_RS) rec[base + i] = ev[s + i]!;
  }
  for (let i = 0; i < HI_WORDS; i++) rec[base + R_LINE2 + i] = ev[s + LINE1_WORDS + i]!;
  for (let i = 0; i < LINE3_WORDS; i++) rec[base + R_LINE3 + i] = ev[s + LINE1_WORDS + HI_WORDS + i]!;
  for (let i = 0; i < FIN_WORDS; i++) rec[base + R_CLI_FIN_ACK + i] = ev[s + FIN_AT + i]!;
  rec[base + R_HOLD] = 0;
}

/** The real server of service `svc` at the sync record's RIP:rport (ServiceTable.serverAt;
 * with `anyPort`, the first at RIP), or −1. */
function findServer(services: ServiceTable, svc: number, ev: Int32Array, s: number, anyPort = false): number {
  return services.serverAt(
    svc,
    ev[s + R_RIP0]!,
    ev[s + syncWord(R_RIP1)]!,
    ev[s + syncWord(R_RIP1 + 2)]!,
    ev[s + syncWord(R_RIP1 + 4)]!,
    anyPort ? ANY_PORT : ev[s + R_OUT_PORTS]! >>> 16,
  );
}

function setCounts(
  rec: Int32Array,
  base: number,
  state: number,
  counts: { active: Int32Array; inactive: Int32Array },
): void {
  const rsId = recServer(rec, base);
  if (state !== S_NONE && isActiveState(state)) {
    counts.active[rsId] = counts.active[rsId]! + 1;
    rec[base + R_META] = rec[base + R_META]! | (FLAG_COUNTED_ACTIVE << META_FLAGS_SHIFT);
  } else {
    counts.inactive[rsId] = counts.inactive[rsId]! + 1;
    rec[base + R_META] = rec[base + R_META]! & ~(FLAG_COUNTED_ACTIVE << META_FLAGS_SHIFT);
  }
}
