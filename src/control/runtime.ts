/**
 * `tunvs run`: the main thread of a running load balancer.
 *
 *   1. validate the config (nothing touches the host before it passes);
 *   2. create the multi-queue TUN, its offloads, set MTU
 *      and txqueuelen, link up, attach the steering program (steering.ts) so the kernel puts
 *      each packet on its owner's queue;
 *   3. sysctls (forwarding on, rp_filter off on the TUN) and a route into the TUN for every
 *      VIP and local address, over a fallback blackhole for when the TUN is gone; the policy
 *      rules that bring NAT services' replies into the TUN — each change recorded with its
 *      undo (system.ts);
 *   4. one forwarder thread per queue (workers/forwarder.ts); with io: xdp, first the
 *      interfaces' XSKMAPs, then the XDP program on each (control/xdp.ts) once the
 *      forwarders have put their AF_XDP sockets in;
 *   5. the admin socket; SIGHUP reloads, SIGTERM/SIGINT undo everything and exit.
 */

import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { getPriority, setPriority } from 'node:os';
import { HandoffRing, handoffRingBytes } from '../dataplane/handoff.js';
import { AF_INET } from '../packet/headers.js';
import type { Server } from 'node:net';
import { configWarnings } from '../config/check.js';
import { loadConfig, parseService, type Config, type RouteHealth } from '../config/config.js';
import { ConfigError } from '../config/errors.js';
import { createCounters } from '../dataplane/counters.js';
import { prefixAddresses, type ParsedAddress } from '../service/addr.js';
import { steeringProgram } from '../dataplane/steering.js';
import { xdpAddresses } from '../dataplane/xdp_program.js';
import { XdpPrograms } from './xdp.js';
import { TemplateTable } from '../conn/templates.js';
import { TunnelMtuTable } from '../nat/tunnel_pmtu.js';
import { NODE_ID_MAX } from '../constants.js';
import { LoopWatch } from './loop_watch.js';
import { DrLink, LINK_REFRESH_MS, LINK_RESOLVE_RECHECK_MS } from './link.js';
import { nativeAddon, TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN } from '../dataplane/tun_device.js';
import {
  ConnCounts,
  IdRegistry,
  resolveServices,
  templateNamesMoved,
  type RealServerSpec,
  type ResolvedService,
  type ServiceSpec,
} from '../service/service.js';
import { serveAdmin, serveAdminTcp, socketAnswers } from './admin.js';
import { askWorker } from './ask.js';
import type { ConnFilter, ForwarderInit, ForwarderStats, FromForwarder, ToForwarder } from './forwarder_protocol.js';
import { fullGc, heapBytes } from './memory.js';
import { connFilterError, formatConns, matchesConn, templateRows, templatesOnly } from './conns.js';
import { HaNode } from '../ha/node.js';
import { HaControl } from '../ha/role.js';
import { SyncRing, type HaWorkerLink } from '../ha/session_sync.js';
import { HealthMonitor } from './health.js';
import { metricsRegistry, serveMetrics } from './metrics.js';
import { GLOBAL_COUNTER_NAMES } from '../dataplane/counters.js';
import { H_CAPACITY, H_LIVE } from '../conn/layout.js';
import type { Logger } from './log.js';
import { deviceStats, formatList, globalStats, listServices, RateEstimator, type ServiceRow } from './stats.js';

/** Cluster: how often the routes (what is announced) follow readiness and the peers. */
const ANNOUNCE_CHECK_MS = 200;
/** Sampling interval of the per-server rates (`tunvs list --rate`). */
const RATE_SAMPLE_MS = 2000;
/** How often the host's own addresses are compared with the VIPs and local addresses (one
 * rtnetlink dump per family, no process forked: native/tun.c localRoutes): a VRRP address can
 * appear at any role change. */
const SHADOW_CHECK_MS = 10_000;
import type { QueueStats } from '../dataplane/tun_device.js';
import {
  hostPrefix,
  localAddressPrefixes,
  routesElsewhere,
  servicePrefixes,
  shadowedAddresses,
  SystemChanges,
} from './system.js';
import { planRoutes, withdrawnVips } from '../ha/announce.js';
import { isnKeyId, type IsnKey } from '../nat/seq.js';
import { isnKey } from './isn_secret.js';

export interface RunOptions {
  configPath: string;
  logger: Logger;
  /** Override of the config's worker count (--workers). */
  workers?: number;
}

interface WorkerHandle {
  thread: Worker;
  /** The worker's shard (header: capacity, live, ...: conn/layout.ts). */
  table?: Int32Array;
  counters: Float64Array;
  counts: ConnCounts;
  syncRing?: SyncRing;
}

/** The admin socket's commands (handleAdmin), named in the answer to any other. */
const ADMIN_COMMANDS = ['list', 'stats', 'conns', 'role', 'ha', 'ready', 'edit', 'reload', 'cluster-forget'] as const;

/** What a reload of the file came to (`tunvs reload` prints it). */
export type ReloadResult =
  { ok: true; services: number; restartOnly: string[]; warnings: string[] } | { ok: false; error: string };

