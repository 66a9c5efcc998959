/**
 * What an HA node does, as two words in shared memory that the main thread writes and every
 * forwarder reads once per burst (no message, no lock):
 *
 *   FORWARDING  the node forwards packets. A pair's standby does not (its packets are dropped
 *               with reason `standby`); a cluster node always does.
 *   PUBLISHING  the node publishes the sessions it owns to its peers (ha/publisher.ts). A
 *               pair's master does; a cluster node always does.
 *
 * In a pair both follow keepalived's role; in a cluster both are always on. Keeping them apart
 * is what lets one sync design serve both (docs/cluster.md).
 */

import type { HaMode } from '../config/config.js';

const W_FORWARDING = 0;
const W_PUBLISHING = 1;
const WORDS = 2;

export type Role = 'master' | 'backup' | 'fault';

export class HaControl {
  readonly sab: SharedArrayBuffer;
  private readonly words: Int32Array;

  constructor(sab?: SharedArrayBuffer) {
    this.sab = sab ?? new SharedArrayBuffer(WORDS * 4);
    if (this.sab.byteLength < WORDS * 4) throw new RangeError('HA control words: buffer too small');
    this.words = new Int32Array(this.sab, 0, WORDS);
  }

  get forwarding(): boolean {
    return Atomics.load(this.words, W_FORWARDING) !== 0;
  }

  get publishing(): boolean {
    return Atomics.load(this.words, W_PUBLISHING) !== 0;
  }

  set(forwarding: boolean, publishing: boolean): void {
    Atomics.store(this.words, W_FORWARDING, forwarding ? 1 : 0);
    Atomics.store(this.words, W_PUBLISHING, publishing ? 1 : 0);
  }

  /** The words for a mode and (pair only) a role. */
  apply(mode: HaMode, role: Role): void {
    const on = mode === 'cluster' || role === 'master';
    this.set(on, on);
  }
}
