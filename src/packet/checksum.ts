/**
 * Internet checksum (RFC 1071) and its incremental update (RFC 1624, eqn. 3).
 *
 * A rewrite never recomputes a whole checksum: it accumulates `~old + new` for each 16-bit
 * word it changes and applies the sum once. Full sums are used where the packet is rare
 * (ICMP errors, segments the LB writes), where a region moves (TCP options when TOA is
 * inserted: the option bytes are summed before and after), and where a packet is cut or
 * completed in software (TUNNEL's GSO: nat/gso.ts); sumWords reads long runs as 32-bit words.
 *
 *   acc = csumStart(field)            ~HC
 *   acc = csumReplace32(acc, old, new) += ~m + m'   (per changed word)
 *   field = csumFinish(acc)           ~fold(acc)
 */

/** Fold a non-negative sum of 16-bit words (< 2^31) to 16 bits with end-around carry. */
export function fold16(sum: number): number {
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** Whether this host stores words little-endian (x86, ARM as Linux runs them). */
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** From this many bytes on, sumWords reads 32-bit words: a segment's payload (TUNNEL's
 * software GSO sums every one) in a quarter of the loads; below, the view costs more. */
const SUM_WIDE_MIN_BYTES = 128;

/**
 * Sum of the big-endian 16-bit words of buf[off, off + len); an odd last byte counts as the
 * high byte of a word padded with zero. Returns a folded (not complemented) 16-bit sum.
 * `off` may be odd: words are taken from `off`, as the checksum defines them.
 */
export function sumWords(buf: Uint8Array, off: number, len: number): number {
  const at = buf.byteOffset + off;
  if (len >= SUM_WIDE_MIN_BYTES && (at & 1) === 0 && LITTLE_ENDIAN) return sumWide(buf, off, len, at);
  return sumBytes(buf, off, len);
}

function sumBytes(buf: Uint8Array, off: number, len: number): number {
  let sum = 0;
  let i = off;
  const evenEnd = off + (len & ~1);
  while (i < evenEnd) {
    // 16384 words of at most 0xffff stay below 2^31: fold between chunks.
    const chunkEnd = Math.min(evenEnd, i + 32768);
    for (; i < chunkEnd; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
    sum = fold16(sum);
  }
  if ((len & 1) !== 0) sum += buf[off + len - 1]! << 8;
  return fold16(sum);
}

/**
 * sumWords of an even `at` (buf's byte offset + off) on a little-endian host: the aligned
 * middle as native 32-bit words. Each is congruent (mod 0xffff) to its two byte-swapped
 * 16-bit words, and the ones' complement sum of byte-swapped words is the byte-swapped sum
 * (RFC 1071, byte order independence): add them up (exact in a double), fold, swap back.
 */
function sumWide(buf: Uint8Array, off: number, len: number, at: number): number {
  const head = at & 2; // a word before the 4-byte boundary (the pairing stays that of `off`)
  const words = (len - head) >>> 2;
  const u32 = new Uint32Array(buf.buffer, at + head, words);
  let s = 0;
  for (let k = 0; k < words; k++) s += u32[k]!;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  let sum = ((s & 0xff) << 8) | (s >>> 8);
  if (head !== 0) sum += (buf[off]! << 8) | buf[off + 1]!;
  const tail = off + head + words * 4;
  return fold16(sum + sumBytes(buf, tail, off + len - tail));
}

/** Folded sum of the TCP/UDP pseudo-header of the IP packet at `l3` (IPv4 when `v4`): both
 * addresses as they stand in its header, protocol `proto`, upper-layer length `len`. */
export function pseudoHeaderSum(buf: Uint8Array, l3: number, v4: boolean, proto: number, len: number): number {
  return fold16(sumWords(buf, l3 + (v4 ? 12 : 8), v4 ? 8 : 32) + proto + len);
}

/** The checksum field value for a folded sum that covers every word (pseudo-header included). */
export function csumFromSum(sum: number): number {
  return ~fold16(sum) & 0xffff;
}

/** Begin an incremental update of a stored checksum. */
export function csumStart(field: number): number {
  return ~field & 0xffff;
}

/** Account for the 16-bit word `old` being replaced by `neu`. */
export function csumReplace16(acc: number, old: number, neu: number): number {
  return acc + (0xffff - (old & 0xffff)) + (neu & 0xffff);
}

/** Account for the 32-bit value `old` (int32 or uint32) being replaced by `neu`. */
export function csumReplace32(acc: number, old: number, neu: number): number {
  return acc + (0xffff - (old >>> 16)) + (0xffff - (old & 0xffff)) + (neu >>> 16) + (neu & 0xffff);
}

/** Account for a region whose folded word sum went from `oldSum` to `newSum`. */
export function csumReplaceSum(acc: number, oldSum: number, newSum: number): number {
  return acc + (0xffff - fold16(oldSum)) + fold16(newSum);
}

/** Finish an incremental update: the value to store in the checksum field. */
export function csumFinish(acc: number): number {
  // acc stays far below 2^31 (a few dozen words per update), so two folds suffice.
  return ~fold16(acc) & 0xffff;
}

/**
 * A partial checksum field (CHECKSUM_PARTIAL / virtio NEEDS_CSUM) holds the folded
 * pseudo-header sum, not complemented. Updating it is the same ones'-complement arithmetic
 * without the complements: start from the field, add ~old + new, fold.
 */
export function partialStart(field: number): number {
  return field;
}

export function partialFinish(acc: number): number {
  return fold16(acc);
}
