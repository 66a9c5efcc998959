/**
 * Local address (LIP) pool of one service, as seen by one worker.
 *
 * FULLNAT replaces the client's address by a local address and port. A session's local
 * port is in its client's shard (`port % SESSION_SHARDS` = the shard of the client's address
 * and port, dataplane/shard.ts), and a shard belongs to one worker, so a reply from a real
 * server (addressed to LIP:lport) is steered to the worker owning the session from the
 * destination port alone, with no table shared between workers (DPVS's sa_pool idea) — on
 * this node and on a peer with another worker count that installs the synced session. A
 * worker hands out the ports of its shards only. A LIP:lport pair is reused toward different
 * real servers: it only has to be unique per (RIP, rport), which the session table's OUT
 * index answers directly.
 *
 * Ports are handed out in turn, so a tuple comes back as late as possible: the real server
 * may still hold its last use in TIME_WAIT (docs/config.md, "ISN key"). The turn is per
 * local address and shard, shared by every service that uses the address (PortCursors): two
 * services with their own cursors on one address and one real server would hand out each
 * other's recent tuples. A cursor does not start at a shard's first port, where the previous
 * process started too, but where a clock sweeping the range once per LPORT_SWEEP_SEC stands:
 * a previous process that handed out ports no faster than the sweep used only ports behind
 * it. A standby that becomes master does the same (restartAt): the old master's last ports
 * are behind the sweep as well.
 */

import { LPORT_MAX, LPORT_MIN, LPORT_PROBES_PER_LADDR, LPORT_SWEEP_SEC, SESSION_SHARDS } from '../constants.js';
import { DIR_OUT } from '../conn/layout.js';
import type { SessionTable } from '../conn/table.js';
import { ownerPeriod } from '../dataplane/shard.js';

/** Where the sweep stands at `nowMs` (wall-clock ms), as a port index of a shard's share. */
function sweepAt(nowMs: number, portCount: number): number {
  return portCount > 0 ? Math.floor((nowMs / 1000 / LPORT_SWEEP_SEC) * portCount) % portCount : 0;
}

/** The first local port of `shard` (ports 1025–65535 with `port % SESSION_SHARDS == shard`). */
export function shardPortFirst(shard: number): number {
  return LPORT_MIN + ((((shard - LPORT_MIN) % SESSION_SHARDS) + SESSION_SHARDS) % SESSION_SHARDS);
}

/** How many local ports `shard` has. */
export function shardPortCount(shard: number): number {
  return portsFrom(shardPortFirst(shard));
}

/** How many local ports a shard whose first is `first` has. */
function portsFrom(first: number): number {
  return first > LPORT_MAX ? 0 : Math.floor((LPORT_MAX - first) / SESSION_SHARDS) + 1;
}

/** Ports tried at each other shard's cursor in the second pass of LocalAddressPool.acquire:
 * the port there is the shard's oldest, free unless the shard is full. */
const OTHER_SHARD_PROBES = 2;

/** A worker's shards (`shard % workers == worker`) and its cursors, per local address
 * whichever services use it: one per shard, and the shard the second pass of
 * LocalAddressPool.acquire tries first. */
export class PortCursors {
  /** Shards of this worker: shard = worker + j × workers for j < shards. */
  readonly shards: number;
  /** Shards j and j + k × period (of this worker's) have one owner on every node of the pair
   * or cluster (dataplane/shard.ts ownerPeriod, in this worker's shards): 1 alone or among
   * like nodes; `shards` or more when no two do. */
  period = 1;
  /** Words per address: the shards' cursors, then the second pass's next shard. */
  readonly stride: number;
  /** Next port index to try, by cursor slot × stride + j. */
  pos: Int32Array = new Int32Array(0);
  private readonly slots = new Map<string, number>();

  constructor(
    readonly worker: number,
    readonly workers: number,
  ) {
    this.shards = worker < SESSION_SHARDS ? Math.floor((SESSION_SHARDS - 1 - worker) / workers) + 1 : 0;
    this.stride = this.shards + 1;
  }