export class Runtime {
  private config!: Config;
  private services: ResolvedService[] = [];
  private readonly ids = new IdRegistry();
  /** DR: the packet socket toward the real servers and their MACs (control/link.ts). */
  private readonly link = new DrLink(
    (dev) => nativeAddon().openLink(dev, this.config.tun.offload),
    (fd) => nativeAddon().closeFd(fd),
    (dev) => nativeAddon().neighbours(dev),
    (address) => nativeAddon().routeGet(address),
  );
  private linkTimer: NodeJS.Timeout | undefined;
  private shadowTimer: NodeJS.Timeout | undefined;
  /** The main thread's stalls (loop_watch.ts): `tunvs stats` mainThread, the metrics. */
  private readonly loopWatch = new LoopWatch((msg) => this.log('warn', msg), nativeAddon());
  /** The VIPs and local addresses last found among the host's own (checkShadowed). */
  private shadowed = new Set<string>();
  /** Persistence templates, shared with every forwarder (conn/templates.ts). */
  private readonly templates = new TemplateTable();
  /** TUNNEL's learned path MTUs, shared with every forwarder (nat/tunnel_pmtu.ts). */
  private readonly tunnelMtus = new TunnelMtuTable();
  private readonly system: SystemChanges;
  private fds: number[] = [];
  private workers: WorkerHandle[] = [];
  private admin: Server | undefined;
  private metrics: Server | undefined;
  private adminTcp: Server | undefined;
  private readonly rates = new RateEstimator();
  private rateTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private isnKey: IsnKey = [0, 0, 0, 0];
  private ha: HaNode | undefined;
  /** io: xdp — the interfaces' maps and programs. */
  private xdp: XdpPrograms | undefined;
  private announceTimer: NodeJS.Timeout | undefined;
  /** Cluster: stopping in order; nothing is announced any more. */
  private draining = false;
  /** Cluster: the VIPs route health keeps quiet, as last routed (withdrawnNow()). */
  private withdrawnKey = '[]';
  private readonly health: HealthMonitor;
  /** HA control words shared with the forwarders (ha/role.ts). */
  private readonly haControl = new HaControl();

  constructor(private readonly opts: RunOptions) {
    this.system = new SystemChanges((m) => opts.logger.log('warn', m));
    this.health = new HealthMonitor(
      opts.logger,
      (_service, server, up, spec, what) => {
        this.pushServices();
        if (!up && spec.resetOnDown === true) void this.resetServer(server, what);
      },
      () => this.routeHealth() !== 'off',
    );
  }

  /** Send the services to the forwarders as health makes them (down servers at weight 0),
   * with what the DR link knows (control/link.ts); a cluster's announcements follow what
   * its route health makes of the new quorums. */
  private pushServices(): void {
    const services = this.link.annotate(this.health.effective(this.services));
    for (const w of this.workers) w.thread.postMessage({ type: 'services', services });
    if (this.routeHealth() !== 'off' && this.withdrawnNow() !== this.withdrawnKey) this.applyRoutes(this.services);
  }

  /** ha.routeHealth, off where there is no cluster. */
  private routeHealth(): RouteHealth {
    const ha = this.config?.ha;
    return ha?.mode === 'cluster' ? ha.routeHealth : 'off';
  }

  /** The VIPs of `services` route health keeps quiet now (ha/announce.ts withdrawnVips),
   * each with the services that cannot serve. A service whose quorum is not known yet (added
   * by a reload a moment ago) counts as serving. */
  private withdrawn(services: readonly ResolvedService[] = this.services): Map<string, string[]> {
    return withdrawnVips(
      this.routeHealth(),
      services.map((s) => ({
        prefix: hostPrefix(s.af, s.vip),
        name: s.name,
        serving: this.health.hasQuorum(s.id) !== false || s.realServers.at(-1)?.sorry === true,
      })),
    );
  }

  private withdrawnNow(): string {
    return JSON.stringify([...this.withdrawn()]);
  }

