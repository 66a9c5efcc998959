/**
 * A service's `healthCheck` as config.ts reads it: the fields every check has, then those of
 * its type (TYPE_FIELDS); a field of another type is refused, naming the types it is for, so
 * a `path` on a tcp check or a `command` on an http one is a config error and not ignored.
 */

import {
  DNS_QUERY_TYPES,
  HEALTH_CHECK_TYPES,
  HEALTH_DEFAULT,
  type HealthCheckSpec,
  type HealthCheckType,
} from '../service/service.js';
import { ConfigError, show } from './errors.js';
import { systemUser } from './system_user.js';
import { boolean, integer, join, list, object, oneOf, opt, string, type Obj } from './validate.js';

const COMMON_FIELDS = [
  'type',
  'interval',
  'timeout',
  'rise',
  'fall',
  'retryInterval',
  'startDown',
  'port',
  'resetOnDown',
  'notifyUp',
  'notifyDown',
] as const;
const HTTP_FIELDS = [
  'path',
  'expectStatus',
  'expectBody',
  'expectBodyMatch',
  'expectBodyNoMatch',
  'expectBodyMd5',
  'host',
] as const;
/** The fields each type takes beside COMMON_FIELDS. */
const TYPE_FIELDS: Record<HealthCheckType, readonly string[]> = {
  tcp: [],
  http: HTTP_FIELDS,
  https: HTTP_FIELDS,
  udp: ['payload', 'expectReply'],
  dns: ['query', 'queryType'],
  smtp: ['helo'],
  exec: ['command', 'user', 'dynamicWeight'],
};
const ALL_FIELDS = [...new Set([...COMMON_FIELDS, ...Object.values(TYPE_FIELDS).flat()])];

/** Hex bytes ("" allowed where `empty`), spaces between bytes taken out. */
function hex(v: unknown, path: string, empty: boolean): string {
  const text = typeof v === 'string' ? v.replace(/\s+/g, '') : undefined;
  if (text === undefined || !/^(?:[0-9a-fA-F]{2})*$/.test(text) || (!empty && text === ''))
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      `${show(v)} is not valid: use bytes in hex, two digits each${empty ? ' ("" for any)' : ''}`,
    );
  return text.toLowerCase();
}

function regex(v: unknown, path: string): string {
  const text = string(v, path);
  try {
    new RegExp(text);
  } catch (e) {
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      `${show(v)} is not a regular expression: ${(e as Error).message}`,
    );
  }
  return text;
}

/** A DNS name: labels of 1..63 letters, digits, hyphens or underscores, 253 in all; "." is the root. */
function dnsName(v: unknown, path: string): string {
  const text = string(v, path);
  const bare = text.endsWith('.') ? text.slice(0, -1) : text;
  if (text !== '.' && (bare.length > 253 || !bare.split('.').every((l) => /^[A-Za-z0-9_-]{1,63}$/.test(l))))
    throw new ConfigError('TUNVS_ERR_CONFIG_TYPE', path, `${show(v)} is not a DNS name (labels of 1..63 characters)`);
  return text;
}

/** A command: the program by its absolute path, then its arguments (run without a shell). */
export function command(v: unknown, path: string): string[] {
  const argv = list(v, path, 'strings (the program, then its arguments)').map((a, i) =>
    typeof a === 'number' ? String(a) : string(a, `${path}[${i}]`),
  );
  if (argv.length === 0 || !argv[0]!.startsWith('/'))
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      path,
      'name the program by its absolute path, then its arguments (it runs without a shell)',
    );
  return argv;
}

function user(v: unknown, path: string): string {
  const name = string(v, path, /^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$/, 'a user name');
  if (!systemUser(name)) throw new ConfigError('TUNVS_ERR_CONFIG_RANGE', path, `no user ${name} on this system`);
  return name;
}

