/**
 * The packet engine of one worker: takes a burst of raw IP packets in ring slots, rewrites
 * each in place in its service's forwarding mode or drops it with a reason, and runs the shard's timers. It does
 * no I/O: the TUN layer (or a test) fills the ring, calls processBurst, and writes back
 * the slots whose verdict is FORWARD, then the packets the engine generated (emit ring).
 *
 * Per window of PREFETCH_WINDOW packets:
 *   1. classify   parse, find the service, hash the lookup key
 *   2. touch      touch every packet's index slot, then both lines of each record
 *   3. handle     parse → to a VIP service?  yes: owner = client hash → natInbound
 *                                            no:  owner = dport (or,
 *                                                 NAT, client hash)   → natOutbound
 *                         ICMP: owner from the quoted packet          → natIcmp
 *                         a fragment: held until its datagram is whole (reassembly.ts),
 *                         which is handled as one packet and written by nat/fragment.ts
 *                 (shard.ts says whose packet is whose; the session's forwarding mode,
 *                 nat/modes/, does the rewrite.)
 *                 A packet owned by another worker is not touched: REDIRECT, aux = owner.
 *
 * Steps 1 and 2 exist for large tables: a lookup costs two dependent cache misses (index
 * slot, then record). Done one packet at a time they serialise; issued for a whole window
 * first, the misses of different packets overlap. Step 3 reuses the hash from step 1.
 * Below PREFETCH_MIN_SESSIONS live sessions the table is in cache and step 3 runs alone.
 */

import './jit.js'; // first: V8's inlining budget, before any engine code is optimised
import {
  assertConstants,
  EMIT_SLOTS,
  EMIT_SLOTS_GSO,
  SESSIONS_PER_LB_DEFAULT,
  TIMER_BUDGET_PER_ADVANCE,
  TIMER_TICK_MS,
  MTU_DEFAULT,
  RECONCILE_SLICE_RECORDS,
  SNAPSHOT_SLICE_RECORDS,
  SYNC_SCAN_SLICE_RECORDS,
  SYNC_SWEEP_SLICE_RECORDS,
  SLOT_SIZE_BYTES,
  SYNC_RING_WAIT_MS,
  FRAG_DATAGRAM_MAX_BYTES,
  FRAG_HANDOVER_BYTES,
} from '../constants.js';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { randomSeed } from '../conn/hash.js';
import {
  FLAG_PROXIED,
  FLAG_TOA_OPEN,
  FLAG_SYNCED,
  META_FLAGS_SHIFT,
  R_CIP0,
  R_CIP1,
  R_CLI_ACK,
  R_CREATED,
  R_EXPIRE,
  R_IN_PORTS,
  R_LINE2,
  R_LIP0,
  R_LIP1,
  R_META,
  R_OUT_PORTS,
  R_RIP0,
  R_RIP1,
  R_RESET,
  R_RS_ACK,
  R_RS_ISN1,
  R_SEQ_DELTA,
  R_SRV_DELTA,
  R_TS_DELTA,
  recMode,
  recOwner,
  recServer,
  recService,
  R_VIP0,
  R_VIP1,
  RECORD_WORDS,
} from '../conn/layout.js';
import {
  S_CLOSE,
  S_ESTABLISHED,
  S_TIME_WAIT,
  STATE_NAMES,
  TIMEOUTS_DEFAULT_SEC,
  type TimeoutsSec,
} from '../conn/state.js';
import { SessionTable } from '../conn/table.js';
import { TemplateTable } from '../conn/templates.js';
import { TunnelMtuTable } from '../nat/tunnel_pmtu.js';
import { AF_INET6, ETH_HEADER_LEN, IPPROTO_TCP, IPPROTO_UDP, VIRTIO_NEEDS_CSUM } from '../packet/headers.js';
import { NatContext, type NatOptions } from '../nat/context.js';
import type { IsnKey } from '../nat/seq.js';
import { emitDatagram } from '../nat/fragment.js';
import { flushHeld } from '../nat/fullnat_in.js';
import { natInbound } from '../nat/inbound.js';
import { natOutbound } from '../nat/outbound.js';
import { MODE_NAMES, modeTable } from '../nat/modes/index.js';
import { icmpOwner, natIcmp } from '../nat/icmp_errors.js';
import { resetBoth } from '../nat/rst.js';
import { isWaiting, proxyAutoTick, proxyTimer, releaseHeld } from '../nat/synproxy.js';
import { setState, stateOf, uncountSession } from '../nat/session.js';
import {
  DROP_FRAGMENT_TIMEOUT,
  DROP_IPV4_FRAGMENT,
  DROP_IPV6_FRAGMENT,
  DROP_REDIRECT_FULL,
  DROP_STANDBY,
  DROP_TRUNCATED,
  HELD,
  VERDICT_DROP,
  VERDICT_FORWARD,
  VERDICT_LINK,
  VERDICT_REDIRECT,
} from '../nat/verdict.js';
import { SessionSync, SyncRing, type InstallResult, type Reconciled, type ScanSlice } from '../ha/session_sync.js';
import { HaControl } from '../ha/role.js';
import { formatAddress } from '../service/addr.js';
import { ConnCounts, ServiceTable, type PeerLocalAddress, type ResolvedService } from '../service/service.js';
import {
  C_DROPPED,
  C_FRAGMENT_BYTES_HELD,
  C_FRAGMENTS_PENDING,
  C_FRAGMENTS_REASSEMBLED,
  C_GSO_PACKETS,
  C_REDIRECTED,
  C_RX_BYTES,
  C_RX_PACKETS,
  C_SESSIONS_EXPIRED,
  C_SYNC_DELETED,
  C_SYNC_INSTALLED,
  C_SYNC_ADOPTED,
  C_SYNC_CONFLICTS,
  C_SYNC_REPLACED,
  C_SYNC_INSTALL_FAILED,
  C_SYNC_HANDED_OVER,
  C_SYNC_CLAIMED,
  C_SYNC_STAND_DOWN,
  C_TX_BYTES,
  C_TX_PACKETS,
  createCounters,
  DROPS_BASE,
} from './counters.js';
import { FRAG_PENDING, Reassembly } from './reassembly.js';
import { PacketRing } from './ring.js';
import { clientWorker, replyWorker } from './shard.js';

