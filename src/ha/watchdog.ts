/**
 * `tunvs cluster watchdog`: withdraws a cluster node whose tunvs is hung (alive, but not
 * answering or not ready), the one failure the node cannot announce itself: its TUN device
 * and routes stay, so the routers keep sending it flows it no longer forwards. It runs beside
 * tunvs, as keepalived's track script does for a pair:
 *
 *   every intervalMs   ask tunvs's admin socket for its HA status (`tunvs ha check`'s question)
 *   fall failures      re-add every announced route into the TUN with the quiet metric (the
 *                      BGP speaker withdraws it), remembering each one and the device
 *   rise passes        put them back as tunvs now records them (its answer lists its routes),
 *                      if it is still the same device (a tunvs that died meanwhile took its
 *                      routes with it, and a new one routes anew). Not as they were: tunvs may
 *                      have moved one while it was withdrawn (route health, a peer's rank), and
 *                      its later changes go from its record, not from the kernel's table
 *
 * A dead tunvs needs no watchdog: the kernel deletes its routes with the device.
 */

import { readFileSync } from 'node:fs';
import { ROUTE_METRIC_ANNOUNCED, ROUTE_METRIC_BACKUP_BASE, ROUTE_METRIC_QUIET } from '../constants.js';
import { adminRequest } from '../control/admin.js';
import { IpBatch } from '../control/ip_batch.js';
import { kernelMetric, listRoutes } from '../control/system.js';

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
  for (const r of listRoutes(['dev', dev])) {
    if (!announced(r.metric)) continue;
    const { family, prefix, metric } = r;
    put.add(['route', 'replace', prefix, 'dev', dev, 'metric', String(ROUTE_METRIC_QUIET)], (err) => {
      if (err === undefined) out.push({ family, prefix, metric });
      else errors.push(`${prefix}: ${err}`);
    });
  }
  put.run();
  // The announced ones go where the quiet one is in place.
  const take = new IpBatch();
  for (const r of out) take.add(['route', 'del', r.prefix, 'dev', dev, 'metric', String(r.metric)]);
  take.run();
  return { moved: out, errors };
}

/** A route into the device as tunvs records it (its `ha` answer's `routes`). */
export interface RecordedRoute {
  prefix: string;
  metric?: number;
}

/** Put the withdrawn prefixes' routes back as tunvs records them (`recorded`): its metric
 * for each (added if missing), every other metric of the prefix on the device removed (the
 * quiet one put in by the watchdog, an old one tunvs moved away from meanwhile), and none
 * for a prefix tunvs no longer routes. Returns how many prefixes are announced again. */
export function restoreRoutes(dev: string, routes: readonly Withdrawn[], recorded: readonly RecordedRoute[]): number {
  const want = new Map(recorded.map((r) => [r.prefix, r.metric ?? kernelMetric(r.prefix.includes(':') ? '-6' : '-4')]));
  const put = new IpBatch();
  const take = new IpBatch();
  const errors: string[] = [];
  let announcedAgain = 0;
  const inKernel = new Map<string, number[]>();
  for (const r of listRoutes(['dev', dev])) inKernel.set(r.prefix, [...(inKernel.get(r.prefix) ?? []), r.metric]);
  for (const prefix of new Set(routes.map((r) => r.prefix))) {
    const metric = want.get(prefix);
    const have = inKernel.get(prefix) ?? [];
    if (metric !== undefined && !have.includes(metric))
      put.add(['route', 'replace', prefix, 'dev', dev, 'metric', String(metric)], (err) => {
        if (err !== undefined) errors.push(`${prefix}: ${err}`);
      });
    if (announced(metric)) announcedAgain++;
    for (const m of have) if (m !== metric) take.add(['route', 'del', prefix, 'dev', dev, 'metric', String(m)]);
  }
  put.run();
  take.run();
  if (errors.length > 0) throw new Error(`restore routes into ${dev}: ${errors.join('; ')}`);
  return announcedAgain;
}

/** Run until `signal` aborts. */
export async function runWatchdog(o: WatchdogOptions, signal: AbortSignal): Promise<void> {
  let fails = 0;
  let passes = 0;
  let withdrawn: { ifindex: string | undefined; routes: Withdrawn[] } | undefined;
  o.log(`watchdog: checking ${o.admin} every ${o.intervalMs} ms (fall ${o.fall}, rise ${o.rise}), device ${o.dev}`);
  while (!signal.aborted) {
    let ok = false;
    /** tunvs's record of its routes, from this check's answer. */
    let recorded: readonly RecordedRoute[] | undefined;
    try {
      const r = (await adminRequest(o.admin, { cmd: 'ha' }, Math.max(100, o.intervalMs - 100))) as {
        ha: { ready: boolean };
        routes?: RecordedRoute[];
      };
      ok = r.ha.ready;
      recorded = r.routes;
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
          const again = restoreRoutes(o.dev, withdrawn.routes, recorded ?? withdrawn.routes);
          const quiet = withdrawn.routes.length - again;
          o.log(
            withdrawn.routes.length > 0
              ? `watchdog: tunvs answers again: ${again} routes announced again` +
                  (quiet > 0 ? `, ${quiet} left as tunvs has them now (quiet or gone)` : '')
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