  /** The worker counts of the other nodes that install this node's sessions (its HA peers,
   * as registered): the period follows from them. */
  setPeerWorkers(peerWorkers: readonly number[]): void {
    this.period = Math.ceil(ownerPeriod([this.workers, ...peerWorkers]) / this.workers);
  }

  /** The slot of address `addr` (4 words): an existing one, or a new one at the sweep. */
  slot(addr: Int32Array, nowMs: number): number {
    const key = `${addr[0]},${addr[1]},${addr[2]},${addr[3]}`;
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.slots.size;
      const pos = new Int32Array((slot + 1) * this.stride);
      pos.set(this.pos);
      this.pos = pos;
      this.restartSlot(slot, nowMs);
      this.slots.set(key, slot);
    }
    return slot;
  }

  /** Every cursor continues from where the sweep stands at `nowMs` (a standby promoted). */
  restartAt(nowMs: number): void {
    for (let slot = 0; slot < this.slots.size; slot++) this.restartSlot(slot, nowMs);
  }

  private restartSlot(slot: number, nowMs: number): void {
    const o = slot * this.stride;
    for (let j = 0; j < this.shards; j++)
      this.pos[o + j] = sweepAt(nowMs, shardPortCount(this.worker + j * this.workers));
    this.pos[o + this.shards] = 0;
  }
}

export class LocalAddressPool {
  readonly count: number;
  /** Addresses, 4 words each. */
  readonly addrs: Int32Array;
  /** Port chosen by the last successful acquire(). */
  lastPort = 0;
  /** OUT-key hash of the last successful acquire(), for the index insert. */
  lastHash = 0;
  /** The last acquire() found no port in the client's shard and looked in the worker's
   * others. */
  otherShard = false;
  /** ... and took one of a shard that some node of the pair or cluster gives another owner
   * than the client's shard (that node cannot serve the session). */
  otherOwner = false;
  /** Cursor slot (in `cursors`) of each address. */
  private readonly slots: Int32Array;
  private nextLaddr = 0;

  /** `cursors`: the worker's (its shards), shared with its other pools; `nowMs`:
   * wall-clock milliseconds (the forwarders' clock), where a new address's cursors start. */
  constructor(
    addrs: readonly Int32Array[],
    private readonly cursors: PortCursors,
    nowMs: number,
  ) {
    this.count = addrs.length;
    this.addrs = new Int32Array(this.count * 4);
    addrs.forEach((a, i) => this.addrs.set(a.subarray(0, 4), i * 4));
    this.slots = Int32Array.from(addrs, (a) => cursors.slot(a, nowMs));
  }

  /** Whether this pool holds exactly `addrs`, in order. */
  sameAddresses(addrs: readonly Int32Array[]): boolean {
    return addrs.length === this.count && addrs.every((a, i) => a.every((w, k) => w === this.addrs[i * 4 + k]));
  }

  /**
   * Choose a local address and a port for a session of client shard `shard` (one of this
   * worker's, dataplane/shard.ts clientShard) toward the real server already written into
   * the OUT lookup `key` (key[0] meta, key[1] high half rport, key[2,4,6,8] RIP). Writes the
   * LIP into key[3,5,7,9] and the port into key[1]; returns the address index, or −1 when
   * every address tried has no free port in its probe windows.
   *
   * First a port of the client's shard, on any local address: the session's owner is then the
   * same on every node, whatever its workers. Only when that shard is full everywhere, a port
   * of another of the worker's shards (`otherShard` says so): one that every node of the pair
   * or cluster gives the client's shard's owner (PortCursors.period) if any is free, else any
   * other (`otherOwner`: a peer of another worker count cannot serve that session). At most
   * LPORT_PROBES_PER_LADDR ports per address in each pass.
   */
  acquire(table: SessionTable, key: Int32Array, blockWords: number, shard: number): number {
    const cursors = this.cursors;
    const stride = cursors.stride;
    const j = ((shard - cursors.worker) / cursors.workers) | 0;
    const first = shardPortFirst(shard);
    const count = portsFrom(first);
    const probes = Math.min(LPORT_PROBES_PER_LADDR, count);
    this.otherShard = false;
    this.otherOwner = false;
    for (let a = 0; a < this.count; a++) {
      const li = this.address(key, a);
      const c = this.slots[li]! * stride + j;
      let k = cursors.pos[c]!;
      for (let p = 0; p < probes; p++) {
        const port = first + k * SESSION_SHARDS;
        k = k + 1 === count ? 0 : k + 1;
        if (this.free(table, key, blockWords, port)) {
          cursors.pos[c] = k;
          return this.took(li);
        }
      }
      cursors.pos[c] = k;
    }
    let li = this.borrow(table, key, blockWords, j, true);
    if (li < 0 && cursors.period > 1) {
      li = this.borrow(table, key, blockWords, j, false);
      this.otherOwner = li >= 0;
    }
    if (li < 0) return -1;
    this.otherShard = true;
    return this.took(li);
  }

