/**
 * dns: a query for `query` (default ".") of `queryType` (default SOA), recursion desired, over
 * UDP (keepalived's DNS_CHECK). It passes on the answer with the query's id and RCODE 0
 * (NOERROR); an answer with another RCODE fails, and one with another id is not ours and is
 * ignored. An ICMP unreachable fails at once (datagram.ts).
 */

import { randomInt } from 'node:crypto';
import type { DnsQueryType } from '../../service/service.js';
import { failed, PASS, registerCheck } from './check.js';
import { exchange } from './datagram.js';

/** RFC 1035 TYPE codes, by DNS_QUERY_TYPES name. */
const TYPE_CODES: Record<DnsQueryType, number> = { A: 1, NS: 2, CNAME: 5, SOA: 6, MX: 15, TXT: 16, AAAA: 28 };
const CLASS_IN = 1;
const FLAG_QR = 0x8000;
const FLAG_RD = 0x0100;
const RCODE_MASK = 0x000f;
const HEADER_BYTES = 12;
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/** A query message: header (one question), the name as labels, type, class IN. The name's
 * labels are checked by config/health_check.ts (1..63 characters each, 253 in all). */
export function dnsQuery(id: number, name: string, type: DnsQueryType): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  const nameBytes = labels.reduce((n, l) => n + 1 + Buffer.byteLength(l), 1);
  const b = Buffer.alloc(HEADER_BYTES + nameBytes + 4);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(FLAG_RD, 2);
  b.writeUInt16BE(1, 4); // one question; no answer, authority or additional records
  let o = HEADER_BYTES;
  for (const l of labels) {
    o = b.writeUInt8(Buffer.byteLength(l), o);
    o += b.write(l, o);
  }
  o = b.writeUInt8(0, o);
  o = b.writeUInt16BE(TYPE_CODES[type], o);
  b.writeUInt16BE(CLASS_IN, o);
  return b;
}

registerCheck('dns', (spec, t) => {
  const id = randomInt(0x10000);
  return exchange(t, {
    name: 'dns',
    message: dnsQuery(id, spec.query ?? '.', spec.queryType ?? 'SOA'),
    timeoutSec: spec.timeout,
    reply: (msg) => {
      if (msg.length < HEADER_BYTES || msg.readUInt16BE(0) !== id) return undefined;
      const flags = msg.readUInt16BE(2);
      if ((flags & FLAG_QR) === 0) return undefined;
      const rcode = flags & RCODE_MASK;
      return rcode === 0 ? PASS : failed(`dns: answer ${RCODE_NAMES[rcode] ?? `RCODE ${rcode}`}`);
    },
    silence: failed(`no answer within ${spec.timeout} s`),
  });
});
