#!/usr/bin/env node
/**
 * tunvs command line. Each command is a thin shell over src/: run (control/runtime.ts),
 * list and stats (admin API clients), lab (lab/lab.ts), rs (rs/reader.ts), import
 * (config/import_ipvsadm.ts, config/import_keepalived.ts).
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { checkConfig } from '../config/check.js';
import { ConfigError } from '../config/errors.js';
import { ImportError, importYaml, parseFwmarkOption, type FwmarkMember } from '../config/import.js';
import { importIpvsadm } from '../config/import_ipvsadm.js';
import { importKeepalived } from '../config/import_keepalived.js';
import { DEFAULTS } from '../config/config.js';
import { DECAP_GUE_PORTS_MAX, LOOP_STALL_MS, WORKERS_MAX } from '../constants.js';
import { adminRequest } from '../control/admin.js';
import { connFilterError } from '../control/conns.js';
import { stderrLogger } from '../control/log.js';
import { Runtime } from '../control/runtime.js';
import { formatHaStatus } from '../control/stats.js';
import type { HaStatus } from '../ha/node.js';
import { labCurl, labDown, labLoad, labStatus, labToa, labUp } from '../lab/lab.js';
import { MODE_PORTS, type LabMode } from '../lab/modes.js';
import { attachDecap, DECAP_MODES, detachDecap, type DecapMode } from '../rs/decap.js';
import { haCheck } from './ha_check.js';
import { labFailover } from '../lab/failover.js';
import { labCluster } from '../lab/cluster_demo.js';
import { frrStatusLines, routeMeaning } from '../control/frr_status.js';
import { runWatchdog } from '../ha/watchdog.js';
import { sockAddon } from '../rs/native.js';
import {
  attachReader,
  detachAll,
  detachReader,
  formatStatus,
  joinCgroup,
  readerStatus,
  RsError,
  type ReaderOptions,
} from '../rs/reader.js';

const HELP = `tunvs — userspace L4 load balancer (FULLNAT + TOA on a TUN device)

Usage:
  tunvs run --config FILE [--workers N]   run the load balancer (root); SIGHUP reloads
  tunvs check --config FILE               check a config as run and a reload would, run nothing
                                          (as nginx -t): what it sets up, its warnings; exit 1
                                          with the error and where in the file
  tunvs reload                            the running tunvs applies its config file's services
                                          now (as SIGHUP) and says what came of it: exit 1 with
                                          the error when the file is refused (it runs on with
                                          the config it had)
  tunvs list [-n] [--stats|--rate] [--json]
                                          services and real servers (like ipvsadm -Ln); --rate:
                                          per second over the last 2 s
  tunvs stats [--json] [--gc]             counters, drops by reason, table load per worker, HA
                                          sync (role, lag), TUN device and queue counters,
                                          memory (RSS, each thread's heap; --gc: after a full
                                          garbage collection of each, so what is live), the
                                          main thread's stalls (held ${LOOP_STALL_MS} ms or more)
  tunvs conns [--protocol tcp|udp] [--vip A[:P]] [--client A[:P]] [--server A[:P]] [--state S]
              [--limit N] [--json]        sessions (like ipvsadm -Lnc), filtered
  tunvs service add NAME --vip V --port P [--laddr A]... [--protocol tcp|udp]
                    [--mode fullnat|nat|tunnel|dr [--tun-type ipip|gre|gue [--tun-port P] [--tun-csum]]]
                    [--scheduler S] [--syn-proxy off|on|auto]
                    [--sloppy] [--hash-port] [--hash-fallback] [--ops]
                    [--persistent [SEC] [--netmask M] [--prefix6 N] [--persistence-group G]]
                    [--idle-timeout SEC] [--allow CIDR]... [--deny CIDR]...
                    [--max-new-per-sec N] [--server ADDR:PORT[,weight=W]]...
                                          --port 0: every port of the VIP, each connection
                                          on its own (ipvsadm -t VIP:0; with --persistent,
                                          servers ADDR:0; not NAT);
                                          --laddr: local addresses (FULLNAT; TUNNEL: the
                                          tunnel source; NAT, DR: none); --tun-type: TUNNEL's
                                          encapsulation, IP-in-IP, GRE or GUE (UDP to
                                          --tun-port); --tun-csum: with the GRE checksum / the
                                          IPv4 UDP checksum (ipvsadm's); --sloppy: NAT,
                                          TUNNEL, DR with sh or mh (docs/modes.md);
                                          --hash-port, --hash-fallback: sh and mh hash the
                                          client's port too / another server for a client
                                          whose own is at its cap (ipvsadm -b sh-port,
                                          sh-fallback); --ops: UDP, each datagram
                                          scheduled on its own (ipvsadm -o);
                                          --persistent: ipvsadm -p (default 300 s), with
                                          --netmask (-M: 255.255.255.0 or 24), --prefix6 (v6),
                                          --persistence-group: services sharing the client's
                                          server (LVS's persistent firewall-mark service);
                                          --idle-timeout: idle connections (UDP flows) kept SEC
                                          (default: timeouts.established / timeouts.udp; with
                                          --ops the wait for a datagram's reply, default 5 s);
                                          --allow, --deny: the clients that may open sessions
                                          (the file's acl); --max-new-per-sec: new sessions a
                                          second, the rest dropped (rate_limited)
  tunvs service delete NAME
  tunvs server add SERVICE ADDR:PORT [--weight W] [--max-conns N [--min-conns N]]
                                          --max-conns: ipvsadm -x, a session cap (-y: the floor it
                                          must fall under again; default 3/4 of the cap)
  tunvs server delete SERVICE ADDR:PORT
  tunvs server weight SERVICE ADDR:PORT W
  tunvs server drain SERVICE ADDR:PORT    (weight 0: no new sessions, existing ones go on)
                                          runtime edits of the running LB: validated like the
                                          file, applied without a restart; a reload of the
                                          file (SIGHUP) replaces them
  tunvs role master|backup|fault          HA pair: set this LB's role (keepalived's notify calls it)
  tunvs ha status [--json]                HA pair or cluster: role, Redis, events published/applied,
                                          sync lag, peers
  tunvs ha check                          exit 0 when tunvs answers and is ready to be master
                                          (a cluster node: to announce). keepalived's track_script
                                          is its C twin, tunvs-ha-check (native/build/Release/):
                                          ~4 ms of CPU per check, not a Node start's 0.16 s
  tunvs cluster watchdog [--dev D] [--interval-ms N] [--fall N] [--rise N]
                                          cluster node: beside tunvs, withdraws its announcements
                                          when it is hung (fails --fall checks), restores them
                                          after --rise passes (as tunvs routes them by then)
  tunvs cluster forget ID                 cluster: remove a decommissioned node (stopped, its
                                          sessions adopted) from the registry, so the others stop
                                          following it and routing its local addresses
  tunvs cluster status [--json] [--vtysh-socket DIR]
                                          cluster node: peers, their sessions and liveness, what it
                                          announces (routes and their meaning), Redis / Sentinel,
                                          BGP and BFD sessions (FRR's vtysh)
  tunvs lab up [--workers N] [--no-steering] [--no-offload] [--no-reader] [--no-modes]
               [--ha | --cluster N] [--io tun|xdp]
                                          build the netns lab and start tunvs on LB A; the real
                                          servers run under the eBPF TOA reader (unless --no-reader);
                                          NAT, TUNNEL and DR services beside FULLNAT (unless
                                          --no-modes; VIP ports 8081, 8080, and 198.18.0.101:8080
                                          for DR; the cluster's: no NAT; docs/modes.md);
                                          --ha: the pair (tunvs on A and B, keepalived, Redis sync);
                                          --cluster N: N (2-4) active nodes behind an ECMP router
                                          (FRR BGP + BFD), Redis under Sentinel;
                                          --io xdp: the LBs forward on AF_XDP sockets (docs/xdp.md)
  tunvs lab curl [-6] [--count N] [--mode fullnat|nat|tunnel|dr]
                                          GET the VIP from the lab client (the service of that
                                          mode); the reply says what the application saw
  tunvs lab toa [-6] [--count N]          requests with a capture on the real servers: what the
                                          application saw beside the TOA it received (tshark)
  tunvs lab load [-6] [--connections N] [--duration S]
                                          autocannon through the VIP (default 50, 10 s; max 600 s)
  tunvs lab failover [--workers N] [--planned]
                                          the pair under load: kill tunvs on the master, show the
                                          timeline and what the connections saw, then fail back;
                                          --planned: stop keepalived on it instead (a maintenance),
                                          with streams younger than syncAfterMs that go on too
  tunvs lab cluster [--nodes N] [--workers N]
                                          the cluster (default 3 nodes): spread over the nodes, kill
                                          tunvs on lb-b under load (timeline, outcome), its return
  tunvs lab status                        what the lab runs; with the pair or the cluster each LB
                                          node's role, readiness, sync lag and sessions
  tunvs lab down                          remove the lab (namespaces, processes)
  tunvs import ipvsadm|keepalived [FILE] [--laddr A]... [--map-scheduler X=Y]...
               [--fwmark MARK=PROTO/VIP:PORT,...]...
                                          an LVS setup as tunvs services, printed as YAML: ipvsadm
                                          rules (ipvsadm -Sn or -Ln, tunvs list, or a script of ipvsadm commands) or
                                          keepalived.conf's virtual servers with their checks
                                          (DPVS's FULLNAT included; FILE or stdin); what tunvs
                                          lacks is refused with the line (docs/operations.md);
                                          --fwmark: what a firewall mark covers (its iptables
                                          rules), e.g. 1=tcp/198.18.0.100:80,tcp/198.18.0.100:443
  tunvs rs attach --cgroup PATH [--create] [--kind N] [--kind-v6 N] [--no-saved-syn] [--trust CIDR]...
                                          real server: attach the eBPF TOA reader to a cgroup, so
                                          apps in it see the client address (accept/getpeername)
  tunvs rs detach --cgroup PATH | --all   remove the reader
  tunvs rs status [--json]                where it is attached, its options and counters
  tunvs rs exec --cgroup PATH [--attach] -- CMD [ARGS...]
                                          run CMD inside the cgroup (then, e.g., ip netns exec)
  tunvs rs decap attach|detach --dev DEV [--xdp-mode native|generic] [--gue-port P]...
                                          TUNNEL-mode real server without the ipip (ip_gre, fou)
                                          module: take the LB's IP-in-IP and GRE packets, and GUE
                                          ones to UDP port P (up to 8 ports), apart on DEV (XDP;
                                          generic on a veth, where native would cut the peer's
                                          GSO)
  tunvs help                              this text

Options:
  --admin PATH    admin socket (default ${DEFAULTS.adminSocket}; the lab's is under /run/tunvs-lab),
                  or tcp://HOST:PORT for the TCP admin listener (admin.tcp), with --token
  --token T       the TCP admin listener's token (or TUNVS_ADMIN_TOKEN)
  --prefix P      lab namespace prefix (default tvs-)
  --cgroup PATH   a cgroup v2 directory, absolute or relative to the cgroup2 mount
                  (e.g. system.slice/nginx.service)
  --kind N        TOA option kind to read for IPv4 and IPv6 (default 254; v6 also 253)
  --trust CIDR    honour a TOA only from these peers (the LB's local addresses); repeatable

Examples:
  sudo tunvs run --config /etc/tunvs/tunvs.yaml
  sudo tunvs list --stats
  sudo tunvs lab up && sudo tunvs lab curl && sudo tunvs lab down
  sudo tunvs server weight web 10.0.0.21:8080 3 && sudo tunvs server drain web 10.0.0.22:8080
  sudo tunvs rs attach --cgroup system.slice/nginx.service --trust 198.18.2.0/24
  sudo tunvs rs exec --cgroup tunvs-apps --attach -- ./my-server --port 8080
`;

function flag(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
  args.splice(i, 2);
  return v;
}

/** Every value of a repeatable option. */
function options(args: string[], name: string): string[] {
  const out: string[] = [];
  for (let v = option(args, name); v !== undefined; v = option(args, name)) out.push(v);
  return out;
}

