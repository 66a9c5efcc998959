/**
 * A burst ring: packet slots plus per-slot length, verdict, aux and offset words, all in one
 * buffer so the native addon and the worker share it without copies.
 *
 *   +--------------------------+-------------+----------------+------------+---------------+
 *   | packet area              | lens (i32)  | verdicts (i32) | aux (i32)  | offsets (i32) |
 *   +--------------------------+-------------+----------------+------------+---------------+
 *
 * Slot i starts at offsets[i] in the packet area and has slotSize bytes. In a plain ring
 * (a SharedArrayBuffer) the area is slots × slotSize bytes and offsets[i] = i × slotSize,
 * fixed. In an AF_XDP ring (`PacketRing.overFrames`) the area is the UMEM: the native queue
 * sets offsets[i] to wherever the kernel put the burst's i-th packet, and the engine rewrites
 * it there. Slot i holds one IP packet at offsets[i] + headroom, its length (headroom
 * included) in lens[i]. With TUN offloads the headroom is the virtio_net_hdr the kernel
 * puts in front of every packet (VNET_HDR_LEN bytes; flags, GSO type, checksum offsets). After
 * `Engine.processBurst` lens[i] is the length to write, verdicts[i] a VERDICT_* value, and
 * aux[i] the drop reason (VERDICT_DROP) or the owner worker (VERDICT_REDIRECT).
 */

import { SLOT_SIZE_BYTES } from '../constants.js';

/** Bytes of per-slot words after the packet area: lens, verdicts, aux, offsets. */
const WORDS_PER_SLOT_BYTES = 16;

export class PacketRing {
  readonly sab: SharedArrayBuffer | ArrayBuffer;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly lens: Int32Array;
  readonly verdicts: Int32Array;
  readonly aux: Int32Array;
  /** Where each slot starts in `bytes`. */
  readonly offsets: Int32Array;
  /** The whole buffer as bytes (how the native addon receives the ring). */
  readonly whole: Uint8Array;

  constructor(
    readonly slots: number,
    readonly slotSize: number = SLOT_SIZE_BYTES,
    sab?: SharedArrayBuffer,
    /** Bytes before the IP header in each slot (0, or VNET_HDR_LEN with offloads). */
    readonly headroom = 0,
    /** An AF_XDP ring: the packet area is the first `frameBytes` bytes of `frames`. */
    frames?: { buffer: ArrayBuffer; frameBytes: number },
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError('a ring needs at least one slot');
    if (slotSize % 8 !== 0 && !frames) throw new RangeError('slot size must be a multiple of 8');
    const dataBytes = frames ? frames.frameBytes : slots * slotSize;
    const total = dataBytes + slots * WORDS_PER_SLOT_BYTES;
    this.sab = frames?.buffer ?? sab ?? new SharedArrayBuffer(total);
    if (frames ? this.sab.byteLength < total : this.sab.byteLength !== total)
      throw new RangeError('ring buffer size does not match its geometry');
    this.bytes = new Uint8Array(this.sab, 0, dataBytes);
    this.view = new DataView(this.sab, 0, dataBytes);
    this.lens = new Int32Array(this.sab, dataBytes, slots);
    this.verdicts = new Int32Array(this.sab, dataBytes + slots * 4, slots);
    this.aux = new Int32Array(this.sab, dataBytes + slots * 8, slots);
    this.offsets = new Int32Array(this.sab, dataBytes + slots * 12, slots);
    if (!frames) for (let i = 0; i < slots; i++) this.offsets[i] = i * slotSize;
    this.whole = new Uint8Array(this.sab);
  }

  /**
   * The ring of an AF_XDP queue (native/xdp.c): `buffer` is its UMEM of `frameBytes` bytes
   * followed by the burst's words; each slot has `slotSize` bytes from its offset (the room
   * between where the kernel puts a packet in its frame and the frame's end).
   */
  static overFrames(buffer: ArrayBuffer, frameBytes: number, burst: number, slotSize: number): PacketRing {
    return new PacketRing(burst, slotSize, undefined, 0, { buffer, frameBytes });
  }

  /** Copy an IP packet into slot i behind `header` (or a zero header of `headroom` bytes). */
  put(i: number, packet: Uint8Array, header?: Uint8Array): void {
    const h = this.headroom;
    if (packet.length + h > this.slotSize)
      throw new RangeError(`packet of ${packet.length} bytes exceeds the slot size`);
    const off = this.offsets[i]!;
    this.bytes.fill(0, off, off + h);
    if (header) this.bytes.set(header.subarray(0, h), off);
    this.bytes.set(packet, off + h);
    this.lens[i] = packet.length + h;
  }

  /** A copy of the IP packet in slot i (without the headroom). */
  get(i: number): Uint8Array {
    const off = this.offsets[i]!;
    return this.bytes.slice(off + this.headroom, off + this.lens[i]!);
  }
}