  private log(level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void {
    this.opts.logger.log(level, msg, fields);
  }

  async start(): Promise<void> {
    const config = loadConfig(this.opts.configPath);
    if (this.opts.workers !== undefined) config.workers = this.opts.workers;
    this.services = resolveServices(config.services, this.ids);
    this.config = config;
    this.isnKey = isnKey(config.isn, (msg) => this.log('warn', msg));
    for (const w of configWarnings(config)) this.log('warn', w);
    this.raisePriority(config.workerNice);
    // Before anything is touched: a second instance would take the first one's admin socket,
    // routes and rules (and its exit remove them). Its TUN device is the other guard (the
    // native open refuses a name that exists).
    if (await socketAnswers(config.adminSocket))
      throw new Error(
        `another tunvs runs here: its admin socket ${config.adminSocket} answers (stop it first, or give this one its own adminSocket and tun.name)`,
      );
    this.checkRoutedElsewhere(this.services);
    const native = nativeAddon();
    try {
      const tun = native.open(config.tun.name, config.workers, config.tun.offload);
      this.fds = tun.fds;
      this.applyOffload();
      // No IPv6 address on the TUN (it needs none to route): otherwise the kernel sends its
      // own MLD and router solicitations into the device. Must precede link up.
      this.system.deviceSysctl(tun.name, 'net/ipv6/conf/{dev}/addr_gen_mode', '1');
      this.system.deviceSysctl(tun.name, 'net/ipv4/conf/{dev}/rp_filter', '0');
      native.configure(tun.name, config.tun.mtu, config.tun.txqueuelen);
      this.steer(this.services);
      // Forwarding for the families the services use (a v4-only LB may run where IPv6 is off).
      if (this.services.some((s) => s.af === AF_INET)) this.system.sysctl('net.ipv4.ip_forward', '1');
      if (this.services.some((s) => s.af !== AF_INET)) this.system.sysctl('net.ipv6.conf.all.forwarding', '1');
      this.system.adoptFallbacks();
      this.system.clearStaleNatRules();
      this.applyRoutes(this.services);
      this.system.natReplyRules(this.services, config.tun.name);
      this.applyLink(this.link.plan(this.services), this.services);
      if (config.xdp && config.io === 'xdp') {
        this.xdp = new XdpPrograms(config.xdp);
        try {
          this.xdp.open();
        } catch (e) {
          if (e instanceof ConfigError) throw e; // an interface that is not there: fix the config
          this.xdpFallback((e as Error).message); // no XSKMAP (no CAP_BPF, ...)
        }
        const few = this.xdp?.fewQueues(config.workers) ?? [];
        if (few.length > 0)
          this.log(
            'warn',
            `xdp: fewer receive queues than forwarders on ${few.join(', ')}: the forwarders without a queue there send through the kernel (slower)`,
          );
      }
      // The HA words before the first packet, as the HaNode (made once the workers run) sets
      // them: a cluster node forwards from the start (nothing is routed to it before it is
      // ready and announces), a pair's node as its initial role says.
      if (config.ha) this.haControl.apply(config.ha.mode, config.ha.initialRole);
      await this.startWorkers();
      // The sockets are in the maps now: attach the programs.
      try {
        this.xdp?.update(xdpAddresses(this.services, []));
      } catch (e) {
        this.xdpFallback((e as Error).message);
      }
      this.linkTimer = setInterval(() => {
        if (this.link.refresh(this.services)) this.pushServices();
      }, LINK_REFRESH_MS);
      this.linkTimer.unref();
      this.checkShadowed();
      this.shadowTimer = setInterval(() => this.checkShadowed(), SHADOW_CHECK_MS);
      this.shadowTimer.unref();
      if (config.ha) {
        this.ha = new HaNode(
          config.ha,
          this.workers.map((w) => this.haLink(w)),
          this.opts.logger,
          this.haControl,
          { laddrs: () => localAddressPrefixes(this.services), isnKeyId: isnKeyId(this.isnKey) },
        );
        this.ha.start();
        if (config.ha.mode === 'cluster') {
          // Announce once ready (and what the peers need of this node as their backup).
          this.announceTimer = setInterval(() => this.applyRoutes(this.services), ANNOUNCE_CHECK_MS);
          this.announceTimer.unref();
        }
      }
      this.health.sync(this.services);
      // Rates for `list --rate`: per-server counters sampled every RATE_SAMPLE_MS.
      this.rateTimer = setInterval(() => this.rates.sample(this.listRows()), RATE_SAMPLE_MS);
      this.rateTimer.unref();
      this.admin = serveAdmin(config.adminSocket, (req) => this.handleAdmin(req));
      if (config.adminTcp) {
        const t = config.adminTcp;
        this.adminTcp = serveAdminTcp(t.host, t.port, t.token, (req) => this.handleAdmin(req));
        this.adminTcp.on('error', (e) => this.log('error', `admin TCP listener on ${t.host}:${t.port}: ${e.message}`));
      }
      if (config.metrics) this.startMetrics(config.metrics.host, config.metrics.port);
    } catch (e) {
      this.teardown();
      throw e;
    }
    this.loopWatch.start();
    process.on('SIGHUP', () => this.reload());
    process.on('SIGTERM', () => void this.stop(0));
    process.on('SIGINT', () => void this.stop(0));
    this.log('info', 'tunvs running', {
      io: this.ioNow(),
      ...(this.xdp ? { xdp: this.xdp.describe() } : {}),
      tun: config.tun.name,
      workers: config.workers,
      services: this.services.length,
      admin: config.adminSocket,
    });
  }

  /**
   * The TUN device's offloads (config tun.offload): the kernel then hands over GSO
   * super-packets and partial checksums, and takes them back. Every mode handles them; TUNNEL
   * finishes them in software (nat/gso.ts), since an IPIP packet cannot carry them back.
   */
  private applyOffload(): void {
    if (!this.config.tun.offload || this.fds.length === 0) return;
    nativeAddon().setOffload(this.fds[0]!, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN);
  }

  /** DR: the link on `dev` open (or none without DR services), the forwarders told, the
   * servers' MACs read (control/link.ts). */
  private applyLink(dev: string | undefined, services: readonly ResolvedService[]): void {
    const changed = dev === undefined ? this.link.fd >= 0 : this.link.open(dev);
    if (dev === undefined && this.link.fd >= 0) this.link.close(true);
    if (changed) {
      for (const w of this.workers) w.thread.postMessage({ type: 'link', fd: this.link.fd });
      this.log('info', dev === undefined ? 'DR link closed' : `DR link open on ${dev}`, { mac: this.link.mac });
    }
    this.link.refresh(services);
    // Resolutions just sent usually complete within a round trip: look again soon rather
    // than a whole refresh period later (new DR servers' first packets wait on it).
    if (this.link.missing > 0)
      setTimeout(() => {
        if (this.link.refresh(this.services)) this.pushServices();
      }, LINK_RESOLVE_RECHECK_MS).unref();
  }

  /** The cluster peers' local addresses the workers and the steering program last heard of. */
  private knownPeers = '';

  /** The cluster peers' local addresses (host prefixes), sorted. */
  private peerLaddrs(peers = this.ha?.peerAddresses() ?? []): string[] {
    return peers.flatMap((p) => p.laddrs).sort();
  }

  /** Tell the steering program the peers' local addresses: a taken-over peer's sessions live
   * in the worker its local port names, and the replies to them must go there as replies to
   * our own do (dataplane/shard.ts; the HA node tells the workers, ha/node.ts). */
  private learnPeers(services: readonly ResolvedService[], prefixes: string[]): void {
    this.knownPeers = prefixes.join(' ');
    this.steer(services, prefixAddresses(prefixes));
  }

  /** Attach (or replace) the steering program so each packet lands on its owner's queue. In
   * a cluster it also knows the peers' local addresses: a packet to one steered elsewhere
   * would be handed over, which a GSO super-packet does not fit (redirect_full: its flow
   * stalled). */
  private steer(services: readonly ResolvedService[], peerLaddrs?: ParsedAddress[]): void {
    peerLaddrs ??= prefixAddresses(this.peerLaddrs());
    // io: xdp — the frames of the same addresses to the AF_XDP sockets (attached at start, once
    // the forwarders run). A program that cannot be swapped leaves the previous one: the new
    // addresses' packets then take the TUN way.
    if (this.xdp && this.workers.length > 0) {
      try {
        this.xdp.update(xdpAddresses(services, peerLaddrs));
      } catch (e) {
        this.log('error', 'XDP program not replaced: new addresses go through the TUN device', {
          error: (e as Error).message,
        });
      }
    }
    if (this.fds.length < 2 || !this.config.tun.steering) return;
    try {
      nativeAddon().attachSteering(this.fds[0]!, steeringProgram(services, peerLaddrs));
    } catch (e) {
      this.log('warn', 'steering program not attached: workers will hand packets to their owners (slower)', {
        error: (e as Error).message,
      });
    }
  }

  /**
   * The main thread at the forwarders' priority, not below: it answers keepalived's check and
   * publishes the sessions, and under a full load forwarders at nice -10 would leave it a
   * tenth of each CPU at 0 (CFS weights 9548 and 1024): its checks late, the sync behind.
   * (setpriority on the calling thread: Linux's nice is per thread.)
   */
  private raisePriority(nice: number): void {
    if (nice === 0) return;
    try {
      setPriority(nice);
    } catch (e) {
      this.log(
        'warn',
        `the main thread stays at nice ${getPriority()}, below the forwarders' ${nice}: ${(e as Error).message} (workerNice needs CAP_SYS_NICE)`,
      );
    }
  }

  private async startWorkers(): Promise<void> {
    const url = new URL('../../workers/forwarder.js', import.meta.url);
    const capacity = Math.ceil(this.config.sessions / this.config.workers);
    const ready: Promise<void>[] = [];
    const xdpErrors: string[] = [];
    const n = this.config.workers;
    // rings[s][o]: sender s → owner o; ports[s][o]: s's end of the s–o wake-up channel.
    const rings = Array.from({ length: n }, (_, s) =>
      Array.from({ length: n }, (_, o) => (s === o ? null : new HandoffRing(undefined, handoffRingBytes(n)).sab)),
    );
    const ports: (MessagePort | null)[][] = Array.from({ length: n }, () =>
      new Array<MessagePort | null>(n).fill(null),
    );
    for (let a = 0; a < n; a++) {
      for (let b = a + 1; b < n; b++) {
        const ch = new MessageChannel();
        ports[a]![b] = ch.port1;
        ports[b]![a] = ch.port2;
      }
    }
    const allCounts = Array.from({ length: n }, () => new ConnCounts());
    for (let w = 0; w < n; w++) {
      const counters = createCounters();
      const counts = allCounts[w]!;
      const ha = this.config.ha;
      const syncRing = ha ? new SyncRing() : undefined;
      const init: ForwarderInit = {
        worker: w,
        workers: this.config.workers,
        fd: this.fds[w]!,
        capacity,
        mtu: this.xdp ? Math.min(this.config.tun.mtu, this.xdp.mtu) : this.config.tun.mtu,
        timeouts: this.config.timeouts,
        rstOnExpire: this.config.rstOnExpire,
        isnKey: this.isnKey,
        offload: this.config.tun.offload,
        nice: this.config.workerNice,
        services: this.link.annotate(this.health.effective(this.services)),
        countersSab: counters.buffer as SharedArrayBuffer,
        connCountsSab: counts.sab,
        nodeConnCountsSabs: allCounts.map((c) => c.sab),
        templatesSab: this.templates.sab,
        tunnelMtuSab: this.tunnelMtus.sab,
        linkFd: this.link.fd,
        handoffTo: rings[w]!,
        handoffFrom: rings.map((row) => row[w]!),
        wakePorts: ports[w]!,
        ...(this.xdp ? { xdp: { ports: this.xdp.portsFor(w), zeroCopy: this.config.xdp!.zeroCopy } } : {}),
        ...(ha && syncRing
          ? {
              ha: {
                nodeId: ha.nodeId,
                controlSab: this.haControl.sab,
                syncRingSab: syncRing.sab,
                syncAfterMs: ha.syncAfterMs,
                refreshSec: ha.refreshSec,
              },
            }
          : {}),
      };
      const transfer = ports[w]!.filter((p): p is MessagePort => p !== null);
      const thread = new Worker(url, { workerData: init, transferList: transfer, name: `tunvs-forwarder-${w}` });
      this.workers.push({ thread, counters, counts, ...(syncRing ? { syncRing } : {}) });
      ready.push(
        new Promise((resolve, reject) => {
          thread.once('message', (m: FromForwarder) => {
            if (m.type !== 'ready') return;
            this.workers[w]!.table = new Int32Array(m.tableSab, 0, 16);
            if (m.xdpError !== undefined) xdpErrors.push(`forwarder ${w}: ${m.xdpError}`);
            resolve();
          });
          thread.once('error', reject);
        }),
      );
      thread.on('error', (e) => {
        this.log('error', 'forwarder thread failed', { worker: w, error: e.message });
        void this.stop(1);
      });
      thread.on('exit', (code) => {
        if (!this.stopping) {
          this.log('error', 'forwarder thread exited', { worker: w, code });
          void this.stop(1);
        }
      });
    }
    await Promise.all(ready);
    if (xdpErrors.length > 0) this.xdpFallback(xdpErrors.join('; '));
  }

  /** What carries the packets: the config's io, unless XDP fell back to TUN. */
  private ioNow(): string {
    return this.config.io === 'xdp' && !this.xdp ? 'tun (xdp unavailable)' : this.config.io;
  }

  /** io: xdp could not start (sockets, program): say why and forward on the TUN device, which
   * the VIP and local-address routes already lead to (without its offloads: slower bulk). */
  private xdpFallback(why: string): void {
    this.log('error', `XDP unavailable, forwarding through the TUN device instead: ${why}`);
    this.xdp?.close();
    this.xdp = undefined;
  }

  private listRows(): ServiceRow[] {
    return listServices(
      this.services,
      this.workers.map((w) => w.counters),
      this.workers.map((w) => w.counts),
      this.health,
      (id) => this.tunnelMtus.get(id, Date.now()),
    );
  }

  private startMetrics(host: string, port: number): void {
    const reg = metricsRegistry(
      {
        stats: () => globalStats(this.workers.map((w) => w.counters)),
        services: () => this.listRows(),
        transitions: (s, r) => this.health.state(s, r)?.transitions,
        tables: () => this.workers.map((w) => ({ live: w.table?.[H_LIVE] ?? 0, capacity: w.table?.[H_CAPACITY] ?? 0 })),
        ha: () => this.ha?.status(),
        routes: () => this.system.routesOf(this.config.tun.name),
        mainThread: () => this.loopWatch.stats(),
        routeHealth: () => {
          if (this.routeHealth() === 'off') return [];
          const withdrawn = this.withdrawn();
          const vips = new Set(this.services.map((s) => hostPrefix(s.af, s.vip)));
          return [...vips].map((prefix) => ({ prefix, serving: !withdrawn.has(prefix) }));
        },
        forwarders: () => this.forwarderStats(),
        device: () => deviceStats(this.config.tun.name),
      },
      GLOBAL_COUNTER_NAMES,
    );
    this.metrics = serveMetrics(reg, host, port, (e) =>
      this.log('error', `metrics listener on ${host}:${port}: ${e.message}`),
    );
    this.log('info', 'metrics', { url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics` });
  }

  /** resetOnDown: every forwarder ends the sessions of real server `serverId` (`what`, in
   * the log); how many is logged. */
  private async resetServer(serverId: number, what: string): Promise<void> {
    try {
      const replies = await Promise.all(
        this.workers.map((w) =>
          this.ask<Extract<FromForwarder, { type: 'server-reset' }>>(
            w,
            { type: 'reset-server', id: 0, serverId },
            'server-reset',
          ),
        ),
      );
      const ended = replies.reduce((n, m) => n + m.ended, 0);
      this.log('warn', `health: ${what}: ${ended} sessions ended with RSTs (resetOnDown)`, { sessions: ended });
    } catch (e) {
      this.log('error', `health: ${what}: resetting its sessions: ${(e as Error).message}`);
    }
  }

  /** Ask a forwarder something (control/ask.ts: with a deadline). */
  private ask<T extends FromForwarder>(w: WorkerHandle, msg: ToForwarder, type: T['type']): Promise<T> {
    return askWorker<T>(w.thread, `forwarder ${this.workers.indexOf(w)}`, msg, type);
  }

  private haLink(w: WorkerHandle): HaWorkerLink {
    return {
      ring: w.syncRing!,
      install: (events, count) =>
        w.thread.postMessage({ type: 'sync-install', events, count }, [events.buffer as ArrayBuffer]),
      snapshot: async () => {
        const m = await this.ask<Extract<FromForwarder, { type: 'sync-snapshot' }>>(
          w,
          { type: 'sync-snapshot', id: 0 },
          'sync-snapshot',
        );
        return { records: m.records, writeCount: m.writeCount };
      },
      markStale: async (owner) => {
        await this.ask(w, { type: 'sync-mark', id: 0, owner }, 'sync-marked');
      },
      sweepStale: async (owner) => {
        await this.ask(w, { type: 'sync-sweep', id: 0, owner }, 'sync-swept');
      },
      adopt: async (owner) => {
        await this.ask(w, { type: 'sync-adopt', id: 0, owner }, 'sync-adopted');
      },
      reconcile: async (othersTo = 0) => {
        const m = await this.ask<Extract<FromForwarder, { type: 'sync-reconciled' }>>(
          w,
          { type: 'sync-reconcile', id: 0, othersTo },
          'sync-reconciled',
        );
        return { claimed: m.claimed, handedOver: m.handedOver };
      },
      publishYoung: async () => {
        const m = await this.ask<Extract<FromForwarder, { type: 'sync-published-young' }>>(
          w,
          { type: 'sync-publish-young', id: 0 },
          'sync-published-young',
        );
        return m.published;
      },
      peerLocalAddresses: (laddrs) => w.thread.postMessage({ type: 'peer-laddrs', laddrs }),
      peerWorkers: (counts) => w.thread.postMessage({ type: 'peer-workers', counts }),
    };
  }

  /** Each forwarder's queue counters and heap (asked over its message port, 1 s at most;
   * null for a worker that did not answer in time). */
  private forwarderStats(gc = false): Promise<(ForwarderStats | null)[]> {
    return Promise.all(
      this.workers.map((w, i) =>
        askWorker<Extract<FromForwarder, { type: 'stats' }>>(
          w.thread,
          `forwarder ${i}`,
          { type: 'stats', id: 0, ...(gc ? { gc } : {}) },
          'stats',
          1000,
        )
          .then((m) => ({ queue: m.queue, heapBytes: m.heapBytes }))
          .catch(() => null),
      ),
    );
  }

  /** `tunvs stats`'s queue counters and memory: the process's resident set (every thread),
   * the main thread's V8 heap and each forwarder's; with `gc`, after a full collection of
   * each (memory.ts). */
  private async forwarderFigures(gc: boolean): Promise<{
    queues: (QueueStats | null)[];
    memory: { rssBytes: number; mainHeapBytes: number; forwarderHeapBytes: (number | null)[]; gc: boolean };
  }> {
    if (gc) fullGc();
    const fs = await this.forwarderStats(gc);
    return {
      queues: fs.map((f) => f?.queue ?? null),
      memory: {
        gc,
        rssBytes: process.memoryUsage.rss(),
        mainHeapBytes: heapBytes(),
        forwarderHeapBytes: fs.map((f) => f?.heapBytes ?? null),
      },
    };
  }

  /** The HA node, for the admin commands that need one; without `ha:` in the config they fail
   * saying so (`without`: what the LB is then). */
  private haNode(without = 'no pair, always forwarding'): HaNode {
    if (!this.ha) throw new Error(`this LB runs without ha: in its config (${without})`);
    return this.ha;
  }

  /** Answer one admin request: its `cmd` is one of ADMIN_COMMANDS. */
  private async handleAdmin(req: Record<string, unknown>): Promise<unknown> {
    const counters = this.workers.map((w) => w.counters);
    switch (req.cmd) {
      case 'list': {
        const rows = this.listRows();
        if (req.rate === true) this.rates.annotate(rows);
        return { services: rows, text: formatList(rows, req.rate === true ? 'rate' : req.stats === true) };
      }
      case 'stats':
        return {
          ...globalStats(counters),
          tables: this.workers.map((w, worker) => {
            const live = w.table?.[H_LIVE] ?? 0;
            const capacity = w.table?.[H_CAPACITY] ?? 0;
            return { worker, sessions: live, capacity, load: capacity > 0 ? live / capacity : 0 };
          }),
          ...(await this.forwarderFigures(req.gc === true)),
          mainThread: this.loopWatch.stats(),
          device: deviceStats(this.config.tun.name),
          io: { mode: this.ioNow(), ...(this.xdp ? { xdp: this.xdp.describe() } : {}) },
          ...(this.ha ? { ha: this.ha.status() } : {}),
        };
      case 'role': {
        const ha = this.haNode();
        const role = String(req.role).toLowerCase();
        if (role !== 'master' && role !== 'backup' && role !== 'fault')
          throw new Error(`role must be master, backup or fault, got ${JSON.stringify(req.role)}`);
        ha.setRole(role);
        return { ha: ha.status() };
      }
      case 'edit':
        return this.edit(req);
      case 'conns': {
        const limit = Math.min(Math.max(Number(req.limit ?? 1000) || 1000, 1), 100_000);
        const filter = (req.filter ?? {}) as ConnFilter;
        const bad = connFilterError(filter);
        if (bad !== undefined) throw new Error(bad);
        const parts = templatesOnly(filter)
          ? []
          : await Promise.all(
              this.workers.map((w) =>
                this.ask<Extract<FromForwarder, { type: 'conns' }>>(
                  w,
                  { type: 'conns', id: 0, filter, limit },
                  'conns',
                ),
              ),
            );
        const templates = templateRows(this.templates.list(Date.now()), this.services).filter((t) =>
          matchesConn(t, filter),
        );
        const all = [...templates, ...parts.flatMap((p) => p.sessions)];
        const sessions = all.slice(0, limit);
        const more = parts.some((p) => p.more) || all.length > limit;
        return { sessions, more, text: formatConns(sessions) };
      }
      case 'ha':
        return {
          ha: this.haNode().status(),
          routes: this.system.routesOf(this.config.tun.name),
          routeHealth: this.routeHealth(),
          withdrawn: Object.fromEntries(this.withdrawn()),
        };
      case 'ready':
        // keepalived's track script asks it every second (native/ha_check.c, `tunvs ha check`):
        // the one answer it needs, without `ha`'s route listing.
        return { ready: this.haNode().ready };
      case 'reload': {
        const r = this.reload();
        if (!r.ok) throw new Error(r.error);
        return r;
      }
      case 'cluster-forget': {
        const ha = this.haNode('no cluster');
        const id = Number(req.id);
        if (!Number.isInteger(id) || id < 1 || id > NODE_ID_MAX)
          throw new Error(`node id must be 1..${NODE_ID_MAX}, got ${JSON.stringify(req.id)}`);
        await ha.forget(id);
        return { ha: ha.status() };
      }
      default:
        throw new Error(`unknown command ${JSON.stringify(req.cmd)}: use ${ADMIN_COMMANDS.join(', ')}`);
    }
  }

  /**
   * Runtime edits (`tunvs service ...`, `tunvs server ...`): validated like the config file,
   * applied like a reload (new sessions see them, existing sessions keep running). They live
   * until the next reload of the file, as ipvsadm edits do until keepalived reloads.
   */
  private edit(req: Record<string, unknown>): unknown {
    const specs = this.config.services.map((s) => ({ ...s, realServers: s.realServers.map((r) => ({ ...r })) }));
    const find = (name: unknown): ServiceSpec => {
      const s = specs.find((x) => x.name === name);
      if (!s) throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', 'service', `no service named ${JSON.stringify(name)}`);
      return s;
    };
    const server = (s: ServiceSpec): RealServerSpec => {
      const r = s.realServers.find((x) => x.address === req.address && x.port === req.port);
      if (!r)
        throw new ConfigError(
          'TUNVS_ERR_CONFIG_MISSING',
          'server',
          `service ${s.name} has no real server ${String(req.address)}:${String(req.port)}`,
        );
      return r;
    };
    switch (req.op) {
      case 'add-service': {
        const s = parseService(req.service, 'service');
        if (specs.some((x) => x.name === s.name))
          throw new ConfigError('TUNVS_ERR_CONFIG_DUPLICATE', 'service.name', `a service named ${s.name} exists`);
        specs.push(s);
        break;
      }
      case 'delete-service':
        specs.splice(specs.indexOf(find(req.service)), 1);
        break;
      case 'add-server': {
        const s = find(req.service);
        const r = parseService(
          { vip: s.vip, port: s.port, localAddresses: s.localAddresses, realServers: [req.server] },
          'service',
        ).realServers[0]!;
        s.realServers.push(r);
        break;
      }
      case 'delete-server': {
        const s = find(req.service);
        s.realServers.splice(s.realServers.indexOf(server(s)), 1);
        break;
      }
      case 'weight':
        server(find(req.service)).weight = req.weight as number;
        break;
      default:
        throw new Error(
          `unknown edit ${JSON.stringify(req.op)}: add-service, delete-service, add-server, delete-server, weight`,
        );
    }
    try {
      this.applyServices(specs);
    } catch (e) {
      // Name the edited service the way the command did, not by its index in the list.
      const i = req.op === 'add-service' ? specs.length - 1 : specs.findIndex((x) => x.name === req.service);
      const at = `services[${i}]`;
      if (e instanceof ConfigError && i >= 0 && e.path.startsWith(at)) {
        const label = req.op === 'add-service' ? 'service' : `service ${String(req.service)}`;
        throw new ConfigError(e.code, e.path.replace(at, label), e.message.slice(e.path.length + 2));
      }
      throw e;
    }
    this.log('info', `edit: ${String(req.op)}`);
    return { services: this.services.length };
  }

  /**
   * The routes into the TUN device for `services`: every VIP and local address; in cluster
   * mode also the peers' local addresses, each with the metric that says what the node's BGP
   * speaker announces (ha/announce.ts): nothing until the node is ready, nothing while it
   * drains.
   */
  private applyRoutes(services: readonly ResolvedService[]): void {
    const dev = this.config.tun.name;
    const ha = this.config.ha;
    if (ha?.mode !== 'cluster') {
      this.system.routeServices(services, dev);
      return;
    }
    const peers = this.ha?.peerAddresses() ?? [];
    const withdrawn = this.withdrawn(services);
    this.noteWithdrawn(withdrawn);
    const plan = planRoutes({
      self: ha.nodeId,
      announce: this.ha !== undefined && this.ha.ready && !this.draining,
      own: servicePrefixes(services).map((r) => r.prefix),
      quiet: new Set(withdrawn.keys()),
      peers,
    });
    const prefixes = this.peerLaddrs(peers);
    if (prefixes.join(' ') !== this.knownPeers) this.learnPeers(services, prefixes);
    try {
      this.system.routeExactly(plan, dev);
    } catch (e) {
      this.log('error', `cluster routes: ${(e as Error).message}`);
    }
  }

  /** Warn of a VIP or local address that is (now) an address of this host: the kernel
   * answers its packets itself, tunvs never sees them (system.ts shadowedAddresses). Each
   * once as it appears, and when it is gone again. */
  private checkShadowed(): void {
    let found: Map<string, string[]>;
    try {
      found = shadowedAddresses(this.services, nativeAddon().localRoutes());
    } catch {
      return; // no rtnetlink here: nothing to compare with
    }
    for (const [prefix, names] of found)
      if (!this.shadowed.has(prefix))
        this.log(
          'warn',
          `${prefix} (${names.join(', ')}) is an address of this host: the kernel delivers its packets to the host's own sockets, not into ${this.config.tun.name}, so the services cannot be reached there. Remove it from the interface (a VRRP address kept from LVS? with tunvs the routers' next hop floats: docs/ha.md)`,
          { address: prefix, services: names },
        );
    for (const prefix of this.shadowed)
      if (!found.has(prefix))
        this.log('info', `${prefix} is no longer both a service's address and an address of this host`, {
          address: prefix,
        });
    this.shadowed = new Set(found.keys());
  }