export interface EngineOptions {
  /** This worker's index and the number of workers (shards). */
  worker?: number;
  workers?: number;
  /** Sessions this shard can hold (default: the LB default split over the workers). */
  capacity?: number;
  mtu?: number;
  timeouts?: Partial<TimeoutsSec>;
  rstOnExpire?: boolean;
  /** Seed of the session-index hash (random by default). */
  seed?: number;
  /** Key of the ISN hash: the same for every worker and both LBs of a pair, and across
   * restarts (control/isn_secret.ts); random by default. */
  isnKey?: IsnKey;
  /** Now, on the clock processBurst's nowMs will use (any origin: ticks count from here). */
  nowMs?: number;
  /** Shared memory for the counters and connection counts (so another thread can read
   * them); allocated here when absent. */
  countersSab?: SharedArrayBuffer;
  connCountsSab?: SharedArrayBuffer;
  /** Every forwarder's connCountsSab, by worker (this one's at `worker`): a real server's
   * session cap counts the LB's sessions (service/sched/scheduler.ts available). Absent:
   * this engine's alone. */
  nodeConnCountsSabs?: SharedArrayBuffer[];
  /** The LB's persistence templates, shared by its workers (conn/templates.ts); absent: a
   * small table of this engine's own (tests, benchmarks). */
  templatesSab?: SharedArrayBuffer;
  /** TUNNEL's learned path MTUs (nat/tunnel_pmtu.ts), one table for every worker; absent:
   * this engine's own. */
  tunnelMtuSab?: SharedArrayBuffer;
  /** Bytes in front of each packet of the rings this engine sees: VNET_HDR_LEN with TUN
   * offloads (IFF_VNET_HDR), else 0. Generated packets (emit ring) get the same. */
  headroom?: number;
  /** HA (pair or cluster): this node's id, the control words (ha/role.ts: forwarding,
   * publishing; shared by the main thread and every worker) and session sync (the event
   * ring the main thread drains, and its timing). */
  ha?: HaEngineOptions;
}

export interface HaEngineOptions {
  nodeId: number;
  controlSab: SharedArrayBuffer;
  syncRingSab: SharedArrayBuffer;
  syncAfterMs: number;
  refreshSec: number;
}

/** Template slots of an engine without the LB's shared table (tests, benchmarks). */
const ENGINE_TEMPLATE_SLOTS = 4096;

/** Marker returned by handle() for a packet owned by another worker. */
const REDIRECT = -0x10000;

/** Bytes of the buffer a reassembled datagram is handled in: the largest, a virtio_net_hdr in
 * front, and what its mode may add (a tunnel's outer headers, DR's Ethernet header, TOA). */
const DATAGRAM_BUFFER_BYTES = FRAG_DATAGRAM_MAX_BYTES + 128;

/** Packets whose lookups are issued together (steps 1–2): enough independent misses to
 * overlap, few enough that the lines touched (16 × 128 B for IPv4) are still in L1 at step 3.
 * Measured on the micro benchmark at 1M sessions: 16 beat 8, 32 and 64. */
const PREFETCH_WINDOW = 16;

/** Live sessions (all workers) from which steps 1–2 run. Below, the table stays in cache and
 * they only parse every packet twice. Measured (micro benchmark, with / without them, same
 * process): 0.96× at 1k and 0.95× at 10k sessions, 1.03× at 30k, 1.15× at 100k, 1.21× at 1M. */
export const PREFETCH_MIN_SESSIONS = 20_000;

/** pfSvc values besides a service id. */
const PF_NONE = -2; // not classified in step 1 (malformed, ICMP): handle() does it all
const PF_OUTBOUND = -1;

/** A session as the control plane shows it (not used on the data path). */
export interface SessionInfo {
  id: number;
  protocol: 'tcp' | 'udp';
  state: string;
  client: string;
  cport: number;
  vip: string;
  vport: number;
  laddr: string;
  lport: number;
  rip: string;
  rport: number;
  serviceId: number;
  realServerId: number;
  /** Forwarding mode (nat/modes/); laddr/lport are the client's own in every mode but
   * FULLNAT. */
  mode: string;
  seqDelta: number;
  rsIsnPlus1: number | undefined;
  /** TOA still owed: the real server has not acknowledged a client byte yet. */
  toaOpen: boolean;
  clientAck: number;
  rsAck: number;
  /** LB timestamp clock − client TSval (0: timestamps are not translated). */
  tsDelta: number;
  /** Made by the SYN proxy: the real server's sequence space is offset by srvDelta. */
  proxied: boolean;
  srvDelta: number;
  expiresInMs: number;
  synced: boolean;
  /** HA: 0 when this node owns the session, else the id of the peer it was installed from. */
  owner: number;
  /** A persistence template's row (control/conns.ts): the sessions made through it. */
  sessions?: number;
}

