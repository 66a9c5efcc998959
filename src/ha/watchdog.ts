/**
 * `tunvs cluster watchdog`: withdraws a cluster node whose tunvs is hung (alive, but not
 * answering or not ready), the one failure the node cannot announce itself: its TUN device
 * and routes stay, so the routers keep sending it flows it no longer forwards. It runs beside
 * tunvs, as keepalived's track script does for a pair:
 *
 *   every intervalMs   ask tunvs's admin socket for its HA status (`tunvs ha check`'s question)
 *   fall failures      re-add every announced route into the TUN with the quiet metric (the
 *                      BGP speaker withdraws it), remembering each one and the device
 *   rise passes        put them back as they were, if it is still the same device (a tunvs
 *                      that died meanwhile took its routes with it, and a new one routes anew)
 *
 * A dead tunvs needs no watchdog: the kernel deletes its routes with the device.
 */

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE, ROUTE_METRIC_QUIET } from '../constants.js';
import { adminRequest } from '../control/admin.js';
import { IpBatch } from '../control/ip_batch.js';

export interface WatchdogOptions {
  admin: string;
  dev: string;
  intervalMs: number;
  fall: number;
  rise: number;
  log: (line: string) => void;
}

interface Withdrawn {
  family: '-4' | '-6';
  prefix: string;
  metric: number;
}

function announced(metric: number | undefined): metric is number {
  return metric !== undefined && (metric === ROUTE_METRIC_ANNOUNCED || metric > ROUTE_METRIC_BACKUP_BASE);
}

function ifindex(dev: string): string | undefined {
  try {
    return readFileSync(`/sys/class/net/${dev}/ifindex`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The announced routes into `dev`, moved to the quiet metric (two `ip` processes for all
 * of them, control/ip_batch.ts: the quiet routes, then the announced ones' removal); returns
 * those moved, and what could not be. */
export function withdrawRoutes(dev: string): { moved: Withdrawn[]; errors: string[] } {
  const out: Withdrawn[] = [];
  const put = new IpBatch();
  const errors: string[] = [];
  for (const family of ['-4', '-6'] as const) {
    const listed = JSON.parse(
      execFileSync('ip', ['-j', family, 'route', 'show', 'dev', dev], { encoding: 'utf8' }) || '[]',
    ) as { dst: string; metric?: number }[];
    for (const r of listed) {
      if (!announced(r.metric)) continue;
      const prefix = r.dst.includes('/') ? r.dst : `${r.dst}/${family === '-4' ? 32 : 128}`;
      const metric = r.metric;
      put.add(['route', 'replace', prefix, 'dev', dev, 'metric', String(ROUTE_METRIC_QUIET)], (err) => {
        if (err === undefined) out.push({ family, prefix, metric });
        else errors.push(`${prefix}: ${err}`);
      });
    }
  }
  put.run();
  // The announced ones go where the quiet one is in place.
  const take = new IpBatch();
  for (const r of out) take.add(['route', 'del', r.prefix, 'dev', dev, 'metric', String(r.metric)]);
  take.run();
  return { moved: out, errors };
}

/** Put withdrawn routes back (the quiet ones go; one that tunvs put back itself meanwhile
 * is gone already). */
export function restoreRoutes(dev: string, routes: readonly Withdrawn[]): void {
  const put = new IpBatch();
  const take = new IpBatch();
  const errors: string[] = [];
  for (const r of routes) {
    put.add(['route', 'replace', r.prefix, 'dev', dev, 'metric', String(r.metric)], (err) => {
      if (err !== undefined) errors.push(`${r.prefix}: ${err}`);
      else take.add(['route', 'del', r.prefix, 'dev', dev, 'metric', String(ROUTE_METRIC_QUIET)]);
    });
  }
  put.run();
  take.run();
  if (errors.length > 0) throw new Error(`restore routes into ${dev}: ${errors.join('; ')}`);
}

/** Run until `signal` aborts. */
export async function runWatchdog(o: WatchdogOptions, signal: AbortSignal): Promise<void> {
  let fails = 0;
  let passes = 0;
  let withdrawn: { ifindex: string | undefined; routes: Withdrawn[] } | undefined;
  o.log(`watchdog: checking ${o.admin} every ${o.intervalMs} ms (fall ${o.fall}, rise ${o.rise}), device ${o.dev}`);
  while (!signal.aborted) {
    let ok = false;
    try {
      const r = (await adminRequest(o.admin, { cmd: 'ha' }, Math.max(100, o.intervalMs - 100))) as {
        ha: { ready: boolean };
      };
      ok = r.ha.ready;
    } catch {
      ok = false;
    }
    fails = ok ? 0 : fails + 1;
    passes = ok ? passes + 1 : 0;
    try {
      if (!withdrawn && fails >= o.fall) {
        const { moved, errors } = withdrawRoutes(o.dev);
        withdrawn = { ifindex: ifindex(o.dev), routes: moved };
        // A tunvs still starting (not ready) has announced nothing yet: say that, not "withdrew 0".
        o.log(
          moved.length > 0
            ? `watchdog: tunvs failed ${fails} checks: withdrew ${moved.length} announced routes`
            : `watchdog: tunvs not ready or not answering (${fails} checks): nothing announced to withdraw`,
        );
        if (errors.length > 0) o.log(`watchdog: could not withdraw ${errors.join('; ')}`);
      } else if (withdrawn && passes >= o.rise) {
        if (withdrawn.ifindex !== undefined && withdrawn.ifindex === ifindex(o.dev)) {
          restoreRoutes(o.dev, withdrawn.routes);
          o.log(
            withdrawn.routes.length > 0
              ? `watchdog: tunvs answers again: ${withdrawn.routes.length} routes announced again`
              : 'watchdog: tunvs answers and is ready',
          );
        } else {
          o.log('watchdog: tunvs answers again on a new device: it announces by itself');
        }
        withdrawn = undefined;
      }
    } catch (e) {
      o.log(`watchdog: ${(e as Error).message}`);
    }
    await new Promise((r) => setTimeout(r, o.intervalMs));
  }
}