  /**
   * Before `services` are routed: the VIPs and local addresses not routed into the TUN device
   * yet that another route leads elsewhere (system.ts routesElsewhere). Into another TUN
   * device: most likely a second tunvs with its own device and admin socket serving the same
   * addresses; taking them over would cut that one off (and its exit would remove the routes
   * again), so this throws. Any other route is named in a warning: of two routes to a prefix
   * the lower metric takes the packets, and tunvs's replaces one of its own metric.
   */
  private checkRoutedElsewhere(services: readonly ResolvedService[]): void {
    const dev = this.config.tun.name;
    const ours = new Set(this.system.routesOf(dev).map((r) => r.prefix));
    const fresh = servicePrefixes(services)
      .map((r) => r.prefix)
      .filter((p) => !ours.has(p));
    if (fresh.length === 0) return;
    const found = routesElsewhere(fresh, dev);
    const taken = found.filter((r) => r.tun);
    if (taken.length > 0)
      throw new Error(
        `${taken.map((r) => `${r.prefix} is routed ${r.to}`).join(', ')}: another tunvs (or another program's TUN device) serves ${taken.length === 1 ? 'it' : 'them'} here; stop it, or keep each VIP and local address in one tunvs's config`,
      );
    for (const r of found)
      this.log(
        'warn',
        `${r.prefix} is also routed ${r.to} (metric ${r.metric}): of two routes to one prefix the lower metric takes the packets, and tunvs's route into ${dev} replaces one of the same metric (that one is gone for good then)`,
        { address: r.prefix, route: r.to, metric: r.metric },
      );
  }

