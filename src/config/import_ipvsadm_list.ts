/**
 * What `ipvsadm -Ln` prints (upstream's and DPVS's), read as the ipvsadm commands that would
 * make it, so `tunvs import ipvsadm` takes a listing as it takes `ipvsadm -Sn`: the same
 * options, checks and refusals, with the listing's own line numbers.
 *
 *   TCP  198.18.0.100:80 wlc persistent 360 mask 255.255.255.0 ops
 *     -> 198.18.20.21:8080            Route   1      0          0
 *
 * becomes `-A -t 198.18.0.100:80 -s wlc -p 360 -M 255.255.255.0 --ops` and
 * `-a -t 198.18.0.100:80 -r 198.18.20.21:8080 -g -w 1`. With `--tun-info` each server line
 * has a TunnelInfo column after Forward (`ipip`, `gre:+c`, `gue:6080:-c`, `n/a`), read as
 * --tun-type, --tun-port and --tun-csum / --tun-nocsum / --tun-remcsum. `Timeout (tcp tcpfin udp): 900 120
 * 300` (`ipvsadm -L --timeout`, e.g. appended to the same file) becomes `--set 900 120 300`.
 * The headers are skipped; a listing of counters instead of rules (`--stats`, `--rate`,
 * `--thresholds`, `--persistent-conn`) and flags without an ipvsadm option are refused.
 * `tunvs list`'s own words are read as tunvs's options (`group G` --persistence-group,
 * `allow P,...` --allow, `deny P,...` --deny, `rate N` --max-new-per-sec, `sloppy`,
 * `tunnel gre [csum]` / `tunnel gue port P [csum]` each server's --tun-type gre|gue
 * [--tun-port P] [--tun-csum], a server's `cap MAX/MIN`
 * -x -y, `sorry server` --sorry-server, the config weight of `weight from check`); its state
 * (`DOWN (...)`, `quorum lost`, a TUNNEL server's learned `path mtu N`) is noted and left out.
 *
 *   listingCommands: isListing → per line: header | timeouts | service | server
 */

import { ImportError } from './import.js';

export interface CommandLine {
  line: number;
  tokens: string[];
}

/** The listing's protocol column → ipvsadm's service option. */
const PROTOCOLS: Record<string, string> = { TCP: '-t', UDP: '-u', SCTP: '--sctp-service', FWM: '-f' };

/** The Forward column → ipvsadm's forwarding option (DPVS: FullNat, SNAT). */
const FORWARD: Record<string, string> = { Route: '-g', Masq: '-m', Tunnel: '-i', FullNat: '--fullnat', SNAT: '-J' };

/** `--tun-info`'s TunnelInfo column: the type, GUE's port, the checksum word (`-c` none,
 * `+c` with it, `r+c` remote checksum offload); `n/a` for a server that is not tunnelled. */
const TUNNEL_INFO = /^(?:n\/a|(ipip)|(gre):(-c|\+c|r\+c)|(gue):(\d+):(-c|\+c|r\+c))$/;
const TUNNEL_CSUM: Record<string, string> = { '-c': '--tun-nocsum', '+c': '--tun-csum', 'r+c': '--tun-remcsum' };

/** A TunnelInfo column as ipvsadm's server options (none for n/a). */
function tunnelInfo(column: string, line: number): string[] {
  const m = TUNNEL_INFO.exec(column);
  if (!m) throw new ImportError(line, `tunnel info ${column} not understood (ipip, gre:FLAGS, gue:PORT:FLAGS or n/a)`);
  if (m[1]) return ['--tun-type', 'ipip'];
  if (m[2]) return ['--tun-type', 'gre', TUNNEL_CSUM[m[3]!]!];
  if (m[4]) return ['--tun-type', 'gue', '--tun-port', m[5]!, TUNNEL_CSUM[m[6]!]!];
  return [];
}