  /**
   * A port of another of the worker's shards than `j`, on any local address: of those every
   * node gives the same owner as `j` (`sameOwner`: j's class modulo the period), or of the
   * rest. In turn from where the last such session was placed (so one full shard's overflow
   * spreads over all of them), a port or two at each one's cursor. The address index, or −1.
   */
  private borrow(table: SessionTable, key: Int32Array, blockWords: number, j: number, sameOwner: boolean): number {
    const cursors = this.cursors;
    const shards = cursors.shards;
    const period = cursors.period;
    const cls = j % period;
    // The candidates by index: the class's shards cls, cls + period, ..., or every shard.
    const candidates = sameOwner ? Math.floor((shards - 1 - cls) / period) + 1 : shards;
    for (let a = 0; a < this.count; a++) {
      const li = this.address(key, a);
      const o = this.slots[li]! * cursors.stride;
      const next = cursors.pos[o + shards]!;
      // The class's first shard at or after the rotation's (every shard of the class in turn).
      const start = sameOwner ? Math.max(0, Math.ceil((next - cls) / period)) : next;
      let left = LPORT_PROBES_PER_LADDR;
      for (let t = 0; t < candidates && left > 0; t++) {
        const m = (start + t) % candidates;
        const jj = sameOwner ? cls + m * period : m;
        if (jj === j || (!sameOwner && jj % period === cls)) continue;
        const otherFirst = shardPortFirst(cursors.worker + jj * cursors.workers);
        const otherCount = portsFrom(otherFirst);
        let k = cursors.pos[o + jj]!;
        for (let p = 0; p < OTHER_SHARD_PROBES && left > 0; p++, left--) {
          const port = otherFirst + k * SESSION_SHARDS;
          k = k + 1 === otherCount ? 0 : k + 1;
          if (this.free(table, key, blockWords, port)) {
            cursors.pos[o + jj] = k;
            cursors.pos[o + shards] = jj + 1 === shards ? 0 : jj + 1;
            return li;
          }
        }
        cursors.pos[o + jj] = k;
      }
    }
    return -1;
  }

  /** Write the a-th address from the turn's into the key; its index. */
  private address(key: Int32Array, a: number): number {
    const li = (this.nextLaddr + a) % this.count;
    const o = li * 4;
    key[3] = this.addrs[o]!;
    key[5] = this.addrs[o + 1]!;
    key[7] = this.addrs[o + 2]!;
    key[9] = this.addrs[o + 3]!;
    return li;
  }

  /** Is `port` free toward the key's real server on its address? (Written into the key,
   * its hash kept.) */
  private free(table: SessionTable, key: Int32Array, blockWords: number, port: number): boolean {
    key[1] = (key[1]! & ~0xffff) | port;
    const hash = table.hashKey(key, blockWords);
    if (table.find(key, blockWords, DIR_OUT, hash) >= 0) return false;
    this.lastPort = port;
    this.lastHash = hash;
    return true;
  }

  /** Address `li` was taken: the next session starts at the next one. */
  private took(li: number): number {
    this.nextLaddr = (li + 1) % this.count;
    return li;
  }
}
