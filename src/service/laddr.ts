/**
 * Local address (LIP) pool of one service, as seen by one worker.
 *
 * FULLNAT replaces the client's address by a local address and port. Ports 1025–65535 are
 * partitioned between workers by `port % workers == worker`, so a reply from a real server
 * (addressed to LIP:lport) can be steered to the worker owning the session from the
 * destination port alone, with no table shared between workers (DPVS's sa_pool idea).
 * A LIP:lport pair is reused toward different real servers: it only has to be unique per
 * (RIP, rport), which the session table's OUT index answers directly.
 *
 * Ports are handed out in turn, so a tuple comes back as late as possible: the real server
 * may still hold its last use in TIME_WAIT (docs/config.md, "ISN key"). The turn is per
 * local address, shared by every service that uses the address (PortCursors): two services
 * with their own cursors on one address and one real server would hand out each other's
 * recent tuples. A cursor does not start at the first port, where the previous process
 * started too, but where a clock sweeping the range once per LPORT_SWEEP_SEC stands: a
 * previous process that handed out ports no faster than the sweep used only ports behind
 * it. A standby that becomes master does the same (restartAt): the old master's last ports
 * are behind the sweep as well.
 */

import { LPORT_MAX, LPORT_MIN, LPORT_PROBES_PER_LADDR, LPORT_SWEEP_SEC } from '../constants.js';
import { DIR_OUT } from '../conn/layout.js';
import type { SessionTable } from '../conn/table.js';

/** Where the sweep stands at `nowMs` (wall-clock ms), as a port index of a worker's share. */
function sweepAt(nowMs: number, portCount: number): number {
  return portCount > 0 ? Math.floor((nowMs / 1000 / LPORT_SWEEP_SEC) * portCount) % portCount : 0;
}

/** A worker's share of ports 1025–65535 (`port % workers == worker`) and its cursors: one
 * per local address, whichever services use it. */
export class PortCursors {
  readonly portFirst: number;
  readonly portStep: number;
  readonly portCount: number;
  /** Next port index to try, by cursor slot. */
  readonly pos: number[] = [];
  private readonly slots = new Map<string, number>();

  constructor(worker: number, workers: number) {
    this.portStep = workers;
    this.portFirst = LPORT_MIN + ((((worker - LPORT_MIN) % workers) + workers) % workers);
    this.portCount = this.portFirst > LPORT_MAX ? 0 : Math.floor((LPORT_MAX - this.portFirst) / workers) + 1;
  }

  /** The slot of address `addr` (4 words): an existing one, or a new one at the sweep. */
  slot(addr: Int32Array, nowMs: number): number {
    const key = `${addr[0]},${addr[1]},${addr[2]},${addr[3]}`;
    let slot = this.slots.get(key);
    if (slot === undefined) {
      slot = this.pos.length;
      this.pos.push(sweepAt(nowMs, this.portCount));
      this.slots.set(key, slot);
    }
    return slot;
  }

  /** Every cursor continues from where the sweep stands at `nowMs` (a standby promoted). */
  restartAt(nowMs: number): void {
    this.pos.fill(sweepAt(nowMs, this.portCount));
  }
}

export class LocalAddressPool {
  readonly count: number;
  /** Addresses, 4 words each. */
  readonly addrs: Int32Array;
  readonly portFirst: number;
  readonly portStep: number;
  readonly portCount: number;
  /** Port chosen by the last successful acquire(). */
  lastPort = 0;
  /** OUT-key hash of the last successful acquire(), for the index insert. */
  lastHash = 0;
  /** Cursor slot (in `cursors`) of each address. */
  private readonly slots: Int32Array;
  private nextLaddr = 0;

  /** `cursors`: the worker's (its port share), shared with its other pools; `nowMs`:
   * wall-clock milliseconds (the forwarders' clock), where a new address's cursor starts. */
  constructor(
    addrs: readonly Int32Array[],
    private readonly cursors: PortCursors,
    nowMs: number,
  ) {
    this.count = addrs.length;
    this.addrs = new Int32Array(this.count * 4);
    addrs.forEach((a, i) => this.addrs.set(a.subarray(0, 4), i * 4));
    this.portFirst = cursors.portFirst;
    this.portStep = cursors.portStep;
    this.portCount = cursors.portCount;
    this.slots = Int32Array.from(addrs, (a) => cursors.slot(a, nowMs));
  }

  /** Whether this pool holds exactly `addrs`, in order. */
  sameAddresses(addrs: readonly Int32Array[]): boolean {
    return addrs.length === this.count && addrs.every((a, i) => a.every((w, k) => w === this.addrs[i * 4 + k]));
  }

  /** The k-th port of this worker's share. */
  portAt(k: number): number {
    return this.portFirst + k * this.portStep;
  }

  /**
   * Choose a local address and port for a session toward the real server already written
   * into the OUT lookup `key` (key[0] meta, key[1] high half rport, key[2,4,6,8] RIP).
   * Writes the LIP into key[3,5,7,9] and the port into key[1]; returns the address index,
   * or −1 when every address tried has no free port in its probe window.
   */
  acquire(table: SessionTable, key: Int32Array, blockWords: number): number {
    const probes = Math.min(LPORT_PROBES_PER_LADDR, this.portCount);
    const rportHigh = key[1]! & ~0xffff;
    for (let a = 0; a < this.count; a++) {
      const li = (this.nextLaddr + a) % this.count;
      const o = li * 4;
      key[3] = this.addrs[o]!;
      key[5] = this.addrs[o + 1]!;
      key[7] = this.addrs[o + 2]!;
      key[9] = this.addrs[o + 3]!;
      const slot = this.slots[li]!;
      let k = this.cursors.pos[slot]!;
      for (let p = 0; p < probes; p++) {
        const port = this.portFirst + k * this.portStep;
        k = k + 1 === this.portCount ? 0 : k + 1;
        key[1] = rportHigh | port;
        const hash = table.hashKey(key, blockWords);
        if (table.find(key, blockWords, DIR_OUT, hash) < 0) {
          this.cursors.pos[slot] = k;
          this.nextLaddr = (li + 1) % this.count;
          this.lastPort = port;
          this.lastHash = hash;
          return li;
        }
      }
      this.cursors.pos[slot] = k;
    }
    return -1;
  }
}
