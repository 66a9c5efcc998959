/**
 * keepalived's notify FIFO (global_defs vrrp_notify_fifo): keepalived writes a line per
 * transition, e.g.
 *
 *   GROUP "tunvs" MASTER
 *   INSTANCE "upstream" BACKUP 249
 *
 * tunvs follows the sync group's lines; when it has never seen one (a single instance
 * without a group), the instance lines. Reading the FIFO directly saves spawning a notify
 * script per transition: the new master forwards as soon as keepalived decides.
 *
 * The FIFO is opened read-write, so it never reports end-of-file when keepalived restarts
 * (keepalived announces its state again when it is back).
 */

import { execFileSync } from 'node:child_process';
import { constants, existsSync, openSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Role } from './role.js';

/** The role a notify line asks for, and whether it came from a sync group; null: ignore. */
export function parseNotifyLine(line: string): { role: Role; group: boolean } | null {
  const m = /^(GROUP|INSTANCE)\s+"[^"]*"\s+(MASTER|BACKUP|FAULT|STOP|DELETED)\b/.exec(line.trim());
  if (!m) return null;
  const state = m[2]!;
  const role: Role = state === 'MASTER' ? 'master' : state === 'BACKUP' ? 'backup' : 'fault';
  return { role, group: m[1] === 'GROUP' };
}

/** Create the FIFO if needed and call `onRole` for every transition read from it. */
export function followNotifyFifo(path: string, onRole: (role: Role, line: string) => void): () => void {
  if (!existsSync(path)) execFileSync('mkfifo', ['-m', '0600', path]);
  if (!statSync(path).isFIFO()) throw new Error(`ha.notifyFifo: ${path} exists and is not a FIFO`);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  const sock = new Socket({ fd, readable: true, writable: false });
  let seenGroup = false;
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const n = parseNotifyLine(line);
      if (!n) continue;
      if (n.group) seenGroup = true;
      else if (seenGroup) continue;
      onRole(n.role, line.trim());
    }
  });
  return () => sock.destroy();
}