/** The type-specific fields present in `o`, read. */
function typeFields(o: Obj, path: string): Partial<HealthCheckSpec> {
  const at = (k: string): string => join(path, k);
  const has = (k: string): boolean => o[k] !== undefined;
  return {
    ...(has('expectBody') ? { expectBody: string(o.expectBody, at('expectBody')) } : {}),
    ...(has('expectBodyMatch') ? { expectBodyMatch: regex(o.expectBodyMatch, at('expectBodyMatch')) } : {}),
    ...(has('expectBodyNoMatch') ? { expectBodyNoMatch: regex(o.expectBodyNoMatch, at('expectBodyNoMatch')) } : {}),
    ...(has('expectBodyMd5')
      ? {
          expectBodyMd5: string(
            o.expectBodyMd5,
            at('expectBodyMd5'),
            /^[0-9a-fA-F]{32}$/,
            'an MD5 in hex (32 digits)',
          ).toLowerCase(),
        }
      : {}),
    ...(has('host')
      ? { host: string(o.host, at('host'), /^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$/, 'a host name') }
      : {}),
    ...(has('payload') ? { payload: hex(o.payload, at('payload'), true) } : {}),
    ...(has('expectReply') ? { expectReply: hex(o.expectReply, at('expectReply'), true) } : {}),
    ...(has('query') ? { query: dnsName(o.query, at('query')) } : {}),
    ...(has('queryType') ? { queryType: oneOf(o.queryType, at('queryType'), DNS_QUERY_TYPES) } : {}),
    ...(has('helo') ? { helo: string(o.helo, at('helo'), /^[A-Za-z0-9.[\]:_-]+$/, 'a host name or [address]') } : {}),
    ...(has('command') ? { command: command(o.command, at('command')) } : {}),
    ...(has('user') ? { user: user(o.user, at('user')) } : {}),
    ...(has('dynamicWeight') ? { dynamicWeight: boolean(o.dynamicWeight, at('dynamicWeight')) } : {}),
  };
}

export function healthCheck(v: unknown, path: string): HealthCheckSpec {
  const o = object(v, path, ALL_FIELDS);
  const h = HEALTH_DEFAULT;
  const type = opt(o, 'type', h.type, (x) => oneOf(x, join(path, 'type'), HEALTH_CHECK_TYPES));
  const mine = TYPE_FIELDS[type];
  for (const k of Object.keys(o)) {
    if ((COMMON_FIELDS as readonly string[]).includes(k) || mine.includes(k)) continue;
    const types = HEALTH_CHECK_TYPES.filter((t) => TYPE_FIELDS[t].includes(k));
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_TYPE',
      join(path, k),
      `a ${type} check takes no ${k}: it is for type ${types.join(' or ')}`,
    );
  }
  const spec: HealthCheckSpec = {
    type,
    interval: opt(o, 'interval', h.interval, (x) => integer(x, join(path, 'interval'), 1, 3600, 'seconds')),
    timeout: opt(o, 'timeout', h.timeout, (x) => integer(x, join(path, 'timeout'), 1, 60, 'seconds')),
    rise: opt(o, 'rise', h.rise, (x) => integer(x, join(path, 'rise'), 1, 100, 'a count')),
    fall: opt(o, 'fall', h.fall, (x) => integer(x, join(path, 'fall'), 1, 100, 'a count')),
    path: opt(o, 'path', h.path, (x) => string(x, join(path, 'path'), /^\//, 'a path starting with /')),
    expectStatus: opt(o, 'expectStatus', h.expectStatus, (x) =>
      integer(x, join(path, 'expectStatus'), 100, 599, 'an HTTP status'),
    ),
    ...(o.retryInterval !== undefined
      ? { retryInterval: integer(o.retryInterval, join(path, 'retryInterval'), 1, 3600, 'seconds') }
      : {}),
    ...(o.startDown !== undefined ? { startDown: boolean(o.startDown, join(path, 'startDown')) } : {}),
    ...(o.port !== undefined ? { port: integer(o.port, join(path, 'port'), 1, 65535, 'a port') } : {}),
    ...(o.resetOnDown !== undefined ? { resetOnDown: boolean(o.resetOnDown, join(path, 'resetOnDown')) } : {}),
    ...(o.notifyUp !== undefined ? { notifyUp: command(o.notifyUp, join(path, 'notifyUp')) } : {}),
    ...(o.notifyDown !== undefined ? { notifyDown: command(o.notifyDown, join(path, 'notifyDown')) } : {}),
    ...typeFields(o, path),
  };
  if (type === 'exec' && spec.command === undefined)
    throw new ConfigError('TUNVS_ERR_CONFIG_MISSING', join(path, 'command'), 'an exec check needs a command');
  if (spec.retryInterval !== undefined && spec.retryInterval > spec.interval)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      join(path, 'retryInterval'),
      `${spec.retryInterval} is longer than interval ${spec.interval}: a retry comes sooner than the next check`,
    );
  if (spec.timeout > spec.interval)
    throw new ConfigError(
      'TUNVS_ERR_CONFIG_RANGE',
      join(path, 'timeout'),
      `${spec.timeout} is longer than interval ${spec.interval}`,
    );
  return spec;
}
