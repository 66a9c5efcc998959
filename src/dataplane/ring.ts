/**
 * A burst ring: fixed-size packet slots plus per-slot length, verdict and aux words, all
 * in one SharedArrayBuffer so the native TUN addon, the worker and (for redirects) another
 * worker can share it without copies.
 *
 *   +--------------------------+-------------+----------------+------------+
 *   | slots × slotSize bytes   | lens (i32)  | verdicts (i32) | aux (i32)  |
 *   +--------------------------+-------------+----------------+------------+
 *
 * Slot i holds one IP packet at offset i × slotSize + headroom, its length (headroom
 * included) in lens[i]. With TUN offloads the headroom is the virtio_net_hdr the kernel
 * puts in front of every packet (VNET_HDR_LEN bytes; flags, GSO type, checksum offsets). After
 * `Engine.processBurst` lens[i] is the length to write, verdicts[i] a VERDICT_* value, and
 * aux[i] the drop reason (VERDICT_DROP) or the owner worker (VERDICT_REDIRECT).
 */

import { SLOT_SIZE_BYTES } from '../constants.js';

export class PacketRing {
  readonly sab: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly lens: Int32Array;
  readonly verdicts: Int32Array;
  readonly aux: Int32Array;
  /** The whole buffer as bytes (how the native addon receives the ring). */
  readonly whole: Uint8Array;

  constructor(
    readonly slots: number,
    readonly slotSize: number = SLOT_SIZE_BYTES,
    sab?: SharedArrayBuffer,
    /** Bytes before the IP header in each slot (0, or VNET_HDR_LEN with offloads). */
    readonly headroom = 0,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError('a ring needs at least one slot');
    if (slotSize % 8 !== 0) throw new RangeError('slot size must be a multiple of 8');
    const dataBytes = slots * slotSize;
    const total = dataBytes + slots * 12;
    this.sab = sab ?? new SharedArrayBuffer(total);
    if (this.sab.byteLength !== total) throw new RangeError('ring buffer size does not match its geometry');
    this.bytes = new Uint8Array(this.sab, 0, dataBytes);
    this.view = new DataView(this.sab, 0, dataBytes);
    this.lens = new Int32Array(this.sab, dataBytes, slots);
    this.verdicts = new Int32Array(this.sab, dataBytes + slots * 4, slots);
    this.aux = new Int32Array(this.sab, dataBytes + slots * 8, slots);
    this.whole = new Uint8Array(this.sab);
  }

  /** Copy an IP packet into slot i behind `header` (or a zero header of `headroom` bytes). */
  put(i: number, packet: Uint8Array, header?: Uint8Array): void {
    const h = this.headroom;
    if (packet.length + h > this.slotSize)
      throw new RangeError(`packet of ${packet.length} bytes exceeds the slot size`);
    const off = i * this.slotSize;
    this.bytes.fill(0, off, off + h);
    if (header) this.bytes.set(header.subarray(0, h), off);
    this.bytes.set(packet, off + h);
    this.lens[i] = packet.length + h;
  }

  /** A copy of the IP packet in slot i (without the headroom). */
  get(i: number): Uint8Array {
    const off = i * this.slotSize;
    return this.bytes.slice(off + this.headroom, off + this.lens[i]!);
  }
}
