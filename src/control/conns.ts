/** `tunvs conns`: sessions like `ipvsadm -Lnc`, filtered by VIP, client, real server, state. */

import type { SessionInfo } from '../dataplane/engine.js';
import type { ConnFilter } from './forwarder_protocol.js';

function hostPort(a: string, p: number): string {
  return a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`;
}

/** "addr" matches any port; "addr:port" or "[v6]:port" both. */
function addrMatches(want: string | undefined, addr: string, port: number): boolean {
  if (want === undefined) return true;
  return want === addr || want === hostPort(addr, port) || (want.startsWith('[') && want === `[${addr}]`);
}

export function matchesConn(s: SessionInfo, f: ConnFilter): boolean {
  return (
    addrMatches(f.vip, s.vip, s.vport) &&
    addrMatches(f.client, s.client, s.cport) &&
    addrMatches(f.server, s.rip, s.rport) &&
    (f.state === undefined || s.state === f.state.toUpperCase())
  );
}

export function formatConns(list: readonly SessionInfo[]): string {
  const rows = [['pro', 'expire', 'state', 'source', 'virtual', 'local', 'destination']];
  for (const s of list) {
    const sec = Math.max(0, Math.round(s.expiresInMs / 1000));
    rows.push([
      s.protocol.toUpperCase(),
      `${Math.floor(sec / 60)}:${String(sec % 60).padStart(2, '0')}`,
      s.state,
      hostPort(s.client, s.cport),
      hostPort(s.vip, s.vport),
      hostPort(s.laddr, s.lport),
      hostPort(s.rip, s.rport),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join(' ')
        .trimEnd(),
    )
    .join('\n');
}
