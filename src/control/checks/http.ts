/**
 * http, https: GET `path`, expecting `expectStatus`, and the body checks the spec names: a
 * string (expectBody), a regular expression that must or must not match (expectBodyMatch,
 * expectBodyNoMatch; keepalived's regex, regex_no_match), the MD5 of the whole body
 * (expectBodyMd5; keepalived's digest).
 *
 * Over TLS the server's certificate is not verified: the check asks whether the server
 * answers (its certificate names the service, not the server's address), as keepalived's
 * SSL_GET does. The Host, when it is a name, goes out as the server name (SNI) too.
 */

import { createHash } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { HEALTH_BODY_HELD_BYTES } from '../../constants.js';
import type { HealthCheckSpec } from '../../service/service.js';
import { errorText, failed, PASS, registerCheck, type Check, type CheckResult } from './check.js';

/** What the body checks of `spec` say of a response. */
function judge(spec: HealthCheckSpec, status: number | undefined, held: string, md5: string): CheckResult {
  if (status !== spec.expectStatus) return failed(`HTTP ${status}, expected ${spec.expectStatus}`);
  if (spec.expectBody !== undefined && !held.includes(spec.expectBody))
    return failed(`body does not contain ${JSON.stringify(spec.expectBody)}`);
  if (spec.expectBodyMatch !== undefined && !new RegExp(spec.expectBodyMatch).test(held))
    return failed(`body does not match /${spec.expectBodyMatch}/`);
  if (spec.expectBodyNoMatch !== undefined && new RegExp(spec.expectBodyNoMatch).test(held))
    return failed(`body matches /${spec.expectBodyNoMatch}/`);
  if (spec.expectBodyMd5 !== undefined && md5 !== spec.expectBodyMd5.toLowerCase())
    return failed(`body MD5 ${md5}, expected ${spec.expectBodyMd5}`);
  return PASS;
}

const get: Check = (spec, t) =>
  new Promise((resolve) => {
    const opts = {
      host: t.address,
      port: t.port,
      path: spec.path,
      method: 'GET',
      timeout: spec.timeout * 1000,
      agent: false as const,
      ...(spec.host !== undefined ? { headers: { host: spec.host } } : {}),
    };
    const onResponse = (res: IncomingMessage): void => {
      const chunks: Buffer[] = [];
      let heldBytes = 0;
      const md5 = spec.expectBodyMd5 !== undefined ? createHash('md5') : undefined;
      res.on('data', (c: Buffer) => {
        md5?.update(c);
        if (heldBytes < HEALTH_BODY_HELD_BYTES) {
          const part = c.subarray(0, HEALTH_BODY_HELD_BYTES - heldBytes);
          chunks.push(part);
          heldBytes += part.length;
        }
      });
      res.on('end', () =>
        resolve(judge(spec, res.statusCode, Buffer.concat(chunks).toString('utf8'), md5?.digest('hex') ?? '')),
      );
      res.on('error', (e) => resolve(failed(`HTTP: ${e.message}`)));
    };
    const name = spec.host?.replace(/:\d+$/, '');
    const req =
      spec.type === 'https'
        ? httpsRequest(
            { ...opts, rejectUnauthorized: false, ...(name && isIP(name) === 0 ? { servername: name } : {}) },
            onResponse,
          )
        : request(opts, onResponse);
    req.once('timeout', () => req.destroy(new Error(`timed out after ${spec.timeout} s`)));
    req.once('error', (e) => resolve(failed(`HTTP: ${errorText(e)}`)));
    req.end();
  });

registerCheck('http', get);
registerCheck('https', get);
