/**
 * Health checks of the real servers, run from the LB's main thread: a TCP connect, or an HTTP
 * GET (plain or over TLS) expecting a status (and optionally a string in the body). `fall`
 * failures in a row take a server down, `rise` successes bring it back. A server that is down
 * gets no new sessions (the forwarders see it with weight 0, which drains); its existing
 * sessions continue.
 * Transitions are logged and counted; `tunvs list`, `stats` and /metrics show the state.
 */

import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, isIP } from 'node:net';
import type { Logger } from './log.js';
import type { HealthCheckSpec, ResolvedService } from '../service/service.js';

export interface ServerHealth {
  up: boolean;
  /** Checks in a row that passed / failed. */
  okStreak: number;
  failStreak: number;
  transitions: number;
  checks: number;
  lastError?: string;
  lastChange?: string;
}

interface Checker {
  key: string;
  spec: HealthCheckSpec;
  host: string;
  port: number;
  timer: NodeJS.Timeout;
  state: ServerHealth;
  busy: boolean;
  ids: { service: number; server: number };
}

/** One check: resolves with an error text, or undefined when it passed. */
export function probe(spec: HealthCheckSpec, host: string, port: number): Promise<string | undefined> {
  const ms = spec.timeout * 1000;
  return new Promise((resolve) => {
    if (spec.type === 'tcp') {
      const sock = connect({ host, port, timeout: ms });
      sock.once('connect', () => {
        sock.destroy();
        resolve(undefined);
      });
      sock.once('timeout', () => {
        sock.destroy();
        resolve(`connect timed out after ${spec.timeout} s`);
      });
      sock.once('error', (e: Error & { code?: string }) => resolve(`connect: ${e.code ?? e.message}`));
      return;
    }
    const opts = {
      host,
      port,
      path: spec.path,
      method: 'GET',
      timeout: ms,
      agent: false as const,
      ...(spec.host !== undefined ? { headers: { host: spec.host } } : {}),
    };
    const onResponse = (res: IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < 65536) body += c;
      });
      res.on('end', () => {
        if (res.statusCode !== spec.expectStatus) resolve(`HTTP ${res.statusCode}, expected ${spec.expectStatus}`);
        else if (spec.expectBody !== undefined && !body.includes(spec.expectBody))
          resolve(`body does not contain ${JSON.stringify(spec.expectBody)}`);
        else resolve(undefined);
      });
      res.on('error', (e) => resolve(`HTTP: ${e.message}`));
    };
    // Over TLS the server's certificate is not verified: the check asks whether the server
    // answers (its certificate names the service, not the server's address), as keepalived's
    // SSL_GET does. The Host, when it is a name, goes out as the server name (SNI) too.
    const name = spec.host?.replace(/:\d+$/, '');
    const req =
      spec.type === 'https'
        ? httpsRequest(
            { ...opts, rejectUnauthorized: false, ...(name && isIP(name) === 0 ? { servername: name } : {}) },
            onResponse,
          )
        : request(opts, onResponse);
    req.once('timeout', () => req.destroy(new Error(`timed out after ${spec.timeout} s`)));
    req.once('error', (e: Error & { code?: string }) => resolve(`HTTP: ${e.code ?? e.message}`));
    req.end();
  });
}

export function healthKey(serviceId: number, serverId: number): string {
  return `${serviceId}/${serverId}`;
}

export class HealthMonitor {
  private readonly checkers = new Map<string, Checker>();

  /** `onChange` runs after a server went up or down (`what`: the service and server, as logged). */
  constructor(
    private readonly logger: Logger,
    private readonly onChange: (
      serviceId: number,
      serverId: number,
      up: boolean,
      spec: HealthCheckSpec,
      what: string,
    ) => void,
  ) {}

  /** Start, keep or stop checkers to match `services` (start-up and every reload). */
  sync(services: readonly ResolvedService[]): void {
    const want = new Set<string>();
    for (const s of services) {
      if (!s.healthCheck) continue;
      for (const rs of s.realServers) {
        const key = healthKey(s.id, rs.id);
        const ids = { service: s.id, server: rs.id };
        want.add(key);
        const old = this.checkers.get(key);
        const spec = s.healthCheck;
        if (old && JSON.stringify(old.spec) === JSON.stringify(spec)) continue;
        if (old) clearInterval(old.timer);
        const c: Checker = {
          key,
          spec,
          host: rs.address,
          port: spec.port ?? rs.port,
          busy: false,
          // A server starts up (as without checks) and has to fail `fall` times to go down.
          state: old?.state ?? { up: true, okStreak: 0, failStreak: 0, transitions: 0, checks: 0 },
          timer: setInterval(() => void this.check(c, `${s.name} ${rs.address}:${rs.port}`), spec.interval * 1000),
          ids,
        };
        c.timer.unref();
        this.checkers.set(key, c);
        void this.check(c, `${s.name} ${rs.address}:${rs.port}`);
      }
    }
    for (const [key, c] of this.checkers) {
      if (!want.has(key)) {
        clearInterval(c.timer);
        this.checkers.delete(key);
      }
    }
  }

  private async check(c: Checker, what: string): Promise<void> {
    if (c.busy) return;
    c.busy = true;
    const err = await probe(c.spec, c.host, c.port);
    c.busy = false;
    if (!this.checkers.has(c.key)) return;
    const st = c.state;
    st.checks++;
    if (err === undefined) {
      st.okStreak++;
      st.failStreak = 0;
      delete st.lastError;
    } else {
      st.failStreak++;
      st.okStreak = 0;
      st.lastError = err;
    }
    const flip = (st.up && st.failStreak >= c.spec.fall) || (!st.up && st.okStreak >= c.spec.rise);
    if (!flip) return;
    st.up = !st.up;
    st.transitions++;
    st.lastChange = new Date().toISOString();
    this.logger.log(st.up ? 'info' : 'warn', `health: ${what} is ${st.up ? 'UP' : 'DOWN'}`, {
      check: c.spec.type,
      ...(err ? { error: err } : {}),
    });
    this.onChange(c.ids.service, c.ids.server, st.up, c.spec, what);
  }

  /** Health of a real server of a service (undefined: not checked). */
  state(serviceId: number, serverId: number): ServerHealth | undefined {
    return this.checkers.get(healthKey(serviceId, serverId))?.state;
  }

  /** The services as the forwarders should see them: servers that are down at weight 0. */
  effective(services: readonly ResolvedService[]): ResolvedService[] {
    return services.map((s) =>
      s.healthCheck
        ? {
            ...s,
            realServers: s.realServers.map((rs) => (this.state(s.id, rs.id)?.up === false ? { ...rs, weight: 0 } : rs)),
          }
        : s,
    );
  }

  stop(): void {
    for (const c of this.checkers.values()) clearInterval(c.timer);
    this.checkers.clear();
  }
}
