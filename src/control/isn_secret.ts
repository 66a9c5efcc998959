/**
 * The key of the ISN hash (nat/seq.ts). Real servers keep TIME_WAIT entries for the
 * (local address, port) tuples tunvs reuses, and take a new SYN on such a tuple only when its
 * sequence number is ahead of the old connection's. tunvs's ISNs are a keyed hash of the
 * tuple plus a clock, so they move ahead as long as the key stays the same: across restarts
 * (the key is kept in a file) and across the two LBs of a pair (they are given the same
 * key). With a fresh random key, about half of those SYNs were answered with the old
 * connection's ACK and the client retried a second later.
 */

import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/config.js';
import type { IsnKey } from '../nat/seq.js';

/** The 128-bit hash key (SHA-256 of the configured secret, or of the secret file's: created
 * with a random secret, mode 0600, when missing). A file that cannot be written is reported
 * and a random key is used for this run. */
export function isnKey(isn: Config['isn'], warn: (msg: string) => void): IsnKey {
  let secret: string;
  if ('secret' in isn) {
    secret = isn.secret;
  } else {
    try {
      secret = readFileSync(isn.secretFile, 'utf8').trim();
    } catch {
      secret = randomBytes(32).toString('hex');
      try {
        mkdirSync(dirname(isn.secretFile), { recursive: true, mode: 0o700 });
        writeFileSync(isn.secretFile, `${secret}\n`, { mode: 0o600, flag: 'wx' });
      } catch (e) {
        warn(
          `isn.secretFile ${isn.secretFile}: cannot create it (${(e as Error).message}); this run uses a key of its own, so right after the next restart some new connections may stall on the real servers' TIME_WAIT`,
        );
      }
    }
    if (secret.length < 16)
      throw new Error(`isn.secretFile ${isn.secretFile}: the secret in it is shorter than 16 characters`);
  }
  const d = createHash('sha256').update(secret).digest();
  return [d.readUInt32LE(0), d.readUInt32LE(4), d.readUInt32LE(8), d.readUInt32LE(12)];
}
