/**
 * `tunvs check --config FILE`: the config a `tunvs run` or a reload (SIGHUP) would take,
 * checked without running anything (as `nginx -t`, `haproxy -c`, `keepalived -t`): the same
 * parsing and service validation as `tunvs run`, then what the file sets up, a service a
 * line, and what `tunvs run` would warn about. What only the machine can say (the XDP
 * interfaces, CAP_BPF, Redis) is not checked.
 *
 *   checkConfig: loadConfig → resolveServices → summary lines + configWarnings
 */

import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { ALL_PORTS } from '../constants.js';
import { AF_INET6, IPPROTO_TCP } from '../packet/headers.js';
import { hostPort } from '../service/addr.js';
import { IdRegistry, resolveServices, type ResolvedService } from '../service/service.js';
import { DEFAULTS, loadConfig, type Config } from './config.js';

/** What `tunvs run` warns about in a config it accepts (it logs them at start). */
export function configWarnings(config: Config): string[] {
  const out: string[] = [];
  if (config.ha && 'secretFile' in config.isn && config.isn.secretFile === DEFAULTS.isnSecretFile)
    out.push(
      config.ha.mode === 'pair'
        ? "ha: give both LBs of the pair the same isn.secret (or isn.secretFile): with keys of their own, new connections after a failover can collide with the real servers' TIME_WAIT entries of the old master and stall for a second, and handshakes the SYN proxy answered fail"
        : "ha: give every node of the cluster the same isn.secret (or isn.secretFile): with keys of their own, a handshake the SYN proxy answered fails when ECMP moves it to another node, and new connections on a dead node's local addresses can collide with the real servers' TIME_WAIT entries and stall for a second",
    );
  const routeHealth = config.ha?.mode === 'cluster' && config.ha.routeHealth !== 'off';
  config.services.forEach((s, i) => {
    const h = s.healthCheck;
    if (
      (s.quorum !== undefined || s.hysteresis !== undefined) &&
      !s.sorryServer &&
      !s.quorumUp &&
      !s.quorumDown &&
      !routeHealth
    )
      out.push(
        `services[${i}] (${s.name}): quorum and hysteresis are read by nothing here: they say when a sorryServer takes over, a quorumUp or quorumDown runs, or a cluster's ha.routeHealth withdraws the VIP`,
      );
    const programs: [string, string | undefined][] = [
      ['healthCheck.command', h?.type === 'exec' ? h.command?.[0] : undefined],
      ['healthCheck.notifyUp', h?.notifyUp?.[0]],
      ['healthCheck.notifyDown', h?.notifyDown?.[0]],
      ['quorumUp', s.quorumUp?.[0]],
      ['quorumDown', s.quorumDown?.[0]],
    ];
    for (const [field, program] of programs) {
      if (program === undefined) continue;
      const at = `services[${i}] (${s.name}): ${field} ${program}`;
      const why = notExecutable(program);
      if (why)
        out.push(
          field === 'healthCheck.command'
            ? `${at}: ${why}: every server of the service will fail its check`
            : `${at}: ${why}: it will not run`,
        );
      else if (h?.user === undefined) {
        const open = writableByOthers(program);
        if (open)
          out.push(
            `${at}: ${open} can be written by users other than root, and tunvs runs it as its own user: ` +
              "give the check a user, or make the path root's alone",
          );
      }
    }
  });
  return out;
}

/** Why `file` cannot be run as a check's program, or undefined when it can. */
function notExecutable(file: string): string | undefined {
  try {
    if (!statSync(file).isFile()) return 'not a file';
    accessSync(file, constants.X_OK);
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code === 'EACCES' ? 'not executable' : 'no such file';
  }
}

/** The first part of `file`'s real path that a user other than root could change (so change
 * what runs): the file or a directory not owned by root, or writable by its group or others
 * (a directory with the sticky bit, as /tmp, only lets them change their own names). As
 * keepalived's script security checks. */