export class Engine {
  readonly ctx: NatContext;
  readonly table: SessionTable;
  readonly services: ServiceTable;
  readonly counters: Float64Array;
  /** Packets the engine generated (RSTs, the SYN proxy's SYNs and held segments);
   * `emitCount` of them are waiting to be written. */
  readonly emit: PacketRing;
  get emitCount(): number {
    return this.ctx.emitCount;
  }
  /** Packets of the last burst left for another worker (verdict REDIRECT). */
  lastBurstRedirects = 0;
  /** Fragments of datagrams another worker owns, reassembled here (the forwarder hands them
   * over after the burst, each with a headroom of zeros, then calls handedOver(); the owner
   * reassembles them again). Views of a buffer of the engine's. */
  readonly handovers: { owner: number; fragments: Uint8Array[] }[] = [];
  private handoverBytes: Uint8Array | null = null;
  private handoverUsed = 0;
  readonly worker: number;
  readonly workers: number;
  private redirectTo = 0;
  /** Time of tick 0. Ticks count from the engine's start so they fit int32 record fields
   * (2^31 ticks of 100 ms: 6.8 years of uptime) whatever clock the caller uses. */
  private readonly epochMs: number;
  /** Step-1 results per window slot: service id or PF_*, and the lookup-key hash. */
  private readonly pfSvc = new Int32Array(PREFETCH_WINDOW);
  private readonly pfHash = new Int32Array(PREFETCH_WINDOW);
  private readonly pfV6 = new Uint8Array(PREFETCH_WINDOW);
  /** Sink for the prefetch loads, so the JIT cannot drop them as dead code. */
  private pfSink = 0;
  /** IP fragments waiting for the rest of their datagram, and where a whole one is handled
   * (allocated at the first). */
  private fragments: Reassembly | null = null;
  private datagram: Uint8Array | null = null;
  private datagramView: DataView | null = null;

  constructor(opts: EngineOptions, services: readonly ResolvedService[]) {
    assertConstants();
    const workers = opts.workers ?? 1;
    const worker = opts.worker ?? 0;
    if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new RangeError('workers must be 1..256');
    if (!Number.isInteger(worker) || worker < 0 || worker >= workers)
      throw new RangeError('worker must be 0..workers-1');
    this.worker = worker;
    this.workers = workers;
    const capacity = opts.capacity ?? Math.ceil(SESSIONS_PER_LB_DEFAULT / workers);
    const nowMs = opts.nowMs ?? 0;
    this.table = new SessionTable(capacity, opts.seed ?? randomSeed(), TIMER_TICK_MS);
    this.epochMs = nowMs;
    this.table.startTicks(0);
    const counts = new ConnCounts(opts.connCountsSab);
    const node = opts.nodeConnCountsSabs?.map((sab, w) => (w === worker ? counts : new ConnCounts(sab)));
    this.services = new ServiceTable(counts, node ?? [counts]);
    this.services.apply(services, worker, workers, nowMs);
    this.counters = createCounters(opts.countersSab);
    this.emit = new PacketRing(
      opts.headroom ? EMIT_SLOTS_GSO : EMIT_SLOTS,
      SLOT_SIZE_BYTES,
      undefined,
      opts.headroom ?? 0,
    );
    const natOpts: NatOptions = {
      worker,
      workers,
      mtu: opts.mtu ?? MTU_DEFAULT,
      timeouts: { ...TIMEOUTS_DEFAULT_SEC, ...(opts.timeouts ?? {}) },
      rstOnExpire: opts.rstOnExpire ?? false,
      tickMs: TIMER_TICK_MS,
      ...(opts.isnKey !== undefined ? { isnKey: opts.isnKey } : {}),
    };
    this.ctx = new NatContext(natOpts, this.table, this.services, counts, this.counters, this.emit);
    this.ctx.setIdleTimeouts(services);
    this.ctx.tick = this.table.tick;
    this.ctx.nowMs = nowMs;
    this.ctx.modes = modeTable();
    this.templates = new TemplateTable(ENGINE_TEMPLATE_SLOTS, opts.templatesSab);
    this.ctx.templates = this.templates;
    this.ctx.tunnelMtus = new TunnelMtuTable(opts.tunnelMtuSab);
    if (opts.ha) {
      this.control = new HaControl(opts.ha.controlSab);
      this.sync = new SessionSync(
        this.table,
        SyncRing.fromSab(opts.ha.syncRingSab),
        Math.ceil(opts.ha.syncAfterMs / TIMER_TICK_MS),
        Math.ceil((opts.ha.refreshSec * 1000) / TIMER_TICK_MS),
        opts.ha.nodeId,
      );
      this.ctx.sync = this.sync;
      this.sync.active = this.control.publishing;
    }
  }

  readonly templates: TemplateTable;

  /** The HA control words (null: no HA, always forwarding). */
  private readonly control: HaControl | null = null;
  readonly sync: SessionSync | null = null;
  /** The last HA scan asked for (serial). */
  private scans: Promise<unknown> = Promise.resolve();

  /** Forwarding (false only on the standby of an HA pair). */
  get forwarding(): boolean {
    return this.control === null || this.control.forwarding;
  }

  /** HA: apply a batch of session events published by peers, in its turn among the HA scans
   * (serial: after a mark asked for before it, before a sweep asked for after it) and after a
   * turn of the thread's event loop. A worker handles every message waiting in its port in
   * one go: 100 queued batches of 2 ms held its packets 200 ms; this way they go between
   * batches. */
  queueInstall(events: Int32Array, count: number): Promise<InstallResult> {
    return this.serial(async () => {
      await nextTurn();
      return this.installSynced(events, count);
    });
  }

  /** HA: apply session events published by peers now (see ha/session_sync.ts). */
  installSynced(events: Int32Array, count: number): InstallResult {
    const c = this.ctx;
    if (!this.sync) throw new Error('HA sync is not configured');
    // Whether this node publishes decides what a peer's record does to a session of its own:
    // read the role words now, not at the next tick (a node that has just stood by would
    // keep its own records against the new master's for up to a tick, then for good).
    this.readRole(c.nowMs);
    const res = this.sync.install(
      events,
      count,
      this.services,
      c.timeouts,
      c.idleTicks,
      this.table.tick,
      c.counts,
      this.dropRecord,
      this.templates,
      c.nowMs,
    );
    const ctr = this.counters;
    ctr[C_SYNC_INSTALLED] = ctr[C_SYNC_INSTALLED]! + res.installed + res.updated;
    ctr[C_SYNC_DELETED] = ctr[C_SYNC_DELETED]! + res.deleted;
    ctr[C_SYNC_INSTALL_FAILED] = ctr[C_SYNC_INSTALL_FAILED]! + res.failed;
    ctr[C_SYNC_CONFLICTS] = ctr[C_SYNC_CONFLICTS]! + res.conflicts;
    ctr[C_SYNC_REPLACED] = ctr[C_SYNC_REPLACED]! + res.replaced;
    ctr[C_SYNC_HANDED_OVER] = ctr[C_SYNC_HANDED_OVER]! + res.handedOver;
    return res;
  }