class UsageError extends Error {}

/** An argument no option of the command took is a mistake: say which, before acting. */
function noneLeft(args: string[]): void {
  if (args.length > 0) throw new UsageError(`unexpected argument${args.length > 1 ? 's' : ''}: ${args.join(' ')}`);
}

/** ADDR:PORT or [V6]:PORT. */
function hostPort(v: string | undefined, what: string): { address: string; port: number } {
  const m = v === undefined ? null : /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
  if (!m) throw new UsageError(`${what} must be ADDR:PORT or [IPV6]:PORT, got ${v ?? 'nothing'}`);
  return { address: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** ipvsadm's -p [TIMEOUT] and -M NETMASK: `--persistent [SEC]`, `--netmask M`, `--prefix6 N`,
 * and `--persistence-group G` (validated with the service, like the file's `persistence`). */
function persistenceOptions(args: string[]): Record<string, unknown> | undefined {
  const netmask = option(args, '--netmask');
  const prefix6 = option(args, '--prefix6');
  const group = option(args, '--persistence-group');
  const i = args.indexOf('--persistent');
  if (i < 0) {
    if (netmask !== undefined || prefix6 !== undefined || group !== undefined)
      throw new UsageError(
        '--netmask, --prefix6 and --persistence-group go with --persistent (ipvsadm -M goes with -p)',
      );
    return undefined;
  }
  const v = args[i + 1];
  const given = v !== undefined && !v.startsWith('--');
  args.splice(i, given ? 2 : 1);
  const num = (x: string): number | string => (/^\d+$/.test(x) ? Number(x) : x);
  return {
    ...(given ? { timeoutSec: num(v) } : {}),
    ...(netmask !== undefined ? { netmask: num(netmask) } : {}),
    ...(prefix6 !== undefined ? { prefix6: num(prefix6) } : {}),
    ...(group !== undefined ? { group } : {}),
  };
}

/** `tunvs service add|delete ...`, `tunvs server add|delete|weight|drain ...` as an edit request. */
function editRequest(cmd: 'service' | 'server', args: string[]): Record<string, unknown> {
  const sub = args.shift();
  if (cmd === 'service') {
    const name = args.shift();
    if (name === undefined || name.startsWith('--')) throw new UsageError(`service ${sub ?? ''} needs a NAME`);
    if (sub === 'delete') return { op: 'delete-service', service: name };
    if (sub !== 'add') throw new UsageError(`service needs add or delete (got ${sub ?? 'nothing'})`);
    const service: Record<string, unknown> = { name, localAddresses: options(args, '--laddr') };
    const vip = option(args, '--vip');
    const port = option(args, '--port');
    if (vip === undefined || port === undefined) throw new UsageError('service add needs --vip and --port');
    service.vip = vip;
    service.port = Number(port);
    const protocol = option(args, '--protocol');
    if (protocol !== undefined) service.protocol = protocol;
    const scheduler = option(args, '--scheduler');
    if (scheduler !== undefined) service.scheduler = scheduler;
    const mode = option(args, '--mode');
    if (mode !== undefined) service.mode = mode;
    const tunType = option(args, '--tun-type');
    const tunCsum = flag(args, '--tun-csum');
    const tunPort = option(args, '--tun-port');
    if (tunType !== undefined || tunCsum || tunPort !== undefined)
      service.tunnel = {
        type: tunType ?? 'ipip',
        ...(tunCsum ? { checksum: true } : {}),
        ...(tunPort !== undefined ? { port: /^\d+$/.test(tunPort) ? Number(tunPort) : tunPort } : {}),
      };
    const synProxy = option(args, '--syn-proxy');
    if (synProxy !== undefined) service.synProxy = synProxy;
    if (flag(args, '--sloppy')) service.sloppy = true;
    if (flag(args, '--hash-port')) service.hashPort = true;
    if (flag(args, '--hash-fallback')) service.hashFallback = true;
    if (flag(args, '--ops')) service.onePacket = true;
    const persistence = persistenceOptions(args);
    if (persistence) service.persistence = persistence;
    const idle = option(args, '--idle-timeout');
    if (idle !== undefined) service.idleTimeout = /^\d+$/.test(idle) ? Number(idle) : idle;
    const allow = options(args, '--allow');
    const deny = options(args, '--deny');
    if (allow.length > 0 || deny.length > 0) service.acl = { allow, deny };
    const rate = option(args, '--max-new-per-sec');
    if (rate !== undefined) service.maxNewPerSec = /^\d+$/.test(rate) ? Number(rate) : rate;
    service.realServers = options(args, '--server').map((x) => {
      const [hp, weight] = x.split(/,weight=/);
      return { ...hostPort(hp, '--server'), weight: weight === undefined ? 1 : Number(weight) };
    });
    return { op: 'add-service', service };
  }
  const service = args.shift();
  const target = hostPort(args.shift(), `server ${sub ?? ''} SERVICE ADDR:PORT`);
  if (service === undefined) throw new UsageError(`server ${sub ?? ''} needs SERVICE ADDR:PORT`);
  if (sub === 'add') {
    const w = option(args, '--weight');
    // Validated with the service, as the file's (a non-number is refused there by name).
    const count = (flag: string, field: string): Record<string, number | string> => {
      const v = option(args, flag);
      return v === undefined ? {} : { [field]: /^\d+$/.test(v) ? Number(v) : v };
    };
    return {
      op: 'add-server',
      service,
      server: {
        ...target,
        weight: w === undefined ? 1 : Number(w),
        ...count('--max-conns', 'maxConns'),
        ...count('--min-conns', 'minConns'),
      },
    };
  }
  if (sub === 'delete') return { op: 'delete-server', service, ...target };
  if (sub === 'drain') return { op: 'weight', service, ...target, weight: 0 };
  if (sub === 'weight') {
    const w = args.shift();
    if (w === undefined) throw new UsageError('server weight SERVICE ADDR:PORT WEIGHT');
    return { op: 'weight', service, ...target, weight: Number(w) };
  }
  throw new UsageError(`server needs add, delete, weight or drain (got ${sub ?? 'nothing'})`);
}

function kind(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 2 || n > 255)
    throw new UsageError(`${name} must be a TCP option kind 2-255, got ${v}`);
  return n;
}

function rs(args: string[], log: (line: string) => void): number {
  const sub = args.shift();
  // the command of `rs exec` is everything after --, untouched by option parsing
  const dash = args.indexOf('--');
  const command = dash >= 0 ? args.splice(dash).slice(1) : [];
  if (sub === 'attach') {
    const cgroup = option(args, '--cgroup');
    if (cgroup === undefined) throw new UsageError('rs attach needs --cgroup PATH');
    const create = flag(args, '--create');
    const opts: Partial<ReaderOptions> = {};
    const k = kind(option(args, '--kind'), '--kind');
    const k6 = kind(option(args, '--kind-v6'), '--kind-v6') ?? k;
    if (k !== undefined) opts.kindV4 = k;
    if (k6 !== undefined) opts.kindV6 = opts.kindV6Alt = k6;
    if (flag(args, '--no-saved-syn')) opts.savedSyn = false;
    opts.trusted = options(args, '--trust');
    noneLeft(args);
    const r = attachReader(cgroup, opts, create);
    log(
      r.created
        ? `TOA reader attached to ${r.cgroup} (cgroup id ${r.cgroupId}); pinned in ${r.pinDir}`
        : `TOA reader already attached to ${r.cgroup}: options updated`,
    );
    log('applications started in this cgroup from now on see client addresses (tunvs rs status shows counters)');
    return 0;
  }
  if (sub === 'detach') {
    const all = flag(args, '--all');
    const cgroup = option(args, '--cgroup');
    if (!all && cgroup === undefined) throw new UsageError('rs detach needs --cgroup PATH or --all');
    noneLeft(args);
    const n = all ? detachAll() : detachReader(cgroup!);
    log(n > 0 ? `TOA reader detached (${n} programs)` : 'the TOA reader was not attached there');
    return 0;
  }
  if (sub === 'status') {
    const json = flag(args, '--json');
    noneLeft(args);
    const list = readerStatus();
    log(json ? JSON.stringify(list, null, 2) : formatStatus(list));
    return 0;
  }
  if (sub === 'exec') {
    const cgroup = option(args, '--cgroup');
    if (cgroup === undefined) throw new UsageError('rs exec needs --cgroup PATH');
    if (command.length === 0)
      throw new UsageError('rs exec needs the command after --: tunvs rs exec --cgroup P -- CMD');
    const attach = flag(args, '--attach');
    noneLeft(args);
    if (attach) attachReader(cgroup, {}, true);
    joinCgroup(cgroup);
    return sockAddon().execvp(command[0]!, command.slice(1));
  }
  if (sub === 'decap') {
    const action = args.shift();
    const dev = option(args, '--dev');
    const xdpMode = option(args, '--xdp-mode');
    const guePorts = options(args, '--gue-port');
    const usage = 'rs decap attach|detach --dev DEV [--xdp-mode native|generic] [--gue-port P]...';
    if ((action !== 'attach' && action !== 'detach') || dev === undefined) throw new UsageError(usage);
    if (xdpMode !== undefined && (action !== 'attach' || !(DECAP_MODES as readonly string[]).includes(xdpMode)))
      throw new UsageError(`--xdp-mode is native or generic, and only for attach (got ${xdpMode})`);
    if (guePorts.length > 0 && action !== 'attach') throw new UsageError('--gue-port is only for attach');
    const bad = guePorts.find((p) => !/^\d{1,5}$/.test(p) || Number(p) < 1 || Number(p) > 65535);
    if (bad !== undefined) throw new UsageError(`--gue-port ${bad}: a UDP port (1-65535)`);
    if (guePorts.length > DECAP_GUE_PORTS_MAX)
      throw new UsageError(`--gue-port: at most ${DECAP_GUE_PORTS_MAX} ports (got ${guePorts.length})`);
    noneLeft(args);
    if (action === 'attach') {
      const mode = attachDecap(dev, undefined, xdpMode as DecapMode | undefined, guePorts.map(Number));
      const gue = guePorts.length > 0 ? `; GUE on UDP ${guePorts.join(', ')}` : '';
      log(
        `decapsulator (IP-in-IP, IPv6-in-IPv6, GRE${gue}) attached to ${dev} (XDP, ${mode}): TUNNEL-mode packets arrive as the client sent them`,
      );
    } else {
      detachDecap(dev);
      log(`XDP program removed from ${dev}`);
    }
    return 0;
  }
  throw new UsageError(`rs needs one of: attach, detach, status, exec, decap (got ${sub ?? 'nothing'})`);
}

function positiveInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return n;
}

/** `--workers N`: a forwarder thread count, as the config's `workers` allows. */
function workersOption(args: string[]): number | undefined {
  const n = positiveInt(option(args, '--workers'), '--workers');
  if (n !== undefined && n > WORKERS_MAX) throw new UsageError(`--workers must be at most ${WORKERS_MAX}, got ${n}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  // --help anywhere before a `--` (after it, it belongs to the command of rs exec)
  const dash = args.indexOf('--');
  if ((dash >= 0 ? args.slice(0, dash) : args).some((a) => a === '--help' || a === '-h')) {
    console.log(HELP);
    return 0;
  }
  const cmd = args.shift() ?? 'help';
  const prefix = option(args, '--prefix') ?? 'tvs-';
  const adminPath = option(args, '--admin') ?? DEFAULTS.adminSocket;
  const token = option(args, '--token') ?? process.env.TUNVS_ADMIN_TOKEN;
  const ask = (req: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>> =>
    adminRequest(adminPath, req, timeoutMs, token);
  const log = (line: string): void => console.log(line);
  switch (cmd) {
    case 'check': {
      const configPath = option(args, '--config');
      if (configPath === undefined) throw new UsageError('check needs --config FILE');
      noneLeft(args);
      process.stdout.write(checkConfig(configPath));
      return 0;
    }
    case 'run': {
      const configPath = option(args, '--config');
      if (configPath === undefined) throw new UsageError('run needs --config FILE');
      const workers = workersOption(args);
      noneLeft(args);
      const rt = new Runtime({ configPath, logger: stderrLogger, ...(workers !== undefined ? { workers } : {}) });
      await rt.start();
      return -1; // keep running until a signal
    }
    case 'list':
    case 'stats': {
      const json = flag(args, '--json');
      const stats = flag(args, '--stats');
      const rate = flag(args, '--rate');
      const gc = cmd === 'stats' && flag(args, '--gc');
      flag(args, '-n'); // numeric output is the only output
      noneLeft(args);
      const reply = await ask(cmd === 'list' ? { cmd, stats, rate } : { cmd, ...(gc ? { gc } : {}) });
      if (json) console.log(JSON.stringify(cmd === 'list' ? reply.services : reply, null, 2));
      else if (cmd === 'list') console.log(reply.text);
      else
        console.log(
          JSON.stringify(
            {
              counters: reply.counters,
              drops: reply.drops,
              tables: reply.tables,
              ...(reply.ha ? { ha: reply.ha } : {}),
              device: reply.device,
              io: reply.io,
              queues: reply.queues,
              memory: reply.memory,
              mainThread: reply.mainThread,
            },
            null,
            2,
          ),
        );
      return 0;
    }
    case 'lab': {
      const sub = args.shift();
      if (sub === 'up') {
        const workers = workersOption(args) ?? Math.min(availableParallelism(), 4);
        const steering = !flag(args, '--no-steering');
        const offload = !flag(args, '--no-offload');
        const reader = !flag(args, '--no-reader');
        const ha = flag(args, '--ha');
        const modes = !flag(args, '--no-modes');
        const cluster = positiveInt(option(args, '--cluster'), '--cluster');
        if (cluster !== undefined && (cluster < 2 || cluster > 4))
          throw new UsageError('--cluster takes 2 to 4 nodes (lb-a..lb-d)');
        const io = option(args, '--io') ?? 'tun';
        if (io !== 'tun' && io !== 'xdp') throw new UsageError('--io takes tun or xdp');
        noneLeft(args);
        await labUp({
          prefix,
          workers,
          steering,
          offload,
          reader,
          ha,
          modes,
          io,
          ...(cluster ? { cluster } : {}),
          log,
        });
        log(`lab up. Try: tunvs lab curl; tunvs lab status; tear down with: tunvs lab down`);
        return 0;
      }
      if (sub === 'down') {
        noneLeft(args);
        await labDown(prefix, log);
        return 0;
      }
      if (sub === 'status') {
        noneLeft(args);
        log(await labStatus(prefix));
        return 0;
      }
      if (sub === 'curl') {
        const family = flag(args, '-6') ? 6 : 4;
        const count = positiveInt(option(args, '--count'), '--count') ?? 1;
        const mode = option(args, '--mode') ?? 'fullnat';
        if (!(mode in MODE_PORTS)) throw new UsageError(`--mode must be fullnat, nat, tunnel or dr, got ${mode}`);
        noneLeft(args);
        process.stdout.write(labCurl(prefix, family, count, mode as LabMode));
        return 0;
      }
      if (sub === 'toa') {
        const family = flag(args, '-6') ? 6 : 4;
        const count = positiveInt(option(args, '--count'), '--count') ?? 3;
        noneLeft(args);
        const { observed } = await labToa(prefix, family, count);
        for (const o of observed) {
          const toa = o.toa ? `${o.toa.address}:${o.toa.port} (TOA kind ${o.toa.kind})` : 'no TOA captured';
          const agree = o.toa !== undefined && o.appSaw === `${o.toa.address}:${o.toa.port}`;
          log(`${o.server}: application saw ${o.appSaw}; TOA on the wire: ${toa}${agree ? ' — they agree' : ''}`);
        }
        return 0;
      }
      if (sub === 'load') {
        const family = flag(args, '-6') ? 6 : 4;
        const connections = positiveInt(option(args, '--connections'), '--connections') ?? 50;
        const seconds = positiveInt(option(args, '--duration'), '--duration') ?? 10;
        if (seconds > 600) throw new UsageError('--duration is at most 600 seconds (every load run is bounded)');
        noneLeft(args);
        return labLoad(prefix, family, connections, seconds);
      }
      if (sub === 'cluster') {
        const workers = workersOption(args) ?? 2;
        const nodes = positiveInt(option(args, '--nodes'), '--nodes') ?? 3;
        if (nodes < 2 || nodes > 4) throw new UsageError('--nodes takes 2 to 4 (lb-a..lb-d)');
        noneLeft(args);
        return labCluster(prefix, nodes, workers, log);
      }
      if (sub === 'failover') {
        const workers = workersOption(args) ?? Math.min(availableParallelism(), 4);
        const planned = flag(args, '--planned');
        noneLeft(args);
        return labFailover(prefix, workers, log, planned);
      }
      throw new UsageError(`lab needs one of: up, down, status, curl, toa, load, failover (got ${sub ?? 'nothing'})`);
    }
    case 'rs':
      return rs(args, log);
    case 'import': {
      const sub = args.shift();
      if (sub !== 'ipvsadm' && sub !== 'keepalived')
        throw new UsageError(`import needs ipvsadm or keepalived (got ${sub ?? 'nothing'})`);
      const laddrs = options(args, '--laddr');
      const schedulerMap: Record<string, string> = {};
      for (const m of options(args, '--map-scheduler')) {
        const [from, to] = m.split('=');
        if (!from || !to) throw new UsageError(`--map-scheduler takes FROM=TO (lblc=mh), got ${m}`);
        schedulerMap[from] = to;
      }
      const fwmarks = new Map<number, FwmarkMember[]>();
      for (const f of options(args, '--fwmark')) {
        try {
          const [mark, members] = parseFwmarkOption(f);
          fwmarks.set(mark, [...(fwmarks.get(mark) ?? []), ...members]);
        } catch (e) {
          throw new UsageError((e as Error).message);
        }
      }
      const file = args.shift();
      noneLeft(args);
      const stdin = file === undefined || file === '-';
      const text = stdin ? readFileSync(0, 'utf8') : readFileSync(file, 'utf8');
      const r =
        sub === 'ipvsadm'
          ? importIpvsadm(text, { laddrs, schedulerMap, fwmarks })
          : importKeepalived(
              {
                file: stdin ? join(process.cwd(), 'stdin') : file,
                text,
                read: (f) => readFileSync(f, 'utf8'),
                readdir: (d) => readdirSync(d),
              },
              { laddrs, schedulerMap, fwmarks },
            );
      for (const n of r.notes) console.error(`tunvs: import: ${n}`);
      const what = sub === 'ipvsadm' ? 'the ipvsadm rules' : 'the virtual servers';
      process.stdout.write(importYaml(r, `${what} of ${stdin ? 'stdin' : file} (tunvs import ${sub})`));
      return 0;
    }
    case 'service':
    case 'server': {
      const req = editRequest(cmd, args);
      noneLeft(args);
      await ask({ cmd: 'edit', ...req });
      log(`${cmd} ${String(req.op).replace(/-.*/, '')}: done (running config; the file is unchanged)`);
      return 0;
    }
    case 'conns': {
      const json = flag(args, '--json');
      flag(args, '-n');
      const filter: Record<string, string> = {};
      for (const k of ['protocol', 'vip', 'client', 'server', 'state'] as const) {
        const v = option(args, `--${k}`);
        if (v !== undefined) filter[k] = v;
      }
      const bad = connFilterError(filter);
      if (bad !== undefined) throw new UsageError(`--${bad}`);
      const limit = positiveInt(option(args, '--limit'), '--limit') ?? 1000;
      noneLeft(args);
      const reply = (await ask({ cmd: 'conns', filter, limit })) as {
        sessions: unknown[];
        more: boolean;
        text: string;
      };
      if (json) log(JSON.stringify(reply.sessions, null, 2));
      else log(`${reply.text}${reply.more ? `\n(more than ${limit}: narrow the filter or raise --limit)` : ''}`);
      return 0;
    }
    case 'reload': {
      noneLeft(args);
      const r = (await ask({ cmd: 'reload' }, 30_000)) as {
        services: number;
        restartOnly: string[];
        warnings: string[];
      };
      for (const w of r.warnings) log(`warning: ${w}`);
      if (r.restartOnly.length > 0) log(`${r.restartOnly.join(', ')} changed: these apply at the next restart`);
      log(`reloaded: ${r.services} service${r.services === 1 ? '' : 's'}`);
      return 0;
    }
    case 'role': {
      const role = args.shift();
      if (role === undefined) throw new UsageError('role needs master, backup or fault');
      noneLeft(args);
      const reply = (await ask({ cmd: 'role', role })) as { ha: { role: string } };
      log(`role: ${reply.ha.role}`);
      return 0;
    }
    case 'ha': {
      const sub = args.shift() ?? 'status';
      const json = flag(args, '--json');
      noneLeft(args);
      if (sub === 'check') return haCheck(argv.slice(2));
      if (sub !== 'status') throw new UsageError(`ha needs status or check (got ${sub})`);
      const reply = (await ask({ cmd: 'ha' })) as { ha: Record<string, unknown> };
      if (json) log(JSON.stringify(reply.ha, null, 2));
      else log(formatHaStatus(reply.ha as unknown as HaStatus));
      return 0;
    }
    case 'cluster': {
      const sub = args.shift() ?? 'status';
      const forgetId = sub === 'forget' ? args.shift() : undefined;
      const json = flag(args, '--json');
      const vtyDir = option(args, '--vtysh-socket');
      const watchdogDev = option(args, '--dev');
      const watchdogInterval = positiveInt(option(args, '--interval-ms'), '--interval-ms');
      const watchdogFall = positiveInt(option(args, '--fall'), '--fall');
      const watchdogRise = positiveInt(option(args, '--rise'), '--rise');
      noneLeft(args);
      if (sub === 'watchdog') {
        if (json || vtyDir !== undefined)
          throw new UsageError('cluster watchdog takes --dev, --interval-ms, --fall, --rise');
        const stop = new AbortController();
        process.on('SIGTERM', () => stop.abort());
        process.on('SIGINT', () => stop.abort());
        await runWatchdog(
          {
            admin: adminPath,
            dev: watchdogDev ?? DEFAULTS.tunName,
            intervalMs: watchdogInterval ?? 500,
            fall: watchdogFall ?? 3,
            rise: watchdogRise ?? 2,
            log,
          },
          stop.signal,
        );
        return 0;
      }
      if (sub === 'forget') {
        const id = positiveInt(forgetId, 'cluster forget');
        if (id === undefined || json || vtyDir !== undefined || watchdogDev !== undefined)
          throw new UsageError('cluster forget takes a node id and nothing else');
        const reply = (await ask({ cmd: 'cluster-forget', id })) as { ha: HaStatus };
        log(
          `node ${id} forgotten; peers now: ${reply.ha.peers.map((p) => `${p.id} (${p.name})`).join(', ') || 'none'}`,
        );
        return 0;
      }
      if (sub !== 'status') throw new UsageError(`cluster needs status, watchdog or forget (got ${sub})`);
      const reply = (await ask({ cmd: 'ha' })) as {
        ha: HaStatus;
        routes: { prefix: string; metric?: number }[];
        routeHealth?: string;
        withdrawn?: Record<string, string[]>;
      };
      if (json) {
        log(JSON.stringify(reply, null, 2));
        return 0;
      }
      log(formatHaStatus(reply.ha));
      log(
        `routes into the TUN (what the BGP speaker announces)${reply.routeHealth && reply.routeHealth !== 'off' ? `; route health: ${reply.routeHealth}` : ''}`,
      );
      for (const r of reply.routes)
        log(`  ${r.prefix.padEnd(24)} ${routeMeaning(r.metric, reply.withdrawn?.[r.prefix])}`);
      log('BGP and BFD (FRR on this node)');
      for (const l of frrStatusLines(vtyDir)) log(l);
      return 0;
    }
    case 'help':
      console.log(HELP);
      return 0;
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`tunvs: ${e.message}\n\n${HELP}`);
      process.exitCode = 2;
    } else if (e instanceof RsError) {
      console.error(`tunvs: [${e.code}] ${e.message}`);
      process.exitCode = 1;
    } else if (e instanceof ConfigError) {
      console.error(`tunvs: config error [${e.code}] ${e.message}`);
      process.exitCode = 1;
    } else if (e instanceof ImportError) {
      console.error(`tunvs: import error [${e.code}] ${e.message}`);
      process.exitCode = 1;
    } else {
      console.error(`tunvs: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  },
);