  /** Log the VIPs route health withdraws and announces again, as they change. */
  private noteWithdrawn(withdrawn: Map<string, string[]>): void {
    const key = JSON.stringify([...withdrawn]);
    if (key === this.withdrawnKey) return;
    const before = new Map(JSON.parse(this.withdrawnKey) as [string, string[]][]);
    this.withdrawnKey = key;
    for (const [prefix, names] of withdrawn)
      if (!before.has(prefix))
        this.log('warn', `cluster: route health: ${prefix} withdrawn (${names.join(', ')} cannot serve)`, {
          vip: prefix,
          services: names,
        });
    for (const prefix of before.keys())
      if (!withdrawn.has(prefix)) this.log('info', `cluster: route health: ${prefix} announced again`, { vip: prefix });
  }

  /** Validate and apply a service set: routes, steering, health checks, forwarders. */
  private applyServices(specs: ServiceSpec[], path = 'services'): void {
    const services = resolveServices(specs, this.ids, path);
    this.checkRoutedElsewhere(services);
    const linkDev = this.link.plan(services, path);
    this.applyLink(linkDev, services);
    this.applyRoutes(services);
    this.system.natReplyRules(services, this.config.tun.name);
    this.steer(services);
    const renamed = templateNamesMoved(this.services, services);
    this.services = services;
    this.checkShadowed();
    this.health.sync(services);
    this.pushServices();
    this.config.services = specs;
    if (renamed) this.ha?.republish('a persistence group has another first service, which names its templates');
  }