  /** HA full resync: what this worker has published, in chunks of sync records, and the
   * sync ring's write count before the first (events from there on follow the snapshot).
   * SNAPSHOT_SLICE_RECORDS records at a time, the thread's packets served between slices
   * (SessionSync.snapshotSessions says why the result stays right). */
  syncSnapshot(): Promise<{ records: Int32Array[]; writeCount: number }> {
    return this.serial(() => this.snapshotSlices());
  }

  private async snapshotSlices(): Promise<{ records: Int32Array[]; writeCount: number }> {
    const sync = this.sync;
    if (!sync) throw new Error('HA sync is not configured');
    const writeCount = sync.ring.writeCount;
    const records: Int32Array[] = [];
    for (let from = 0; from >= 0;) {
      const s = sync.snapshotSessions(from, SNAPSHOT_SLICE_RECORDS);
      if (s.records.length > 0) records.push(s.records);
      from = s.next;
      if (from >= 0) await nextTurn();
    }
    records.push(sync.snapshotTemplates(this.services, this.templates, this.worker, this.workers, this.ctx.nowMs));
    return { records, writeCount };
  }

  /** A reload of peer `owner`'s sessions begins (0: every peer's): see SessionSync.markStale.
   * Like adoptSynced, SYNC_SCAN_SLICE_RECORDS records at a time (sweepSynced:
   * SYNC_SWEEP_SLICE_RECORDS) with the thread's packets served between slices; resolves with
   * how many records it changed. */
  markSynced(owner: number): Promise<number> {
    const sync = this.sync;
    return sync ? this.inSlices((from) => sync.markStale(owner, from, SYNC_SCAN_SLICE_RECORDS)) : Promise.resolve(0);
  }

  /** The reload is done: remove the copies of `owner` it did not bring again. */
  sweepSynced(owner: number): Promise<number> {
    const sync = this.sync;
    return sync
      ? this.inSlices((from) => sync.sweepStale(owner, this.dropRecord, from, SYNC_SWEEP_SLICE_RECORDS))
      : Promise.resolve(0);
  }

  /** Run `step` from record 0 to the end of the table, yielding to the thread between its
   * slices (after the HA scans asked for before: serial); the sum of their counts. */
  private inSlices(step: (from: number) => ScanSlice): Promise<number> {
    return this.serial(async () => {
      let count = 0;
      for (let from = 0; ;) {
        const s = step(from);
        count += s.count;
        if (s.next < 0) return count;
        from = s.next;
        await nextTurn();
      }
    });
  }

  /** The HA scans of the whole table (snapshot, mark, sweep, adopt, reconcile) run in slices
   * with the thread's packets served between them, and one after the other in the order they
   * were asked for, the queued installs among them: a snapshot never reads a table an adopt
   * is half way through, and a reload's installs come after its mark and before its sweep. */
  private serial<T>(job: () => Promise<T>): Promise<T> {
    const run = this.scans.then(job);
    this.scans = run.catch(() => undefined);
    return run;
  }

  /** Remove session `r` that sync replaces or deletes: out of its server's counts and its
   * persistence template, then out of the table. */
  private readonly dropRecord = (r: number): void => {
    uncountSession(this.ctx, r * RECORD_WORDS);
    this.table.remove(r);
  };

  /** Take over the sessions installed from peer `owner` (0: from every peer), in slices as
   * markSynced. */
  adoptSynced(owner: number): Promise<number> {
    const sync = this.sync;
    if (!sync) return Promise.resolve(0);
    return this.inSlices((from) => {
      const s = sync.adopt(
        owner,
        this.ctx.timeouts,
        this.ctx.idleTicks,
        this.table.tick,
        from,
        SYNC_SCAN_SLICE_RECORDS,
      );
      this.counters[C_SYNC_ADOPTED] = this.counters[C_SYNC_ADOPTED]! + s.count;
      return s;
    });
  }

  /** Cluster: sessions go to the node that holds their local address, and (othersTo > 0)
   * the other modes' to that node (SessionSync.reconcile), RECONCILE_SLICE_RECORDS at a time:
   * between slices the thread's other work runs (packets, the sync ring's drain by the main
   * thread). A slice stopped by a full ring waits for room, up to SYNC_RING_WAIT_MS. */
  reconcileSynced(othersTo = 0): Promise<Reconciled> {
    return this.serial(() => this.reconcileSlices(othersTo));
  }

  private async reconcileSlices(othersTo: number): Promise<Reconciled> {
    const total: Reconciled = { claimed: 0, handedOver: 0 };
    const sync = this.sync;
    if (!sync) return total;
    const ctr = this.counters;
    await this.ringSlices((from, overflow) => {
      const c = this.ctx;
      const r = sync.reconcile(
        this.services,
        c.timeouts,
        c.idleTicks,
        this.table.tick,
        othersTo,
        from,
        RECONCILE_SLICE_RECORDS,
        overflow,
      );
      total.claimed += r.claimed;
      total.handedOver += r.handedOver;
      ctr[C_SYNC_CLAIMED] = ctr[C_SYNC_CLAIMED]! + r.claimed;
      ctr[C_SYNC_HANDED_OVER] = ctr[C_SYNC_HANDED_OVER]! + r.handedOver;
      return r;
    });
    return total;
  }

