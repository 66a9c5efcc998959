/**
 * Packets not addressed to a service: a real server's reply (to a local address in
 * FULLNAT, to the client in NAT) goes to its session's mode (modes/), and ends a FULLNAT
 * session of a one-packet service's datagram; anything else is dropped with the reason
 * missReason names.
 */

import { DIR_OUT, recMode, recService, RECORD_WORDS } from '../conn/layout.js';
import type { NatContext } from './context.js';
import { endSession } from './session.js';
import { MODE_FULLNAT } from './modes/mode.js';
import { DROP_NO_SERVICE, DROP_NO_SESSION, DROP_NOT_LOCAL } from './verdict.js';

/**
 * RS → LIP packet, a NAT real server's reply to a client, or anything else not addressed
 * to a service; `hash` is the hash of its key.
 * Returns the new packet length, or −reason.
 */
export function natOutbound(c: NatContext, hash: number): number {
  const table = c.table;
  const key = c.key;
  const blockWords = c.fillKey(key);
  const r = table.find(key, blockWords, DIR_OUT, hash);
  if (r < 0) return -missReason(c);
  const rec = table.rec;
  const base = r * RECORD_WORDS;
  const mode = recMode(rec, base);
  const len = c.modes[mode]!.outbound(c, r);
  // The reply to a one-packet service's datagram (ServiceSpec.onePacket) ends the datagram's
  // FULLNAT session, and frees its local port. A NAT one is the client socket's with that
  // server, shared by its datagrams to it: it waits.
  if (len > 0 && mode === MODE_FULLNAT && c.services.onePacket[recService(rec, base)] === 1) endSession(c, r);
  return len;
}

/** Why a packet that matched neither a service nor a session is dropped. */
export function missReason(c: NatContext): number {
  const s = c.services;
  if (s.isLocalAddress(c.pAf, c.pD0, c.pD1, c.pD2, c.pD3)) return DROP_NO_SESSION;
  if (s.isVip(c.pAf, c.pD0, c.pD1, c.pD2, c.pD3)) return DROP_NO_SERVICE;
  return DROP_NOT_LOCAL;
}
