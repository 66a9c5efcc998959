/** `tunvs conns`: sessions like `ipvsadm -Lnc`, filtered by protocol, VIP, client, real server, state;
 * persistence templates among them as ipvsadm shows them (client prefix, port 0), in state
 * TEMPLATE. */

import { setImmediate as nextTurn } from 'node:timers/promises';
import { CONNS_SLICE_SESSIONS } from '../constants.js';
import { STATE_NAMES } from '../conn/state.js';
import type { TemplateInfo } from '../conn/templates.js';
import type { Engine, SessionInfo } from '../dataplane/engine.js';
import { formatAddress, hostPort } from '../service/addr.js';
import { templateNamers, type ResolvedService } from '../service/service.js';
import type { ConnFilter } from './forwarder_protocol.js';

/** "addr" matches any port; "addr:port" or "[v6]:port" both. */
function addrMatches(want: string | undefined, addr: string, port: number): boolean {
  if (want === undefined) return true;
  return want === addr || want === hostPort(addr, port) || (want.startsWith('[') && want === `[${addr}]`);
}

/** The states a session can be listed in (ipvsadm's names; TEMPLATE: persistence templates). */
const LISTED_STATES = [...STATE_NAMES.filter((n) => n !== 'NONE'), 'TEMPLATE'];

/** Whether a filter can match only persistence templates (the main thread's table): then no
 * forwarder need scan its sessions for it. */
export function templatesOnly(f: ConnFilter): boolean {
  return f.state !== undefined && String(f.state).toUpperCase() === 'TEMPLATE';
}

/** What is wrong with a filter (a protocol or a state no session has), or undefined. */
export function connFilterError(f: ConnFilter): string | undefined {
  if (f.protocol !== undefined && !/^(tcp|udp)$/i.test(String(f.protocol)))
    return `protocol must be tcp or udp, not ${String(f.protocol)}`;
  if (f.state !== undefined && !LISTED_STATES.includes(String(f.state).toUpperCase()))
    return `state must be one of ${LISTED_STATES.join(', ')} (any case), not ${String(f.state)}`;
  return undefined;
}

export function matchesConn(s: SessionInfo, f: ConnFilter): boolean {
  return (
    (f.protocol === undefined || s.protocol === f.protocol.toLowerCase()) &&
    addrMatches(f.vip, s.vip, s.vport) &&
    addrMatches(f.client, s.client, s.cport) &&
    addrMatches(f.server, s.rip, s.rport) &&
    (f.state === undefined || s.state === f.state.toUpperCase())
  );
}

/** A forwarder's sessions that match `f`, at most `limit` (`more`: others matched too),
 * described CONNS_SLICE_SESSIONS at a time with the thread's packets served in between. A
 * session made or ended meanwhile may or may not be listed, as with ipvsadm -Lnc. */
export async function collectConns(
  engine: Pick<Engine, 'sessionIds' | 'describe'>,
  f: ConnFilter,
  limit: number,
): Promise<{ sessions: SessionInfo[]; more: boolean }> {
  const sessions: SessionInfo[] = [];
  let seen = 0;
  for (const r of engine.sessionIds()) {
    const info = engine.describe(r);
    if (matchesConn(info, f)) {
      if (sessions.length >= limit) return { sessions, more: true };
      sessions.push(info);
    }
    if (++seen % CONNS_SLICE_SESSIONS === 0) await nextTurn();
  }
  return { sessions, more: false };
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
      s.laddr === '-' ? '-' : hostPort(s.laddr, s.lport),
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

/** Templates as `tunvs conns` rows (SessionInfo's shape; id −1 − slot; local: "-"). */
export function templateRows(list: readonly TemplateInfo[], services: readonly ResolvedService[]): SessionInfo[] {
  const byId = new Map(services.map((s) => [s.id, s]));
  const namers = templateNamers(services);
  // A persistence group's template is shown under the service that names it, its server any
  // service's.
  const servers = new Map(services.flatMap((s) => s.realServers.map((r) => [r.id, r] as const)));
  return list.map((t) => {
    const s = byId.get(namers.get(t.key) ?? -1);
    const rs = servers.get(t.realServerId);
    return {
      id: -1 - t.slot,
      protocol: s?.proto === 17 ? 'udp' : 'tcp',
      state: 'TEMPLATE',
      client: formatAddress(t.af, t.client),
      cport: 0,
      vip: s?.vipText ?? '?',
      vport: s?.port ?? 0,
      laddr: '-',
      lport: 0,
      rip: rs?.address ?? `server#${t.realServerId}`,
      rport: rs?.port ?? 0,
      serviceId: s?.id ?? -1,
      realServerId: t.realServerId,
      mode: s?.mode ?? '?',
      seqDelta: 0,
      rsIsnPlus1: undefined,
      toaOpen: false,
      clientAck: 0,
      rsAck: 0,
      tsDelta: 0,
      proxied: false,
      srvDelta: 0,
      expiresInMs: t.expiresInMs,
      synced: false,
      owner: 0,
      sessions: t.sessions,
    };
  });
}
