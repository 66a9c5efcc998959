/**
 * IP address text ↔ the four int32 words the data plane compares (network byte order,
 * word 0 first). IPv4 uses word 0 only. Parsing is strict: what the control plane
 * accepts is exactly what an operator wrote, never a guess.
 */

import { AF_INET, AF_INET6 } from '../packet/headers.js';

export interface ParsedAddress {
  af: typeof AF_INET | typeof AF_INET6;
  /** Four int32 words; for IPv4 only words[0] is used, the rest are 0. */
  words: Int32Array;
}

function parseV4Words(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    v = (v << 8) | n;
  }
  return v | 0;
}

function parseV6Words(text: string): Int32Array | undefined {
  if (text.length === 0 || text.length > 45) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const groups: number[][] = [];
  for (const half of halves) {
    const out: number[] = [];
    if (half.length > 0) {
      const parts = half.split(':');
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        if (i === parts.length - 1 && p.includes('.')) {
          const v4 = parseV4Words(p);
          if (v4 === undefined) return undefined;
          out.push((v4 >>> 16) & 0xffff, v4 & 0xffff);
        } else {
          if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
          out.push(parseInt(p, 16));
        }
      }
    }
    groups.push(out);
  }
  let hextets: number[];
  if (groups.length === 1) {
    hextets = groups[0]!;
    if (hextets.length !== 8) return undefined;
  } else {
    const head = groups[0]!;
    const tail = groups[1]!;
    const zeros = 8 - head.length - tail.length;
    if (zeros < 1) return undefined;
    hextets = [...head, ...new Array<number>(zeros).fill(0), ...tail];
  }
  const words = new Int32Array(4);
  for (let i = 0; i < 4; i++) words[i] = (hextets[2 * i]! << 16) | hextets[2 * i + 1]! | 0;
  return words;
}

/** Parse an IPv4 or IPv6 address; undefined when it is neither. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const v4 = parseV4Words(text);
  if (v4 !== undefined) {
    const words = new Int32Array(4);
    words[0] = v4;
    return { af: AF_INET, words };
  }
  const v6 = parseV6Words(text);
  if (v6 !== undefined) return { af: AF_INET6, words: v6 };
  return undefined;
}

/** "addr:port", with an IPv6 address in brackets ("[fd18::1]:80"), as ipvsadm prints it. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The addresses of host prefixes ("198.18.2.1/32"), as the data plane takes them; what does
 * not parse is left out. */
export function prefixAddresses(prefixes: readonly string[]): ParsedAddress[] {
  return prefixes.flatMap((prefix) => parseAddress(prefix.split('/')[0]!) ?? []);
}

/** Text form of an address given as words (RFC 5952 style for IPv6: longest zero run as ::). */
export function formatAddress(af: number, words: ArrayLike<number>, off = 0): string {
  if (af === AF_INET) {
    const v = words[off]! >>> 0;
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const h: number[] = [];
  for (let i = 0; i < 4; i++) {
    const w = words[off + i]! >>> 0;
    h.push(w >>> 16, w & 0xffff);
  }
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (h[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && h[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = h.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export interface ParsedCidr extends ParsedAddress {
  /** Prefix length: 0-32 for IPv4, 0-128 for IPv6. */
  prefix: number;
}

/** Parse "a.b.c.d/n", "x::y/n" or a bare address (a host prefix). Host bits must be zero. */
export function parseCidr(text: string): ParsedCidr | undefined {
  const slash = text.indexOf('/');
  const addr = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (!addr) return undefined;
  const max = addr.af === AF_INET ? 32 : 128;
  const lenText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined;
  const prefix = Number(lenText);
  if (prefix > max) return undefined;
  for (let bit = prefix; bit < max; bit++) {
    if (((addr.words[bit >> 5]! >>> (31 - (bit & 31))) & 1) !== 0) return undefined;
  }
  return { ...addr, prefix };
}
