/**
 * Health checks of the real servers, run from the LB's main thread, each server every
 * `interval` with the service's check (control/checks/: tcp, http, https, udp, dns, smtp,
 * exec). `fall` failures in a row take a server down, `rise` successes bring it back. A server
 * that is down gets no new sessions (the forwarders see it with weight 0, which drains); its
 * existing sessions continue. An exec check with dynamicWeight sets the weight the forwarders
 * see while the server is up.
 * Transitions are logged and counted; `tunvs list`, `stats` and /metrics show the state.
 */

import { HEALTH_NOTIFY_TIMEOUT_SEC } from '../constants.js';
import { runCheck, runCommand, type CheckResult, type CheckTarget } from './checks/index.js';
import type { Logger } from './log.js';
import type { HealthCheckSpec, ResolvedRealServer, ResolvedService } from '../service/service.js';

export interface ServerHealth {
  up: boolean;
  /** Checks in a row that passed / failed. */
  okStreak: number;
  failStreak: number;
  transitions: number;
  checks: number;
  lastError?: string;
  lastChange?: string;
  /** The weight the last dynamic check set (exec with dynamicWeight); absent: the config's. */
  weight?: number;
}

interface Checker {
  key: string;
  spec: HealthCheckSpec;
  /** The service and server, as logged. */
  what: string;
  target: CheckTarget;
  /** The next check's; undefined while one runs. */
  timer: NodeJS.Timeout | undefined;
  state: ServerHealth;
  ids: { service: number; server: number };
}

export function healthKey(serviceId: number, serverId: number): string {
  return `${serviceId}/${serverId}`;
}

export class HealthMonitor {
  private readonly checkers = new Map<string, Checker>();
  /** Per service with a sorry server or a quorum command (every service, with
   * `quorumOfAll`): whether it has its quorum (effective()). */
  private readonly quorum = new Map<number, boolean>();
  /** Per service: its last quorum command, which the next one waits for (they run in order). */
  private readonly quorumRuns = new Map<number, Promise<void>>();

  /** `onChange` runs after a server went up or down (`what`: the service and server, as logged).
   * `quorumOfAll`: whether to keep every service's quorum, not only those a sorry server or
   * a quorum command needs it for (a cluster's route health reads it; asked as the config
   * is known). */
  constructor(
    private readonly logger: Logger,
    private readonly onChange: (
      serviceId: number,
      serverId: number,
      up: boolean,
      spec: HealthCheckSpec,
      what: string,
    ) => void,
    private readonly quorumOfAll: () => boolean = () => false,
  ) {}

  /** Whether service `s`'s quorum is kept. */
  private tracked(s: ResolvedService): boolean {
    return this.quorumOfAll() || quorumTracked(s);
  }

  /** Start, keep or stop checkers to match `services` (start-up and every reload). */
  sync(services: readonly ResolvedService[]): void {
    const want = new Set<string>();
    for (const s of services) {
      if (!s.healthCheck) continue;
      for (const rs of s.realServers) {
        if (rs.sorry) continue; // not checked: it stands in while the others fail
        const key = healthKey(s.id, rs.id);
        const ids = { service: s.id, server: rs.id };
        want.add(key);
        const old = this.checkers.get(key);
        const spec = s.healthCheck;
        if (old && JSON.stringify(old.spec) === JSON.stringify(spec)) continue;
        if (old) clearTimeout(old.timer);
        const what = `${s.name} ${rs.address}:${rs.port}`;
        const c: Checker = {
          key,
          spec,
          what,
          target: { address: rs.address, port: spec.port ?? rs.port, service: s.name },
          // A server starts up (as without checks) and has to fail `fall` times to go down;
          // with startDown (keepalived's alpha) it starts down and has to pass `rise` times.
          state: old?.state ?? {
            up: spec.startDown !== true,
            okStreak: 0,
            failStreak: 0,
            transitions: 0,
            checks: 0,
          },
          timer: undefined,
          ids,
        };
        // A weight set by a dynamic check lasts while the check may set it again.
        if (spec.dynamicWeight !== true) delete c.state.weight;
        this.checkers.set(key, c);
        void this.run(c);
      }
    }
    for (const id of this.quorum.keys())
      if (!services.some((s) => s.id === id && this.tracked(s))) {
        this.quorum.delete(id);
        this.quorumRuns.delete(id);
      }
    for (const [key, c] of this.checkers) {
      if (!want.has(key)) {
        clearTimeout(c.timer);
        this.checkers.delete(key);
      }
    }
  }