  /** A pair's master standing down, a node stopping in order: publish its sessions younger
   * than syncAfter (SessionSync.publishYoung), in slices as reconcileSynced; how many. */
  publishYoungSynced(): Promise<number> {
    const sync = this.sync;
    if (!sync) return Promise.resolve(0);
    return this.serial(async () => {
      let count = 0;
      await this.ringSlices((from, overflow) => {
        const r = sync.publishYoung(this.table.tick, from, RECONCILE_SLICE_RECORDS, overflow);
        count += r.count;
        return r;
      });
      this.counters[C_SYNC_STAND_DOWN] = this.counters[C_SYNC_STAND_DOWN]! + count;
      return count;
    });
  }

  /** Run `slice` from record 0 until it says it is done (next −1), the thread's other work
   * (packets, the main thread's drain of the sync ring) between slices. A slice stopped by a
   * full ring is tried again after a millisecond; once the ring has stayed full for
   * SYNC_RING_WAIT_MS (its drain is stuck: the main thread is busy) the rest goes with
   * `overflow`, without waiting: what the ring cannot take is counted lost (a resync repairs). */
  private async ringSlices(slice: (from: number, overflow: boolean) => { next: number; ringFull: boolean }) {
    let fullSince = 0;
    let overflow = false;
    for (let from = 0; ;) {
      const r = slice(from, overflow);
      from = r.next;
      if (from < 0) return;
      if (r.ringFull) {
        if (fullSince === 0) fullSince = Date.now();
        overflow = Date.now() - fullSince >= SYNC_RING_WAIT_MS;
        await sleep(1);
      } else {
        fullSince = 0;
        await nextTurn();
      }
    }
  }

  /** Install a new service set (reload): existing sessions keep running. */
  applyServices(services: readonly ResolvedService[]): void {
    this.services.apply(services, this.worker, this.workers, this.ctx.nowMs);
    this.ctx.setIdleTimeouts(services);
  }

  /** A cluster's other nodes' local addresses, each with its node: a reply to one (a
   * taken-over peer's session) belongs to the worker its port names, as a reply to our own
   * does (shard.ts); and a session on one is that node's while it lives (SessionSync). */
  setPeerLocalAddresses(addrs: readonly PeerLocalAddress[]): void {
    this.services.setPeerLocalAddresses(addrs);
  }

  /** HA: the peers' worker counts, as registered (Services.setPeerWorkers). */
  setPeerWorkers(counts: readonly number[]): void {
    this.services.setPeerWorkers(counts);
  }

  get sessionCount(): number {
    return this.table.live;
  }

  /**
   * Rewrite or drop each of the first `count` packets of `ring` in place; set lens,
   * verdicts and aux. Also advances the timers to `nowMs`.
   */
  processBurst(ring: PacketRing, count: number, nowMs: number): void {
    const c = this.ctx;
    this.advanceTimers(nowMs);
    if (!this.forwarding) {
      this.dropAll(ring, count, DROP_STANDBY);
      return;
    }
    c.setRing(ring.bytes, ring.view);
    const slotSize = ring.slotSize;
    const lens = ring.lens;
    const verdicts = ring.verdicts;
    const aux = ring.aux;
    const offsets = ring.offsets;
    const ctr = this.counters;
    let rxBytes = 0;
    let txBytes = 0;
    let tx = 0;
    let dropped = 0;
    let redirected = 0;
    const h = ring.headroom;
    c.headroom = h;
    const bytes = ring.bytes;
    let gso = 0;
    const prefetch = this.table.live >= PREFETCH_MIN_SESSIONS;
    for (let w = 0; w < count; w += PREFETCH_WINDOW) {
      const wEnd = count < w + PREFETCH_WINDOW ? count : w + PREFETCH_WINDOW;
      if (prefetch && wEnd - w > 1) this.prefetch(ring, w, wEnd);
      else this.pfSvc.fill(PF_NONE); // handle() classifies each packet itself
      for (let i = w; i < wEnd; i++) {
        const off = offsets[i]!;
        const len = lens[i]!;
        rxBytes += len;
        c.slotEnd = off + slotSize;
        if (h !== 0) {
          // virtio_net_hdr: flags (bit 0 NEEDS_CSUM), gso_type (low 7 bits; 0x80 is ECN).
          c.pPartial = (bytes[off]! & VIRTIO_NEEDS_CSUM) !== 0;
          c.pGso = (bytes[off + 1]! & 0x7f) !== 0;
          c.pVnet = off;
          if (c.pGso) gso++;
        }
        let res = len < h ? -DROP_TRUNCATED : this.handle(off + h, (len < slotSize ? len : slotSize) - h, i - w);
        // Here, not in handle(): V8 inlines handle() into this loop within a bytecode budget
        // (jit.ts) that a path no established packet takes should not spend.
        if (res === -DROP_IPV4_FRAGMENT || res === -DROP_IPV6_FRAGMENT) res = this.fragment(off + h, i - w);
        if (c.flushRecord >= 0) {
          flushHeld(c, c.flushRecord);
          c.flushRecord = -1;
        }
        if (res >= 0) {
          lens[i] = res + h;
          verdicts[i] = c.toLink ? VERDICT_LINK : VERDICT_FORWARD;
          c.toLink = false;
          aux[i] = 0;
          txBytes += res + h;
          tx++;
        } else if (res === REDIRECT) {
          verdicts[i] = VERDICT_REDIRECT;
          aux[i] = this.redirectTo;
          redirected++;
        } else if (res === HELD) {
          verdicts[i] = VERDICT_DROP; // not written now (nat/verdict.ts HELD), not dropped
          aux[i] = 0;
        } else {
          verdicts[i] = VERDICT_DROP;
          aux[i] = -res;
          ctr[DROPS_BASE - res] = ctr[DROPS_BASE - res]! + 1;
          dropped++;
        }
      }
    }
    c.pPartial = false;
    c.pGso = false;
    if (gso > 0) ctr[C_GSO_PACKETS] = ctr[C_GSO_PACKETS]! + gso;
    ctr[C_RX_PACKETS] = ctr[C_RX_PACKETS]! + count;
    ctr[C_RX_BYTES] = ctr[C_RX_BYTES]! + rxBytes;
    ctr[C_TX_PACKETS] = ctr[C_TX_PACKETS]! + tx;
    ctr[C_TX_BYTES] = ctr[C_TX_BYTES]! + txBytes;
    ctr[C_DROPPED] = ctr[C_DROPPED]! + dropped;
    ctr[C_REDIRECTED] = ctr[C_REDIRECTED]! + redirected;
    this.lastBurstRedirects = redirected;
  }

