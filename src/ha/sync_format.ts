/**
 * Sync-record formats, so that a cluster or a pair can be upgraded one node at a time
 * without losing a session.
 *
 *   formats     every format this version reads and writes, and what each added. A newer
 *               format only appends words to the previous one, so an older record is a
 *               newer one with its new words missing (0: "not known", which the engine
 *               reads as the older behaviour), and a newer record cut short is an older one.
 *   choose      the format a node publishes: the newest one that it and every registered
 *               node read. A node of an older version registers no range and reads only
 *               format 2. While such a node is in the registry (alive, or stopped on its
 *               way to the new version) everyone publishes what it reads; once it comes
 *               back upgraded, the next heartbeat moves every publisher to the newer format
 *               (a resync rewrites its hash in it).
 *   toWire      the data plane's records (SYNC_FORMAT) as the format published.
 *   fromWire    a peer's records, of any format this version reads, as SYNC_FORMAT.
 *
 * The data plane (ha/session_sync.ts) knows SYNC_FORMAT only; the conversions run on the
 * main thread, and cost nothing while every node runs the newest format.
 */

import { EVENT_WORDS, SYNC_FORMAT, SYNC_WORDS } from './session_sync.js';

/** Words of a sync record, by format. 2: the session record's line 1 (to EXPIRE), the IPv6
 * key words and the SYN proxy's two per-packet words. 3: + the acks that cover each side's
 * FIN (record words 39–40), so a copy waits for both FINs to be acknowledged as its owner
 * does (nat/session.ts finsAcked). */
const WORDS_OF: Readonly<Record<number, number>> = { 2: 28, 3: SYNC_WORDS };

/** The oldest format this version reads and can publish. */
export const SYNC_FORMAT_OLDEST = 2;

/** The formats a node reads, oldest to newest (a range: every format between them too). */
export type FormatRange = readonly [oldest: number, newest: number];

/** This version's range. */
export const SYNC_FORMATS: FormatRange = [SYNC_FORMAT_OLDEST, SYNC_FORMAT];

/** What a node registered with no range reads: it is of a version before ranges. */
export const LEGACY_FORMATS: FormatRange = [2, 2];

/** Words of a record of `format`, or undefined when this version does not know it. */
export function recordWords(format: number): number | undefined {
  return WORDS_OF[format];
}

/** Formats by record size in bytes (what a hash value says of itself). */
const FORMAT_OF_BYTES: ReadonlyMap<number, number> = new Map(
  Object.entries(WORDS_OF).map(([f, w]) => [w * 4, Number(f)]),
);

/** The format of a record of `bytes` bytes (a hash value), or undefined. Called per record
 * of a peer's hash: a lookup, not a walk over the formats. */
export function formatOfRecord(bytes: number): number | undefined {
  return FORMAT_OF_BYTES.get(bytes);
}

export interface FormatChoice {
  format: number;
  /** The nodes that keep it below this node's newest (none: it is the newest). */
  heldBy: number[];
  /** A node with no format in common with this one (its records cannot be exchanged). */
  incompatible: number[];
}

/**
 * The newest format within `own` that every peer's range contains. A peer with no format
 * in common is left out of the choice and named in `incompatible`.
 */
export function chooseFormat(own: FormatRange, peers: { id: number; formats: FormatRange }[]): FormatChoice {
  const incompatible: number[] = [];
  let newest = own[1];
  const heldBy: number[] = [];
  for (const p of peers) {
    if (p.formats[1] < own[0] || p.formats[0] > own[1]) {
      incompatible.push(p.id);
      continue;
    }
    if (p.formats[1] < newest) newest = p.formats[1];
  }
  for (const p of peers) {
    if (incompatible.includes(p.id)) continue;
    // A peer that reads only newer formats than another peer: no format serves both.
    if (p.formats[0] > newest) incompatible.push(p.id);
    else if (p.formats[1] === newest && newest < own[1]) heldBy.push(p.id);
  }
  return { format: newest, heldBy, incompatible };
}

/**
 * Items of `fromWords`-word records, each `skip` words in (events: 1, past the op word;
 * records: 0), as items of `toWords`-word records: an older format's new words are 0, a newer
 * format's extra words are cut. The same array when the formats are the same.
 */
function convert(src: Int32Array, skip: number, fromWords: number, toWords: number): Int32Array {
  if (fromWords === toWords) return src;
  const n = src.length / (skip + fromWords);
  const common = skip + Math.min(fromWords, toWords);
  const out = new Int32Array(n * (skip + toWords));
  for (let i = 0; i < n; i++) {
    const from = i * (skip + fromWords);
    out.set(src.subarray(from, from + common), i * (skip + toWords));
  }
  return out;
}

const OP_WORDS = EVENT_WORDS - SYNC_WORDS;

/** Bytes of one event (op + record) of `format` (one this version reads) on the wire. */
export function wireEventBytes(format: number): number {
  return (OP_WORDS + recordWords(format)!) * 4;
}

/** The data plane's events (op + record) as `format`'s events. */
export function eventsToWire(events: Int32Array, format: number): Int32Array {
  return convert(events, OP_WORDS, SYNC_WORDS, recordWords(format)!);
}

/** The data plane's records as `format`'s. */
export function recordsToWire(records: Int32Array, format: number): Int32Array {
  return convert(records, 0, SYNC_WORDS, recordWords(format)!);
}

/** A peer's events of `format` (one this version reads) as the data plane's. */
export function eventsFromWire(events: Int32Array, format: number): Int32Array {
  return convert(events, OP_WORDS, recordWords(format)!, SYNC_WORDS);
}

/** A peer's records of `format` (one this version reads) as the data plane's. */
export function recordsFromWire(records: Int32Array, format: number): Int32Array {
  return convert(records, 0, recordWords(format)!, SYNC_WORDS);
}

/** Can this version read `format`? */
export function readable(format: number, own: FormatRange = SYNC_FORMATS): boolean {
  return format >= own[0] && format <= own[1] && recordWords(format) !== undefined;
}