  /** Check `c` now, then again `interval` after this one began, or `retryInterval` after while
   * it is failing but not yet down (keepalived's delay_before_retry); a check that outlasts
   * that is followed at once. They never overlap. A checker replaced or removed meanwhile
   * stops. */
  private async run(c: Checker): Promise<void> {
    const began = Date.now();
    const result = await runCheck(c.spec, c.target);
    if (this.checkers.get(c.key) !== c) return;
    this.judge(c, result);
    const st = c.state;
    const sec = st.up && st.failStreak > 0 ? (c.spec.retryInterval ?? c.spec.interval) : c.spec.interval;
    c.timer = setTimeout(() => void this.run(c), Math.max(0, began + sec * 1000 - Date.now()));
    c.timer.unref();
  }

  /** One check's result on its server's state: streaks, weight, going down or up. */
  private judge(c: Checker, result: CheckResult): void {
    const what = c.what;
    const st = c.state;
    st.checks++;
    if (result.ok) {
      st.okStreak++;
      st.failStreak = 0;
      delete st.lastError;
    } else {
      st.failStreak++;
      st.okStreak = 0;
      st.lastError = result.error;
    }
    const reweighed = result.ok && result.weight !== undefined && result.weight !== st.weight;
    if (reweighed) {
      st.weight = result.weight;
      this.logger.log('info', `health: ${what} weight ${result.weight} (from the check's exit status)`);
    }
    const flip = (st.up && st.failStreak >= c.spec.fall) || (!st.up && st.okStreak >= c.spec.rise);
    if (!flip) {
      if (reweighed && st.up) this.onChange(c.ids.service, c.ids.server, true, c.spec, what);
      return;
    }
    st.up = !st.up;
    st.transitions++;
    st.lastChange = new Date().toISOString();
    this.logger.log(st.up ? 'info' : 'warn', `health: ${what} is ${st.up ? 'UP' : 'DOWN'}`, {
      check: c.spec.type,
      ...(!result.ok ? { error: result.error } : {}),
    });
    this.onChange(c.ids.service, c.ids.server, st.up, c.spec, what);
    const notify = st.up ? c.spec.notifyUp : c.spec.notifyDown;
    if (notify) void this.notify(c, notify, st.up ? 'up' : 'down');
  }

  /** Run a notification command (notifyUp, notifyDown) of `c`'s server; a failure is logged. */
  private async notify(c: Checker, argv: readonly string[], event: 'up' | 'down'): Promise<void> {
    const end = await runCommand(argv, c.target, HEALTH_NOTIFY_TIMEOUT_SEC, c.spec.user, { TUNVS_EVENT: event });
    if ('error' in end || end.status !== 0)
      this.logger.log('warn', `health: ${c.what}: notify${event === 'up' ? 'Up' : 'Down'} ${argv[0]!} failed`, {
        ...('error' in end ? { error: end.error } : { status: end.status }),
      });
  }

  /** Health of a real server of a service (undefined: not checked). */
  state(serviceId: number, serverId: number): ServerHealth | undefined {
    return this.checkers.get(healthKey(serviceId, serverId))?.state;
  }