  /** Drop a whole burst for one reason (the standby of a pair forwards nothing). */
  private dropAll(ring: PacketRing, count: number, reason: number): void {
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      bytes += ring.lens[i]!;
      ring.verdicts[i] = VERDICT_DROP;
      ring.aux[i] = reason;
    }
    const ctr = this.counters;
    ctr[DROPS_BASE + reason] = ctr[DROPS_BASE + reason]! + count;
    ctr[C_DROPPED] = ctr[C_DROPPED]! + count;
    ctr[C_RX_PACKETS] = ctr[C_RX_PACKETS]! + count;
    ctr[C_RX_BYTES] = ctr[C_RX_BYTES]! + bytes;
    this.lastBurstRedirects = 0;
  }

  /** Count `n` drops decided outside a packet's verdict (a hand-off ring was full, fragments
   * that went with their datagram). */
  countDrop(reason: number, n = 1): void {
    const ctr = this.counters;
    ctr[DROPS_BASE + reason] = ctr[DROPS_BASE + reason]! + n;
    ctr[C_DROPPED] = ctr[C_DROPPED]! + n;
  }

  /**
   * Steps 1 and 2 for slots [from, to): classify and hash each packet, touching its index
   * slot; then touch the records those slots point at. Nothing is decided here: the
   * results only spare step 3 the service lookup and the hash.
   */
  private prefetch(ring: PacketRing, from: number, to: number): void {
    const c = this.ctx;
    const table = this.table;
    const index = table.index;
    const rec = table.rec;
    const mask = table.indexMask;
    const slotSize = ring.slotSize;
    const h = ring.headroom;
    const lens = ring.lens;
    let sink = 0;
    for (let i = from; i < to; i++) {
      const k = i - from;
      const len = (lens[i]! < slotSize ? lens[i]! : slotSize) - h;
      const proto = len > 0 && c.parse(ring.offsets[i]! + h, len) === 0 ? c.pProto : 0;
      if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) {
        this.pfSvc[k] = PF_NONE;
        continue;
      }
      const svc = c.services.lookup(c.pAf, proto, c.pD0, c.pD1, c.pD2, c.pD3, c.pDport);
      const blockWords = c.fillKey(c.key);
      const hash = table.hashKey(c.key, blockWords);
      this.pfSvc[k] = svc >= 0 ? svc : PF_OUTBOUND;
      this.pfHash[k] = hash;
      this.pfV6[k] = c.pAf === AF_INET6 ? 1 : 0;
    }
    // Tight loops of independent loads: the CPU keeps many misses in flight at once.
    for (let k = 0; k < to - from; k++) {
      if (this.pfSvc[k] !== PF_NONE) sink ^= index[this.pfHash[k]! & mask]!;
    }
    const lowMask = table.entryLowMask;
    for (let k = 0; k < to - from; k++) {
      if (this.pfSvc[k] === PF_NONE) continue;
      const hash = this.pfHash[k]!;
      const tag = hash & ~lowMask;
      // Follow the probe sequence (cached by step 1) to the first entry with this tag.
      let slot = hash & mask;
      for (let probes = 0; probes < 8; probes++) {
        const e = index[slot]!;
        if (e === 0) break;
        if ((e & ~lowMask) === tag) {
          const base = (((e & lowMask) >>> 1) - 1) * RECORD_WORDS;
          // An IPv4 packet needs only the record's first cache line (layout.ts).
          sink ^= this.pfV6[k] === 1 ? rec[base]! ^ rec[base + R_LINE2]! : rec[base]!;
          break;
        }
        slot = (slot + 1) & mask;
      }
    }
    this.pfSink ^= sink;
  }

  /** One packet at [off, off + len), window slot k: new length, −reason, or REDIRECT. */
  private handle(off: number, len: number, k: number): number {
    const c = this.ctx;
    const why = c.parse(off, len);
    if (why !== 0) return -why;
    const proto = c.pProto;
    const workers = this.workers;
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      let svc = this.pfSvc[k]!;
      let hash: number;
      if (svc === PF_NONE) {
        svc = c.services.lookup(c.pAf, proto, c.pD0, c.pD1, c.pD2, c.pD3, c.pDport);
        hash = this.table.hashKey(c.key, c.fillKey(c.key));
      } else {
        hash = this.pfHash[k]!;
      }
      if (svc >= 0) {
        if (workers > 1) {
          const owner = clientWorker(c.pS0, c.pS1, c.pS2, c.pS3, c.pSport, workers);
          if (owner !== this.worker) return this.redirect(owner);
        }
        return natInbound(c, svc, hash);
      }
      if (workers > 1) {
        const owner = replyWorker(c.services, c.pAf, c.pD0, c.pD1, c.pD2, c.pD3, c.pDport, workers);
        if (owner !== this.worker) return this.redirect(owner);
      }
      return natOutbound(c, hash);
    }
    if (workers > 1) {
      const owner = icmpOwner(c);
      if (owner !== this.worker) return this.redirect(owner);
    }
    return natIcmp(c);
  }

  /**
   * A fragment (handle() found it one): held until its datagram is whole, which is then handled here as one
   * packet in a buffer of its own and written out (nat/fragment.ts); or handed over whole to
   * the worker that owns it, as the fragments that made it. HELD, or −reason.
   */
  private fragment(off: number, k: number): number {
    const c = this.ctx;
    const reassembly = (this.fragments ??= new Reassembly());
    const got = reassembly.add(c.buf, c.dv, off, c.nowMs);
    this.countFragmentsHeld(reassembly);
    if (reassembly.alsoDropped > 0)
      this.countDrop(c.buf[off]! >>> 4 === 6 ? DROP_IPV6_FRAGMENT : DROP_IPV4_FRAGMENT, reassembly.alsoDropped);
    if (got < 0) return got;
    if (got === FRAG_PENDING) return HELD;
    const h = c.headroom;
    const buf = (this.datagram ??= new Uint8Array(DATAGRAM_BUFFER_BYTES));
    const view = (this.datagramView ??= new DataView(buf.buffer));
    buf.fill(0, 0, h); // a virtio_net_hdr of zeros: complete checksums, no GSO
    const len = reassembly.build(buf, view, h);
    const ring = { buf: c.buf, dv: c.dv, slotEnd: c.slotEnd, vnet: c.pVnet, partial: c.pPartial, gso: c.pGso };
    c.setRing(buf, view);
    c.slotEnd = buf.length;
    c.pVnet = 0;
    c.pPartial = c.pGso = false;
    c.pReassembled = true;
    this.pfSvc[k] = PF_NONE;
    const res = this.handle(h, len, k);
    c.pReassembled = false;
    let out = res;
    if (res >= 0) {
      const link = c.toLink;
      c.toLink = false;
      out = emitDatagram(c, buf, h, link ? h + ETH_HEADER_LEN : h, h + res, link);
      if (out === 0) out = HELD;
    }
    // Counted where it was handled (a handed-over one is made whole again by its owner).
    const ctr = this.counters;
    if (res === REDIRECT) {
      const area = (this.handoverBytes ??= new Uint8Array(FRAG_HANDOVER_BYTES));
      const fragments = reassembly.copyFragments(area, this.handoverUsed);
      if (fragments) {
        for (const f of fragments) this.handoverUsed += f.length;
        this.handovers.push({ owner: this.redirectTo, fragments });
        ctr[C_REDIRECTED] = ctr[C_REDIRECTED]! + fragments.length;
      } else {
        this.countDrop(DROP_REDIRECT_FULL, reassembly.wholeFragments);
      }
      out = HELD;
    } else {
      ctr[C_FRAGMENTS_REASSEMBLED] = ctr[C_FRAGMENTS_REASSEMBLED]! + 1;
    }
    c.setRing(ring.buf, ring.dv);
    c.slotEnd = ring.slotEnd;
    c.pVnet = ring.vnet;
    c.pPartial = ring.partial;
    c.pGso = ring.gso;
    return out;
  }

  /** The forwarder handed this burst's handovers over: their buffer is free again. */
  handedOver(): void {
    this.handovers.length = 0;
    this.handoverUsed = 0;
  }

  private countFragmentsHeld(reassembly: Reassembly): void {
    const ctr = this.counters;
    ctr[C_FRAGMENTS_PENDING] = reassembly.size;
    ctr[C_FRAGMENT_BYTES_HELD] = reassembly.bytes;
  }

  private redirect(owner: number): number {
    this.redirectTo = owner;
    return REDIRECT;
  }

  /** HA: whether this node publishes, from the role words the main thread writes
   * (ha/role.ts), read at every burst, tick and install. */
  private readRole(nowMs: number): void {
    const sync = this.sync;
    if (!sync) return;
    const publishing = this.control!.publishing;
    // A pair's standby promoted: hand out local ports past those the old master used last
    // (laddr.ts).
    if (publishing && !sync.active) this.services.restartPorts(nowMs);
    sync.active = publishing;
  }

  /** Expire what is due at `nowMs` (bounded work per call). Returns sessions expired. */
  advanceTimers(nowMs: number): number {
    const c = this.ctx;
    c.nowMs = nowMs;
    this.readRole(nowMs);
    proxyAutoTick(c);
    const reassembly = this.fragments;
    if (reassembly) {
      const n = reassembly.expire(nowMs);
      if (n > 0) this.countDrop(DROP_FRAGMENT_TIMEOUT, n);
      this.countFragmentsHeld(reassembly);
    }
    const tick = Math.floor((nowMs - this.epochMs) / TIMER_TICK_MS);
    if (tick <= this.table.tick) {
      c.tick = this.table.tick;
      return 0;
    }
    const n = this.table.advance(tick, TIMER_BUDGET_PER_ADVANCE, this);
    c.tick = this.table.tick;
    const sync = this.sync;
    if (sync) {
      sync.tick(c.tick);
      sync.sweepTemplates(this.services, this.templates, this.worker, this.workers, nowMs);
    }
    return n;
  }

  /** ExpiryHandler: a session's time is up (called by the table before freeing it; true
   * keeps it: a SYN proxy session whose SYN went out again, or an established session just
   * reset by rstOnExpire, which stays in CLOSE as after resetOnDown). */
  onExpire(r: number): boolean {
    const c = this.ctx;
    const rec = this.table.rec;
    const base = r * RECORD_WORDS;
    const own = this.forwarding && recOwner(rec, base) === 0;
    if (isWaiting(rec, base) && own && proxyTimer(c, r)) return true;
    releaseHeld(c, r);
    // A peer's session is the peer's to reset, and a standby forwards nothing.
    if (
      c.opts.rstOnExpire &&
      own &&
      stateOf(rec, base) === S_ESTABLISHED &&
      (rec[base + R_META]! & 0xff) === IPPROTO_TCP
    ) {
      resetBoth(c, rec, base);
      if (c.modes[recMode(rec, base)]!.twoWay) {
        rec[base + R_EXPIRE] = this.table.tick + this.holdReset(base); // the wheel relinks it (table.ts)
        return true;
      }
    }
    c.sync?.onRemove(base);
    uncountSession(c, base);
    this.counters[C_SESSIONS_EXPIRED] = this.counters[C_SESSIONS_EXPIRED]! + 1;
    return false;
  }

  /**
   * End the sessions of real server `rsId` (its health check failed and the service asks for
   * resets): RST to both sides of each open TCP session, which then stays in CLOSE for the
   * close timeout to answer late packets with exact RSTs (holdReset; FULLNAT and NAT); other
   * sessions go at once. Scans records
   * from `from`; stops when the emit ring cannot take two more RSTs and returns how many were
   * ended and the record to go on from (−1: done), so the caller writes the RSTs out and
   * calls again — each record is visited once however many rounds it takes.
   */
  resetServer(rsId: number, from = 0): { ended: number; next: number } {
    const c = this.ctx;
    const rec = this.table.rec;
    let ended = 0;
    for (let r = from; r < this.table.used; r++) {
      const base = r * RECORD_WORDS;
      if ((rec[base + R_META]! & 0xffff) === 0 || recServer(rec, base) !== rsId) continue;
      const tcp = (rec[base + R_META]! & 0xff) === IPPROTO_TCP;
      const st = stateOf(rec, base);
      const open = tcp && st !== S_TIME_WAIT && st !== S_CLOSE;
      if (open && this.forwarding && recOwner(rec, base) === 0) {
        if (this.emitCount + 2 > this.emit.slots) return { ended, next: r };
        resetBoth(c, rec, base);
        if (c.modes[recMode(rec, base)]!.twoWay) {
          releaseHeld(c, r);
          this.table.setExpire(r, c.tick + this.holdReset(base));
          ended++;
          continue;
        }
      }
      releaseHeld(c, r);
      c.sync?.onRemove(base);
      uncountSession(c, base);
      this.table.remove(r);
      this.counters[C_SESSIONS_EXPIRED] = this.counters[C_SESSIONS_EXPIRED]! + 1;
      ended++;
    }
    return { ended, next: -1 };
  }

  /**
   * Session `base` (FULLNAT or NAT), just ended with RSTs both ways, stays in CLOSE to answer
   * what either end still sends with an exact RST (layout.ts R_RESET; the first RST may have
   * met data in flight and drawn a challenge ACK). Its peers learn the CLOSE state now and
   * the delete when it expires, as for any other session. Returns the ticks it is kept.
   */
  private holdReset(base: number): number {
    const c = this.ctx;
    setState(c, base, S_CLOSE);
    this.table.rec[base + R_RESET] = 1;
    c.sync?.onPacket(base, true, S_CLOSE, c.tick);
    return c.timeouts[S_CLOSE]!;
  }

  /** Forget the generated packets once the I/O layer has written them. */
  clearEmitted(): void {
    this.ctx.emitCount = 0;
  }

  /** Record ids of live sessions (control plane; walks every record handed out so far). */
  *sessionIds(): Generator<number> {
    const rec = this.table.rec;
    for (let r = 0; r < this.table.used; r++) {
      if ((rec[r * RECORD_WORDS + R_META]! & 0xffff) !== 0) yield r;
    }
  }

  /** A readable view of session `r` (control plane). */
  describe(r: number): SessionInfo {
    const rec = this.table.rec;
    const base = r * RECORD_WORDS;
    const meta = rec[base + R_META]!;
    const af = (meta >>> 8) & 0xff;
    const inPorts = rec[base + R_IN_PORTS]!;
    const outPorts = rec[base + R_OUT_PORTS]!;
    const flags = meta >>> META_FLAGS_SHIFT;
    const addr = (w0: number, hi: number): string =>
      formatAddress(af, [rec[base + w0]!, rec[base + hi]!, rec[base + hi + 2]!, rec[base + hi + 4]!]);
    return {
      id: r,
      protocol: (meta & 0xff) === IPPROTO_TCP ? 'tcp' : 'udp',
      state: STATE_NAMES[stateOf(rec, base)] ?? 'UNKNOWN',
      client: addr(R_CIP0, R_CIP1),
      cport: inPorts >>> 16,
      vip: addr(R_VIP0, R_VIP1),
      vport: inPorts & 0xffff,
      laddr: addr(R_LIP0, R_LIP1),
      lport: outPorts & 0xffff,
      rip: addr(R_RIP0, R_RIP1),
      rport: outPorts >>> 16,
      serviceId: recService(rec, base),
      realServerId: recServer(rec, base),
      mode: MODE_NAMES[recMode(rec, base)] ?? 'unknown',
      seqDelta: rec[base + R_SEQ_DELTA]!,
      rsIsnPlus1: rec[base + R_RS_ISN1] !== 0 ? rec[base + R_RS_ISN1]! >>> 0 : undefined,
      toaOpen: (flags & FLAG_TOA_OPEN) !== 0,
      clientAck: rec[base + R_CLI_ACK]! >>> 0,
      rsAck: rec[base + R_RS_ACK]! >>> 0,
      tsDelta: rec[base + R_TS_DELTA]!,
      proxied: (flags & FLAG_PROXIED) !== 0,
      srvDelta: rec[base + R_SRV_DELTA]!,
      expiresInMs: (rec[base + R_EXPIRE]! - this.table.tick) * TIMER_TICK_MS,
      synced: (flags & FLAG_SYNCED) !== 0,
      owner: recOwner(rec, base),
    };
  }

  /** Created tick of a session (HA sync ages sessions by it). */
  createdTick(r: number): number {
    return this.table.rec[r * RECORD_WORDS + R_CREATED]!;
  }
}