/** Service flags with a value, as `-Ln` prints them → the option (`group`: tunvs list's). */
const VALUE_FLAGS: Record<string, string> = {
  persistent: '-p',
  mask: '-M',
  pe: '--pe',
  'conn-timeout': '--conn-timeout',
  group: '--persistence-group',
  allow: '--allow',
  deny: '--deny',
  rate: '--max-new-per-sec',
};
/** Service flags without one (`sloppy`: tunvs list's). */
const BARE_FLAGS: Record<string, string[]> = { ops: ['--ops'], synproxy: ['-j', 'enable'], sloppy: ['--sloppy'] };

/** What may follow a server's InActConn column, in the order it is printed: DPVS's
 * `inhibited`, then tunvs list's `cap MAX/MIN`, `weight from check (config W)` (the Weight
 * column is the check's then), `sorry server [(in use: no quorum)]`, `path mtu N` (a TUNNEL
 * server's learned path MTU: state) and `DOWN (reason)`. */
const SERVER_TAIL =
  /^(?:\s+inhibited)?(?:\s+cap (\d+)\/(\d+))?(?:\s+weight from check \(config (\d+)\))?(\s+sorry server(?: \(in use: no quorum\))?)?(\s+path mtu \d+)?(\s+DOWN \(.*\))?$/;

/** Whether `text` is a listing: its header, a service line (a script's lines start with an
 * option or `ipvsadm`), or an `  -> ` server line. */
export function isListing(text: string): boolean {
  return /^(IP Virtual Server version|Prot LocalAddress:Port|(TCP|UDP|SCTP|FWM|MATCH)\s)|^\s+->\s/m.test(text);
}

/** The commands that make the listing `text` (isListing); `notes` gets what was left out. */
export function listingCommands(text: string, notes: string[]): CommandLine[] {
  const out: CommandLine[] = [];
  let service: string[] | undefined; // the current service's option and address
  let serverFlags: string[] = []; // what its servers' lines take from it
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const s = lines[i]!.trimEnd();
    if (s.trim() === '' || /^IP Virtual Server version/.test(s)) continue;
    if (/^Prot LocalAddress:Port/.test(s) || /^\s+-> RemoteAddress:Port/.test(s)) {
      if (!/Scheduler Flags|Forward (TunnelInfo +)?Weight/.test(s))
        throw new ImportError(
          line,
          'a listing of counters, not of rules: give `ipvsadm -Ln` (without --stats, --rate, --thresholds, --persistent-conn)',
        );
      continue;
    }
    const timeout = /^Timeout \(tcp tcpfin udp\):\s+(\d+)\s+(\d+)\s+(\d+)$/.exec(s);
    if (timeout) {
      out.push({ line, tokens: ['--set', timeout[1]!, timeout[2]!, timeout[3]!] });
      continue;
    }
    const server = /^\s+->\s+(\S+)\s+(\S+)\s+(?:(\D\S*)\s+)?(\d+)\s+\d+\s+\d+(.*)$/.exec(s);
    if (server) {
      if (!service) throw new ImportError(line, 'a real server before any service');
      const tail = SERVER_TAIL.exec(server[5]!);
      if (!tail) throw new ImportError(line, `server flags not understood: ${server[5]!.trim()}`);
      const [, max, min, configWeight, sorry, pathMtu, down] = tail;
      const fwd = FORWARD[server[2]!];
      if (fwd === undefined)
        throw new ImportError(
          line,
          server[2] === 'Local'
            ? 'forwarding Local (the real server is the LB itself) has no tunvs equivalent'
            : `unknown forwarding method ${server[2]!}`,
        );
      if (pathMtu) notes.push(`line ${line}: ${server[1]!}'s ${pathMtu.trim()} is learned state, not a rule: left out`);
      if (down)
        notes.push(
          `line ${line}: ${server[1]!} is DOWN: health is state, not a rule (imported as configured; a listing has no health checks: add the service's healthCheck)`,
        );
      out.push({
        line,
        tokens: [
          '-a',
          ...service,
          '-r',
          server[1]!,
          fwd,
          '-w',
          configWeight ?? server[4]!,
          ...(max !== undefined ? ['-x', max, '-y', min!] : []),
          ...(sorry ? ['--sorry-server'] : []),
          ...(server[3] !== undefined ? tunnelInfo(server[3], line) : []),
          ...serverFlags,
        ],
      });
      continue;
    }
    const svc = /^(\S+)\s+(\S+)\s+(\S+)(.*)$/.exec(s);
    if (svc && !/^\s/.test(s)) {
      const [, proto, address, scheduler, rest] = svc as unknown as [string, string, string, string, string];
      const option = PROTOCOLS[proto];
      if (option === undefined)
        throw new ImportError(
          line,
          proto === 'MATCH'
            ? 'a DPVS match service (-H) has no tunvs equivalent: give each VIP:PORT a service of its own'
            : `not an ipvsadm -Ln line: ${s.trim()}`,
        );
      service = [option, address];
      const flags = serviceFlags(rest.trim(), line, notes);
      serverFlags = flags.server;
      out.push({ line, tokens: ['-A', ...service, '-s', scheduler, ...flags.service] });
      continue;
    }
    throw new ImportError(line, `not an ipvsadm -Ln line: ${s.trim()}`);
  }
  notes.push(
    'read as `ipvsadm -Ln` output' +
      (out.some((c) => c.tokens[0] === '--set') ? '' : ' (append `ipvsadm -L --timeout` to carry the timeouts)') +
      "; DPVS's local addresses are not in it (ipvsadm -G): give them with --laddr",
  );
  return out;
}