function writableByOthers(file: string): string | undefined {
  const real = realpathSync(file);
  const parts = real.split('/').filter((p) => p !== '');
  for (let n = parts.length; n >= 0; n--) {
    const path = `/${parts.slice(0, n).join('/')}`;
    const st = statSync(path);
    const sticky = n < parts.length && (st.mode & 0o1000) !== 0;
    if (st.uid !== 0 || ((st.mode & 0o022) !== 0 && !sticky)) return path;
  }
  return undefined;
}

/** A TUNNEL service's encapsulation past IP-in-IP, in brackets. */
function tunnelText(s: ResolvedService): string {
  const t = s.tunnel;
  if (t === undefined) return '';
  if (t.type === 'gre') return ` (GRE${t.checksum ? ' with checksum' : ''})`;
  const csum = s.af === AF_INET6 || t.checksum ? 'with' : 'without';
  return ` (GUE to UDP port ${t.port}, ${csum} the UDP checksum)`;
}

/** One service as `tunvs list` names it, with what it forwards to. */
function serviceLine(s: ResolvedService): string {
  const n = (count: number, what: string): string => `${count} ${what}${count === 1 ? '' : 's'}`;
  const parts = [
    `${s.proto === IPPROTO_TCP ? 'TCP' : 'UDP'} ${hostPort(s.vipText, s.port)}${s.port === ALL_PORTS ? ' (every port)' : ''}`,
    s.mode + tunnelText(s),
    s.scheduler +
      (s.hashPort || s.hashFallback
        ? ` (${[s.hashFallback ? 'fallback' : '', s.hashPort ? 'port' : ''].filter((x) => x).join(', ')})`
        : ''),
    n(s.realServers.filter((r) => !r.sorry).length, 'real server'),
    ...(s.realServers.at(-1)?.sorry ? ['a sorry server'] : []),
    ...(s.laddrs.length > 0 ? [n(s.laddrs.length, 'local address')] : []),
    ...(s.persistence
      ? [
          `persistent ${s.persistence.timeoutSec}` +
            (s.persistence.group !== undefined ? ` (group ${s.persistence.group})` : ''),
        ]
      : []),
    ...(s.onePacket ? ['each datagram scheduled alone'] : []),
    ...(s.idleTimeoutSec > 0 ? [`${s.onePacket ? 'reply wait' : 'idle'} ${s.idleTimeoutSec} s`] : []),
    ...(s.healthCheck ? [`${s.healthCheck.type} check`] : []),
  ];
  return `  ${s.name}: ${parts.join(', ')}`;
}

/** The report on config file `file`; throws its ConfigError when the file is refused. */
export function checkConfig(file: string): string {
  const config = loadConfig(file);
  const services = resolveServices(config.services, new IdRegistry());
  const io = config.io === 'xdp' ? `io xdp on ${config.xdp!.interfaces.join(', ')} (${config.xdp!.mode})` : `io tun`;
  const ha = config.ha
    ? `ha ${config.ha.mode} "${config.ha.cluster}", node ${config.ha.nodeId} (${config.ha.name}), ${
        'url' in config.ha.redis
          ? `Redis ${config.ha.redis.url}`
          : `Sentinel "${config.ha.redis.sentinel.name}" at ${config.ha.redis.sentinel.addresses.length} addresses`
      }${config.ha.mode === 'cluster' && config.ha.routeHealth !== 'off' ? `, route health ${config.ha.routeHealth}` : ''}`
    : 'no ha (a single LB)';
  const lines = [
    `${file}: OK`,
    `  ${io}, device ${config.tun.name} (mtu ${config.tun.mtu}), ${config.workers} workers, ${config.sessions} sessions; ${ha}`,
    `${services.length} service${services.length === 1 ? '' : 's'}:`,
    ...services.map(serviceLine),
    ...configWarnings(config).map((w) => `warning: ${w}`),
  ];
  return `${lines.join('\n')}\n`;
}
