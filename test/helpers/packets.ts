/**
 * Test-side packet builder and parser, written independently of src/packet so the engine's
 * incremental checksums are checked against a plain full computation, byte for byte.
 */

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

/** Address text → bytes (4 or 16). A small strict parser of its own. */
export function addrBytes(text: string): Uint8Array {
  if (text.includes('.') && !text.includes(':')) {
    const parts = text.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) throw new Error(`bad v4 ${text}`);
    return Uint8Array.from(parts);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8) throw new Error(`bad v6 ${text}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 255;
  });
  return out;
}

/** Bytes → text: dotted quad, or all eight IPv6 groups uncompressed (compare with norm()). */
export function addrText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join('.');
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(((b[i]! << 8) | b[i + 1]!).toString(16));
  return g.join(':');
}

/** Canonical text of an address, as parse() reports it. */
export function norm(text: string): string {
  return addrText(addrBytes(text));
}

/** Plain RFC 1071 checksum over byte arrays, summed in order. */
export function refChecksum(...parts: Uint8Array[]): number {
  const all = Buffer.concat(parts);
  let sum = 0;
  for (let i = 0; i + 1 < all.length; i += 2) sum += all[i]! * 256 + all[i + 1]!;
  if (all.length % 2 === 1) sum += all[all.length - 1]! * 256;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

/** IPv6 extension headers these helpers look past, with their own simple rule (all three
 * count their length in 8-byte units after the first 8): Hop-by-Hop, Routing, Destination
 * Options. */
const EXT_HEADERS = new Set([0, 43, 60]);

/** Where the upper layer of IP packet `p` starts and what it is (IPv6: behind its extension
 * headers). */
export function upperLayer(p: Uint8Array): { at: number; proto: number } {
  if (p[0]! >> 4 === 4) return { at: (p[0]! & 15) * 4, proto: p[9]! };
  let at = 40;
  let proto = p[6]!;
  while (EXT_HEADERS.has(proto) && at + 8 <= p.length) {
    proto = p[at]!;
    at += (p[at + 1]! + 1) * 8;
  }
  return { at, proto };
}

/** An extension header for withExtHeaders: its type and size in 8-byte units. */
export interface ExtHeader {
  type: number;
  units: number;
  segmentsLeft?: number;
}
/** The two kinds of options header, the sizes the tests use. */
export const HOP_BY_HOP: ExtHeader = { type: 0, units: 1 };
export const DEST_OPTIONS: ExtHeader = { type: 60, units: 2 };

/**
 * The IPv6 packet `p` with extension headers put in after its fixed header, in the order
 * given: each its type and its size in 8-byte units (≥ 1), filled with one option (an
 * options header) or, for a Routing header, type 0 with `segmentsLeft` (default 0) and
 * zeros. The L4 checksum stays right: the pseudo-header does not cover these headers.
 */
export function withExtHeaders(p: Uint8Array, ...headers: ExtHeader[]): Uint8Array {
  if (headers.length === 0) return p;
  if (p[0]! >> 4 !== 6) throw new Error('extension headers are IPv6');
  const parts: Uint8Array[] = [];
  let next = p[6]!;
  for (let i = headers.length - 1; i >= 0; i--) {
    const h = headers[i]!;
    const b = new Uint8Array(h.units * 8);
    b[0] = next;
    b[1] = h.units - 1;
    if (h.type === 43) b[3] = h.segmentsLeft ?? 0;
    else {
      // PadN, or in more than 8 bytes an experimental option ("skip if unknown", RFC 4727):
      // Linux refuses more than 7 bytes of padding in a row.
      b[2] = b.length === 8 ? 1 : 0x1e;
      b[3] = b.length - 4;
    }
    parts.unshift(b);
    next = h.type;
  }
  const ext = Buffer.concat(parts);
  const out = new Uint8Array(p.length + ext.length);
  out.set(p.subarray(0, 40), 0);
  out.set(ext, 40);
  out.set(p.subarray(40), 40 + ext.length);
  out[6] = next;
  new DataView(out.buffer).setUint16(4, out.length - 40);
  return out;
}

/** The bytes of the IPv6 packet's extension headers (between its fixed header and its upper
 * layer). */
export function extHeaderBytes(p: Uint8Array): number[] {
  return Array.from(p.subarray(40, upperLayer(p).at));
}

function pseudo(src: Uint8Array, dst: Uint8Array, proto: number, len: number): Uint8Array {
  if (src.length === 4) {
    const p = new Uint8Array(12);
    p.set(src, 0);
    p.set(dst, 4);
    p[9] = proto;
    p[10] = len >> 8;
    p[11] = len & 255;
    return p;
  }
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  new DataView(p.buffer).setUint32(32, len);
  p[39] = proto;
  return p;
}

function ipWrap(src: string, dst: string, proto: number, l4: Uint8Array, ipId = 0x1234, ttl = 64): Uint8Array {
  const s = addrBytes(src);
  const d = addrBytes(dst);
  if (s.length === 4) {
    const p = new Uint8Array(20 + l4.length);
    const dv = new DataView(p.buffer);
    p[0] = 0x45;
    dv.setUint16(2, p.length);
    dv.setUint16(4, ipId);
    dv.setUint16(6, 0x4000);
    p[8] = ttl;
    p[9] = proto;
    p.set(s, 12);
    p.set(d, 16);
    dv.setUint16(10, refChecksum(p.subarray(0, 20)));
    p.set(l4, 20);
    return p;
  }
  const p = new Uint8Array(40 + l4.length);
  const dv = new DataView(p.buffer);
  dv.setUint32(0, 0x60000000);
  dv.setUint16(4, l4.length);
  p[6] = proto;
  p[7] = ttl;
  p.set(s, 8);
  p.set(d, 24);
  p.set(l4, 40);
  return p;
}

export interface TcpSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags: number;
  window?: number;
  options?: number[];
  payload?: Uint8Array;
  ipId?: number;
  ttl?: number;
}

export function tcp(t: TcpSpec): Uint8Array {
  const opts = Uint8Array.from(t.options ?? []);
  if (opts.length % 4 !== 0) throw new Error('options must be padded to 4 bytes');
  const payload = t.payload ?? new Uint8Array(0);
  const h = new Uint8Array(20 + opts.length + payload.length);
  const dv = new DataView(h.buffer);
  dv.setUint16(0, t.sport);
  dv.setUint16(2, t.dport);
  dv.setUint32(4, (t.seq ?? 0) >>> 0);
  dv.setUint32(8, (t.ack ?? 0) >>> 0);
  h[12] = ((20 + opts.length) / 4) << 4;
  h[13] = t.flags;
  dv.setUint16(14, t.window ?? 64240);
  h.set(opts, 20);
  h.set(payload, 20 + opts.length);
  dv.setUint16(16, refChecksum(pseudo(addrBytes(t.src), addrBytes(t.dst), 6, h.length), h));
  return ipWrap(t.src, t.dst, 6, h, t.ipId, t.ttl);
}

export interface UdpSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload?: Uint8Array;
  /** Leave the IPv4 checksum 0 ("none"). */
  noChecksum?: boolean;
}

export function udp(u: UdpSpec): Uint8Array {
  const payload = u.payload ?? new Uint8Array(0);
  const h = new Uint8Array(8 + payload.length);
  const dv = new DataView(h.buffer);
  dv.setUint16(0, u.sport);
  dv.setUint16(2, u.dport);
  dv.setUint16(4, h.length);
  h.set(payload, 8);
  if (!u.noChecksum) {
    const c = refChecksum(pseudo(addrBytes(u.src), addrBytes(u.dst), 17, h.length), h);
    dv.setUint16(6, c === 0 ? 0xffff : c);
  }
  return ipWrap(u.src, u.dst, 17, h);
}

/** An ICMP(v6) message: type, code, 4 bytes of rest-of-header, then `body`. */
export function icmp(src: string, dst: string, type: number, code: number, rest: number, body: Uint8Array): Uint8Array {
  const v6 = addrBytes(src).length === 16;
  const h = new Uint8Array(8 + body.length);
  const dv = new DataView(h.buffer);
  h[0] = type;
  h[1] = code;
  dv.setUint32(4, rest >>> 0);
  h.set(body, 8);
  const c = v6 ? refChecksum(pseudo(addrBytes(src), addrBytes(dst), 58, h.length), h) : refChecksum(h);
  dv.setUint16(2, c);
  return ipWrap(src, dst, v6 ? 58 : 1, h);
}

export interface Parsed {
  af: 4 | 6;
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  l4: Uint8Array;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  options: number[];
  payload: Uint8Array;
}

export function parse(p: Uint8Array): Parsed {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const v = p[0]! >> 4;
  let l3: number;
  let src: Uint8Array;
  let dst: Uint8Array;
  let proto: number;
  let ttl: number;
  let end: number;
  if (v === 4) {
    l3 = (p[0]! & 15) * 4;
    src = p.slice(12, 16);
    dst = p.slice(16, 20);
    proto = p[9]!;
    ttl = p[8]!;
    end = dv.getUint16(2);
  } else {
    ({ at: l3, proto } = upperLayer(p));
    src = p.slice(8, 24);
    dst = p.slice(24, 40);
    ttl = p[7]!;
    end = 40 + dv.getUint16(4);
  }
  const l4 = p.slice(l3, end);
  const l = new DataView(l4.buffer);
  const out: Parsed = {
    af: v === 4 ? 4 : 6,
    src: addrText(src),
    dst: addrText(dst),
    proto,
    ttl,
    l4,
    sport: 0,
    dport: 0,
    seq: 0,
    ack: 0,
    flags: 0,
    options: [],
    payload: new Uint8Array(0),
  };
  if (proto === 6) {
    const thl = (l4[12]! >> 4) * 4;
    Object.assign(out, {
      sport: l.getUint16(0),
      dport: l.getUint16(2),
      seq: l.getUint32(4),
      ack: l.getUint32(8),
      flags: l4[13]!,
      options: Array.from(l4.slice(20, thl)),
      payload: l4.slice(thl),
    });
  } else if (proto === 17) {
    Object.assign(out, { sport: l.getUint16(0), dport: l.getUint16(2), payload: l4.slice(8) });
  }
  return out;
}

/** Check IP and L4 checksums of a packet by full recomputation. */
export function checksumsOk(p: Uint8Array): { ip: boolean; l4: boolean } {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const v = p[0]! >> 4;
  let ip = true;
  let src: Uint8Array;
  let dst: Uint8Array;
  let l3: number;
  let end: number;
  let proto: number;
  if (v === 4) {
    l3 = (p[0]! & 15) * 4;
    ip = refChecksum(p.subarray(0, l3)) === 0;
    src = p.subarray(12, 16);
    dst = p.subarray(16, 20);
    end = dv.getUint16(2);
    proto = p[9]!;
  } else {
    ({ at: l3, proto } = upperLayer(p));
    src = p.subarray(8, 24);
    dst = p.subarray(24, 40);
    end = 40 + dv.getUint16(4);
  }
  const l4 = p.subarray(l3, end);
  let l4ok: boolean;
  if (proto === 4 || proto === 41) {
    // IP in IP (TUNNEL mode): the inner packet's checksums.
    const inner = checksumsOk(l4);
    l4ok = inner.ip && inner.l4;
  } else if (proto === 47) {
    // GRE (TUNNEL's tunnel.type gre): its own checksum when it carries one (RFC 2784), 4 or
    // 8 bytes of header, then the inner packet's checksums.
    const withSum = (l4[0]! & 0x80) !== 0;
    const inner = checksumsOk(l4.subarray(withSum ? 8 : 4));
    l4ok = inner.ip && inner.l4 && (!withSum || refChecksum(l4) === 0);
  } else if (proto === 1) l4ok = refChecksum(l4) === 0;
  else if (proto === 17 && v === 4 && dv.getUint16(l3 + 6) === 0) l4ok = true;
  else l4ok = refChecksum(pseudo(src, dst, proto, l4.length), l4) === 0;
  return { ip, l4: l4ok };
}

// TCP option byte builders.
export const opt = {
  nop: (): number[] => [1],
  mss: (v: number): number[] => [2, 4, v >> 8, v & 255],
  ws: (v: number): number[] => [3, 3, v],
  sackPerm: (): number[] => [4, 2],
  ts: (val: number, ecr: number): number[] => [8, 10, ...u32(val), ...u32(ecr)],
  sack: (blocks: [number, number][]): number[] => [
    5,
    2 + 8 * blocks.length,
    ...blocks.flatMap(([l, r]) => [...u32(l), ...u32(r)]),
  ],
  toa: (kind: number, port: number, addr: string): number[] => {
    const a = Array.from(addrBytes(addr));
    return [kind, 4 + a.length, port >> 8, port & 255, ...a];
  },
};

export function u32(v: number): number[] {
  v >>>= 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}

/** Parse a TCP option byte list into [kind, bytes] pairs (NOPs included). */
export function optionList(bytes: number[]): [number, number[]][] {
  const out: [number, number[]][] = [];
  for (let i = 0; i < bytes.length;) {
    const k = bytes[i]!;
    if (k === 0) break;
    if (k === 1) {
      out.push([1, [1]]);
      i++;
      continue;
    }
    const len = bytes[i + 1]!;
    out.push([k, bytes.slice(i, i + len)]);
    i += len;
  }
  return out;
}

/** IPv6: the unfragmentable part of `p` (its fixed header and a Hop-by-Hop header, as
 * senders cut it) and where the byte is that names what follows that part. */
function unfragmentable(p: Uint8Array): { length: number; namer: number } {
  return p[6] === 0 ? { length: 40 + (p[41]! + 1) * 8, namer: 40 } : { length: 40, namer: 6 };
}

/** `p` (no IPv4 options; IPv6: a Hop-by-Hop header stays in front of every fragment, other
 * extension headers are cut with the payload) cut into fragments of at most `piece` payload
 * bytes (a multiple of 8), all with identification `id`: the sender's side. */
export function fragmentsOf(p: Uint8Array, piece: number, id: number): Uint8Array[] {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const v6 = p[0]! >> 4 === 6;
  const { length: header, namer } = v6 ? unfragmentable(p) : { length: 20, namer: 0 };
  const payload = p.subarray(header, v6 ? 40 + dv.getUint16(4) : dv.getUint16(2));
  const out: Uint8Array[] = [];
  for (let off = 0; off < payload.length; off += piece) {
    const part = payload.subarray(off, Math.min(off + piece, payload.length));
    const more = off + piece < payload.length;
    const f = new Uint8Array(header + (v6 ? 8 : 0) + part.length);
    const fv = new DataView(f.buffer);
    f.set(p.subarray(0, header));
    if (v6) {
      f[namer] = 44;
      fv.setUint16(4, header - 40 + 8 + part.length);
      f[header] = p[namer]!;
      fv.setUint16(header + 2, off | (more ? 1 : 0));
      fv.setUint32(header + 4, id);
      f.set(part, header + 8);
    } else {
      fv.setUint16(2, f.length);
      fv.setUint16(4, id);
      fv.setUint16(6, (off >> 3) | (more ? 0x2000 : 0));
      fv.setUint16(10, 0);
      fv.setUint16(10, refChecksum(f.subarray(0, 20)));
      f.set(part, 20);
    }
    out.push(f);
  }
  return out;
}

/** The fields a receiver reassembles by, and the fragment's place, of fragment `f` (IPv6:
 * its fragment header after the fixed one or a Hop-by-Hop header). */
export function fragmentInfo(f: Uint8Array): { id: number; offset: number; more: boolean; payload: Uint8Array } {
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  if (f[0]! >> 4 === 6) {
    const { length: at, namer } = unfragmentable(f);
    if (f[namer] !== 44) throw new Error('not a fragment');
    const field = dv.getUint16(at + 2);
    return {
      id: dv.getUint32(at + 4),
      offset: field & 0xfff8,
      more: (field & 1) === 1,
      payload: f.slice(at + 8, 40 + dv.getUint16(4)),
    };
  }
  const field = dv.getUint16(6);
  return {
    id: dv.getUint16(4),
    offset: (field & 0x1fff) * 8,
    more: (field & 0x2000) !== 0,
    payload: f.slice((f[0]! & 15) << 2, dv.getUint16(2)),
  };
}

/** The receiver's side of fragmentsOf: the datagram `frags` (any order) make. */
export function reassembled(frags: Uint8Array[]): Uint8Array {
  const parts = frags.map((f) => ({ f, ...fragmentInfo(f) })).sort((a, b) => a.offset - b.offset);
  const first = parts[0]!;
  const v6 = first.f[0]! >> 4 === 6;
  const total = parts.reduce((n, p) => Math.max(n, p.offset + p.payload.length), 0);
  const { length: header, namer } = v6 ? unfragmentable(first.f) : { length: (first.f[0]! & 15) << 2, namer: 0 };
  const out = new Uint8Array(header + total);
  const dv = new DataView(out.buffer);
  out.set(first.f.subarray(0, header));
  if (v6) {
    out[namer] = first.f[header]!;
    dv.setUint16(4, header - 40 + total);
  } else {
    dv.setUint16(2, header + total);
    dv.setUint16(6, 0);
    dv.setUint16(10, 0);
    dv.setUint16(10, refChecksum(out.subarray(0, header)));
  }
  for (const p of parts) out.set(p.payload, header + p.offset);
  return out;
}