/** A service line's flags (after the scheduler) as options: the service's, and those its
 * servers' lines take (tunvs list's `tunnel gre [csum]`, `tunnel gue port P [csum]`: IPVS's
 * tunnel type is a server's). */
function serviceFlags(rest: string, line: number, notes: string[]): { service: string[]; server: string[] } {
  const words = rest === '' ? [] : rest.split(/\s+/);
  const tokens: string[] = [];
  const server: string[] = [];
  for (let k = 0; k < words.length; k++) {
    const w = words[k]!;
    if (w === 'tunnel') {
      const type = words[++k];
      if (type === undefined) throw new ImportError(line, 'tunnel without its type');
      server.push('--tun-type', type);
      if (words[k + 1] === 'port') {
        const port = words[k + 2];
        if (port === undefined) throw new ImportError(line, 'tunnel port without its value');
        server.push('--tun-port', port);
        k += 2;
      }
      if (words[k + 1] === 'csum') {
        k++;
        server.push('--tun-csum');
      }
    } else if (w.startsWith('(')) {
      // Upstream's scheduler flags: "(sh-fallback,sh-port)".
      tokens.push('--sched-flags', w.replace(/[()]/g, ''));
    } else if (VALUE_FLAGS[w] !== undefined) {
      const v = words[++k];
      if (v === undefined) throw new ImportError(line, `${w} without its value`);
      tokens.push(VALUE_FLAGS[w], v);
    } else if (BARE_FLAGS[w] !== undefined) {
      tokens.push(...BARE_FLAGS[w]);
    } else if (w === 'quorum' && words[k + 1] === 'lost') {
      k++;
      notes.push(`line ${line}: "quorum lost" is state, not a rule: left out`);
    } else if (w === 'dest-check') {
      // DPVS's server checks: "dest-check internal:default external:tcp,ping".
      while (/^(internal|external):/.test(words[k + 1] ?? '')) k++;
      notes.push(`line ${line}: DPVS's dest-check left out: give the service a healthCheck (docs/config.md)`);
    } else {
      throw new ImportError(line, `service flag ${w} has no tunvs equivalent`);
    }
  }
  return { service: tokens, server };
}