  /** The services as the forwarders should see them: servers that are down at weight 0, those
   * a dynamic check reweighed at its weight; a service that lost its quorum with every real
   * server at 0 and its sorry server at 1 (keepalived's sorry_server; updateQuorum). */
  effective(services: readonly ResolvedService[]): ResolvedService[] {
    const weightOf = (serviceId: number, rs: ResolvedRealServer): number => {
      const st = this.state(serviceId, rs.id);
      if (st?.up === false) return 0;
      return st?.weight ?? rs.weight;
    };
    return services.map((s) => {
      const tracked = this.tracked(s);
      if (!s.healthCheck && !tracked) return s;
      const weights = s.realServers.map((rs) => (rs.sorry ? 0 : s.healthCheck ? weightOf(s.id, rs) : rs.weight));
      const sum = weights.reduce((a, w) => a + w, 0);
      if (tracked && !this.updateQuorum(s, sum) && s.realServers.at(-1)?.sorry === true) {
        weights.fill(0);
        weights[weights.length - 1] = 1;
      }
      return weights.every((w, i) => w === s.realServers[i]!.weight)
        ? s
        : {
            ...s,
            realServers: s.realServers.map((rs, i) => (weights[i] === rs.weight ? rs : { ...rs, weight: weights[i]! })),
          };
    });
  }

  /** Whether service `s` (with a sorry server or a quorum command) has its quorum, its
   * servers' weights summing to `sum`: lost under quorum − hysteresis (or at 0), regained at
   * quorum + hysteresis, as keepalived's update_quorum_state; a service seen first starts up
   * only at quorum + hysteresis. Transitions are logged and run quorumUp / quorumDown; a
   * service that starts without its quorum runs quorumDown (keepalived does only with a
   * sorry server), so a command that withdraws a route sees every state. */
  private updateQuorum(s: ResolvedService, sum: number): boolean {
    const was = this.quorum.get(s.id);
    const up = was === true ? sum > 0 && sum >= s.quorum - s.hysteresis : sum >= s.quorum + s.hysteresis;
    this.quorum.set(s.id, up);
    if (up === was || (was === undefined && up)) return up;
    const sorry = s.realServers.at(-1)!.sorry === true ? s.realServers.at(-1)! : undefined;
    const to = sorry ? `: new sessions to the sorry server ${sorry.address}:${sorry.port}` : '';
    this.logger.log(
      up ? 'info' : 'warn',
      up
        ? `health: ${s.name} has its quorum again (weights up ${sum} ≥ ${s.quorum + s.hysteresis})${sorry ? ': new sessions to its real servers' : ''}`
        : was === undefined
          ? `health: ${s.name} starts without its quorum (weights up ${sum} < ${s.quorum + s.hysteresis})${to}`
          : `health: ${s.name} lost its quorum (weights up ${sum} < ${s.quorum - s.hysteresis})${to}`,
    );
    const argv = up ? s.quorumUp : s.quorumDown;
    if (argv) {
      const run = (this.quorumRuns.get(s.id) ?? Promise.resolve()).then(() => this.quorumCommand(s, argv, up, sum));
      this.quorumRuns.set(s.id, run);
    }
    return up;
  }

  /** Run service `s`'s quorumUp or quorumDown (`{address}` and `{port}`: its VIP and port),
   * as its check's user when it names one; a failure is logged. */
  private async quorumCommand(s: ResolvedService, argv: readonly string[], up: boolean, sum: number): Promise<void> {
    const end = await runCommand(
      argv,
      { address: s.vipText, port: s.port, service: s.name },
      HEALTH_NOTIFY_TIMEOUT_SEC,
      s.healthCheck?.user,
      { TUNVS_EVENT: up ? 'quorum-up' : 'quorum-down', TUNVS_QUORUM_WEIGHT: String(sum) },
    );
    if ('error' in end || end.status !== 0)
      this.logger.log('warn', `health: ${s.name}: quorum${up ? 'Up' : 'Down'} ${argv[0]!} failed`, {
        ...('error' in end ? { error: end.error } : { status: end.status }),
      });
  }

  /** Whether service `serviceId` has its quorum (undefined: not tracked, as without a sorry
   * server or a quorum command). While it has not, its sorry server takes its new sessions. */
  hasQuorum(serviceId: number): boolean | undefined {
    return this.quorum.get(serviceId);
  }

  stop(): void {
    for (const c of this.checkers.values()) clearTimeout(c.timer);
    this.checkers.clear();
  }
}

/** A service whose quorum is followed: it has a sorry server or a quorum command. */
function quorumTracked(s: ResolvedService): boolean {
  return s.realServers.at(-1)?.sorry === true || s.quorumUp !== undefined || s.quorumDown !== undefined;
}