  /** SIGHUP and `tunvs reload`: apply a new config's services; a bad file keeps the running
   * config. What came of it, for `tunvs reload` to say (it is logged either way). */
  reload(): ReloadResult {
    try {
      const next = loadConfig(this.opts.configPath);
      this.applyServices(next.services);
      const services = this.services;
      // Only services apply live; say so when anything else in the file changed.
      const keys = new Set([...Object.keys(next), ...Object.keys(this.config)] as (keyof Config)[]);
      const restartOnly = [...keys].filter(
        (k) => k !== 'services' && JSON.stringify(next[k]) !== JSON.stringify(this.config[k]),
      );
      if (
        restartOnly.length > 0 &&
        !(restartOnly.length === 1 && restartOnly[0] === 'workers' && this.opts.workers !== undefined)
      ) {
        this.log('warn', `reload: ${restartOnly.join(', ')} changed; these apply at the next restart`, {
          fields: restartOnly,
        });
      }
      const warnings = configWarnings(next);
      for (const w of warnings) this.log('warn', `reload: ${w}`);
      this.log('info', 'reloaded', { services: services.length });
      return { ok: true, services: services.length, restartOnly, warnings };
    } catch (e) {
      const fields = e instanceof ConfigError ? { code: e.code, path: e.path } : {};
      const error = `reload refused, still running the previous config: ${(e as Error).message}`;
      this.log('error', error, fields);
      return { ok: false, error };
    }
  }

