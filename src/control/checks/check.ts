/**
 * The health-check interface and the registry that names the checks. Each check lives in its
 * own file, fills this interface, and registers itself by type (as the schedulers do,
 * service/sched/); index.ts loads them all.
 *
 * A check runs from the LB's main thread (control/health.ts calls it every interval), never
 * from the forwarders. It resolves within the spec's timeout, never rejects, and leaves
 * nothing open behind it: sockets closed, a command's processes signalled.
 */

import type { HealthCheckSpec, HealthCheckType } from '../../service/service.js';

/** The real server a check asks, and the service's name (for a command's environment). */
export interface CheckTarget {
  address: string;
  port: number;
  service: string;
}

/** Passed (with a weight, when the check sets one: exec's dynamicWeight), or failed why. */
export type CheckResult = { ok: true; weight?: number } | { ok: false; error: string };

export type Check = (spec: HealthCheckSpec, target: CheckTarget) => Promise<CheckResult>;

export const PASS: CheckResult = { ok: true };

export function failed(error: string): CheckResult {
  return { ok: false, error };
}

/** Node's error code when it has one (ECONNREFUSED, ENOENT, ...), else its message. */
export function errorText(e: Error & { code?: string }): string {
  return e.code ?? e.message;
}

const registry = new Map<HealthCheckType, Check>();

export function registerCheck(type: HealthCheckType, check: Check): void {
  registry.set(type, check);
}

/** Run one check of `target` as `spec` says. */
export function runCheck(spec: HealthCheckSpec, target: CheckTarget): Promise<CheckResult> {
  const check = registry.get(spec.type);
  if (!check) return Promise.resolve(failed(`no ${spec.type} check is loaded`));
  return check(spec, target);
}
