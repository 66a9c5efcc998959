/**
 * Small typed readers for validating parsed YAML/JSON. Each takes the value and its field
 * path, returns the typed value, and throws ConfigError naming path, value and what is
 * allowed. Unknown keys are errors (a typo must not silently fall back to a default).
 */

import { ConfigError, show } from './errors.js';

export type Obj = Record<string, unknown>;

export function object(v: unknown, path: string, allowed: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      `${show(v)} is not a mapping (expected keys: ${allowed.join(', ')})`,
    );
  }
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(
        'TUNVS_ERR_CONFIG_UNKNOWN',
        path === '' ? k : `${path}.${k}`,
        `unknown field; allowed here: ${allowed.join(', ')}`,
      );
    }
  }
  return v as Obj;
}

export function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

export function integer(v: unknown, path: string, min: number, max: number, what = 'an integer'): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', path, `${show(v)} is not valid: use ${what} ${min}..${max}`);
  }
  return v;
}

export function boolean(v: unknown, path: string): boolean {
  if (typeof v !== 'boolean')
    throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', path, `${show(v)} is not valid: use true or false`);
  return v;
}

export function string(v: unknown, path: string, pattern?: RegExp, what?: string): string {
  if (typeof v !== 'string' || v.length === 0 || (pattern !== undefined && !pattern.test(v))) {
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      `${show(v)} is not valid: use ${what ?? 'a non-empty string'}`,
    );
  }
  return v;
}

export function list(v: unknown, path: string, what: string): unknown[] {
  if (!Array.isArray(v)) throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', path, `${show(v)} is not a list of ${what}`);
  return v;
}

export function oneOf<T extends string>(v: unknown, path: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_UNKNOWN',
      path,
      `${show(v)} is not valid: use one of ${allowed.join(', ')}`,
    );
  }
  return v as T;
}

/** `read(o[key])` when the key is present, else the default. */
export function opt<T>(o: Obj, key: string, fallback: T, read: (v: unknown) => T): T {
  return o[key] === undefined ? fallback : read(o[key]);
}