  private teardown(): void {
    if (this.linkTimer) clearInterval(this.linkTimer);
    if (this.shadowTimer) clearInterval(this.shadowTimer);
    this.loopWatch.stop();
    this.xdp?.close();
    this.link.close();
    this.admin?.close();
    this.metrics?.close();
    this.adminTcp?.close();
    // A node of a pair keeps its blackholes: until the routers follow VRRP to the peer, the
    // VIPs' packets that still reach it are dropped (and retried by the clients), not bounced.
    this.system.restore(this.config.ha !== undefined);
    const native = nativeAddon();
    for (const fd of this.fds) native.closeFd(fd);
    this.fds = [];
  }

  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log('info', 'stopping', { code });
    const ha = this.config?.ha;
    if (code === 0 && ha?.mode === 'cluster' && this.ha) {
      // Withdraw first, forward on while the routers move the flows to the peers.
      this.draining = true;
      if (this.announceTimer) clearInterval(this.announceTimer);
      this.applyRoutes(this.services);
      this.log('info', `cluster: announcements withdrawn, draining for ${ha.drainMs} ms`);
      // The connections younger than syncAfterMs too: the flows the routers move to the peers
      // go on there, as the older ones do (docs/cluster.md, "Leaving in order").
      const t0 = Date.now();
      await this.ha.publishYoung('leaving the cluster');
      await new Promise((r) => setTimeout(r, Math.max(0, ha.drainMs - (Date.now() - t0))));
      // And the connections the routers still brought it meanwhile (a withdrawal takes them
      // a moment, or seconds): they go on at the peers too.
      await this.ha.publishYoung('drained');
    } else if (code === 0 && this.ha) {
      // A pair's master stopped in order (an upgrade): its standby installs the young
      // connections now and adopts them when keepalived promotes it (docs/ha.md).
      await this.ha.publishYoung('stopping');
    }
    await this.ha?.stop();
    this.health.stop();
    if (this.rateTimer) clearInterval(this.rateTimer);
    for (const w of this.workers) w.thread.postMessage({ type: 'stop' });
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => void w.thread.terminate().then(() => resolve()), 2000);
            w.thread.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
    this.teardown();
    process.exit(code);
  }
}
