/**
 * The real-server TOA reader, managed: attach it to a cgroup, detach it, say what is attached
 * and how much it has done, and start applications inside a cgroup (`tunvs rs ...`).
 *
 * What lives where:
 *   the programs and maps      pinned in bpffs under /sys/fs/bpf/tunvs/rs/<cgroup id>/, so the
 *                              reader outlives the command that attached it (bpf_links: the
 *                              cgroup keeps them until `detach`, even across tunvs upgrades);
 *   which cgroup that id was   /run/tunvs/rs/<cgroup id>.json, for `status`.
 * The cgroup id is the cgroup directory's inode number, as the kernel reports it in link info.
 */

import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  appendFileSync,
} from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { release } from 'node:os';
import { AF_INET, AF_INET6 } from '../packet/headers.js';
import { formatAddress, parseCidr } from '../service/addr.js';
import { readerObject, rsAddon, type RsAddon } from './native.js';

export const PIN_ROOT = '/sys/fs/bpf/tunvs/rs';
export const META_DIR = '/run/tunvs/rs';

/** The reader's counters, in the order of the enum in native/bpf/toa_reader.bpf.c. */
export const READER_COUNTERS = [
  'toa_v4',
  'toa_v6',
  'toa_saved_syn',
  'no_toa',
  'untrusted',
  'store_failed',
  'rewritten',
  'v6_toa_on_v4_socket',
  'bad_option',
] as const;
export type ReaderCounter = (typeof READER_COUNTERS)[number];

export const LINKS = ['toa_sockops', 'toa_getpeername4', 'toa_getpeername6'] as const;

const FLAG_SAVED_SYN = 1;
const FLAG_TRUSTED_ONLY = 2;

export interface ReaderOptions {
  /** TOA kind for IPv4 (len 8). Default 254. */
  kindV4: number;
  /** TOA kinds for IPv6 (len 20). Default 254, 253. */
  kindV6: number;
  kindV6Alt: number;
  /** Keep the SYN of every connection on listeners in the cgroup and look there when the
   * packet that completes the handshake has no TOA (default true). */
  savedSyn: boolean;
  /** Honour a TOA only on connections from these prefixes (the LB's local addresses).
   * Empty: from any peer. */
  trusted: string[];
}

export const READER_DEFAULTS: ReaderOptions = { kindV4: 254, kindV6: 254, kindV6Alt: 253, savedSyn: true, trusted: [] };

/** An error whose message says what is missing and what to do. */
export class RsError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

interface Mount {
  point: string;
  fstype: string;
}

function mounts(): Mount[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const f = l.split(' ');
      const dash = f.indexOf('-');
      return { point: (f[4] ?? '').replace(/\\040/g, ' '), fstype: f[dash + 1] ?? '' };
    });
}

/** Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
 * hybrid systems). */
export function cgroup2Root(): string {
  const m = mounts().find((x) => x.fstype === 'cgroup2');
  if (!m) {
    throw new RsError(
      'TUNVS_ERR_NO_CGROUP2',
      'no cgroup2 filesystem is mounted (the reader attaches to a cgroup v2): mount -t cgroup2 none /sys/fs/cgroup/unified',
    );
  }
  return m.point;
}

/** The cgroup directory for PATH: an absolute path inside the cgroup2 mount, or a path
 * relative to it ("system.slice/nginx.service"). */
export function resolveCgroup(path: string): string {
  const root = cgroup2Root();
  const abs = isAbsolute(path) && (path === root || path.startsWith(`${root}/`)) ? resolve(path) : join(root, path);
  if (!abs.startsWith(root))
    throw new RsError('TUNVS_ERR_CGROUP', `cgroup ${path} is outside the cgroup2 mount ${root}`);
  return abs;
}

/** The cgroup id (the directory's inode number, which is what the kernel reports). */
export function cgroupId(dir: string): number {
  return statSync(dir).ino;
}

/** Mount bpffs on /sys/fs/bpf if nothing is there (systemd does it; minimal hosts do not). */
export function ensureBpffs(): void {
  if (mounts().some((m) => m.point === '/sys/fs/bpf' && m.fstype === 'bpf')) return;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', '/sys/fs/bpf'], { stdio: 'pipe' });
  } catch (e) {
    throw new RsError(
      'TUNVS_ERR_NO_BPFFS',
      `no BPF filesystem on /sys/fs/bpf and mounting one failed (${String((e as { stderr?: Buffer }).stderr ?? e).trim()}): mount -t bpf bpf /sys/fs/bpf`,
    );
  }
}

/** The reader needs sockops with skb_data and TCP_BPF_SYN (5.10), getpeername hooks (5.8). */
export function checkKernel(rel = release()): void {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (m && (Number(m[1]) < 5 || (Number(m[1]) === 5 && Number(m[2]) < 10))) {
    throw new RsError(
      'TUNVS_ERR_KERNEL',
      `kernel ${rel} is too old for the eBPF TOA reader (needs Linux 5.10 or later: sockops packet access, TCP_BPF_SYN, cgroup getpeername hooks); use the saved-SYN helper or the toa kernel module instead`,
    );
  }
}

/** The 4-byte config entry the programs read (struct config in the C source). */
export function encodeConfig(o: ReaderOptions): Buffer {
  for (const [name, v] of [
    ['kindV4', o.kindV4],
    ['kindV6', o.kindV6],
    ['kindV6Alt', o.kindV6Alt],
  ] as const) {
    if (!Number.isInteger(v) || v < 2 || v > 255) {
      throw new RsError('TUNVS_ERR_RS_OPTION', `${name} must be a TCP option kind from 2 to 255, got ${v}`);
    }
  }
  const flags = (o.savedSyn ? FLAG_SAVED_SYN : 0) | (o.trusted.length > 0 ? FLAG_TRUSTED_ONLY : 0);
  return Buffer.from([o.kindV4, o.kindV6, o.kindV6Alt, flags]);
}

export function decodeConfig(b: Buffer, trusted: string[]): ReaderOptions {
  return { kindV4: b[0]!, kindV6: b[1]!, kindV6Alt: b[2]!, savedSyn: (b[3]! & FLAG_SAVED_SYN) !== 0, trusted };
}

/** LPM key of a trusted prefix: prefixlen (host order u32), then 16 address bytes; IPv4 as
 * ::ffff:a.b.c.d with the prefix length + 96 (how the programs look peers up). */
export function trustedKey(cidr: string): Buffer {
  const c = parseCidr(cidr);
  if (!c) throw new RsError('TUNVS_ERR_RS_OPTION', `--trust: ${cidr} is not an address or prefix (a.b.c.d/n, x::y/n)`);
  const key = Buffer.alloc(20);
  if (c.af === AF_INET) {
    key.writeUInt32LE(c.prefix + 96, 0);
    key[14] = 0xff;
    key[15] = 0xff;
    key.writeInt32BE(c.words[0]!, 16);
  } else {
    key.writeUInt32LE(c.prefix, 0);
    for (let i = 0; i < 4; i++) key.writeInt32BE(c.words[i]!, 4 + 4 * i);
  }
  return key;
}

export function trustedText(key: Buffer): string {
  const len = key.readUInt32LE(0);
  const a = key.subarray(4, 20);
  const mapped = a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff;
  if (mapped && len >= 96) return `${a[12]}.${a[13]}.${a[14]}.${a[15]}/${len - 96}`;
  const words = Array.from({ length: 4 }, (_, i) => a.readInt32BE(4 * i));
  return `${formatAddress(AF_INET6, words)}/${len}`;
}

function explain(e: unknown, cgroup: string): Error {
  const err = e as Error & { code?: string; errno?: number };
  const msg = err.message;
  if (err.code === 'EPERM' || err.code === 'EACCES') {
    return new RsError(
      'TUNVS_ERR_BPF_PERMISSION',
      `permission denied by the kernel (${msg.split('\n')[0]}): loading and attaching the reader needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON. Where BPF is not allowed at all, use the saved-SYN helper (docs/real-server.md)`,
    );
  }
  if (/attach/.test(msg) && (err.code === 'EINVAL' || err.code === 'EOPNOTSUPP')) {
    return new RsError(
      'TUNVS_ERR_KERNEL',
      `the kernel refused to attach the reader to ${cgroup} (${msg.split('\n')[0]}): it needs cgroup v2 BPF links and the getpeername4/6 hooks (Linux 5.10+)`,
    );
  }
  if (/load BPF programs/.test(msg)) {
    return new RsError(
      'TUNVS_ERR_KERNEL',
      `the kernel refused the reader's programs (needs socket storage, sockops packet access and TCP_BPF_SYN: Linux 5.10+ with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF):\n${msg}`,
    );
  }
  if (err.code === 'ENOENT' && /open cgroup/.test(msg)) {
    return new RsError(
      'TUNVS_ERR_CGROUP',
      `cgroup ${cgroup} does not exist (create it, or use tunvs rs exec --cgroup)`,
    );
  }
  return err;
}

function pinDirOf(id: number): string {
  return join(PIN_ROOT, String(id));
}

function writeMeta(id: number, cgroup: string): void {
  mkdirSync(META_DIR, { recursive: true });
  writeFileSync(join(META_DIR, `${id}.json`), `${JSON.stringify({ cgroup, attached: new Date().toISOString() })}\n`);
}

function readMeta(id: number): { cgroup?: string; attached?: string } {
  try {
    return JSON.parse(readFileSync(join(META_DIR, `${id}.json`), 'utf8')) as { cgroup?: string; attached?: string };
  } catch {
    return {};
  }
}

function isAttached(dir: string): boolean {
  return LINKS.some((l) => existsSync(join(dir, l)));
}

/** Write options into an attached reader's maps (config entry, trusted prefixes). */
function configure(addon: RsAddon, dir: string, o: ReaderOptions): void {
  const keys = o.trusted.map(trustedKey);
  const tmap = join(dir, 'toa_trusted');
  const want = new Set(keys.map((k) => k.toString('hex')));
  // Add the new prefixes before dropping old ones and before turning the check on.
  for (const k of keys) addon.mapUpdate(tmap, k, Buffer.from([1]));
  addon.mapUpdate(join(dir, 'toa_config'), Buffer.alloc(4), encodeConfig(o));
  for (const k of addon.mapKeys(tmap, 20)) if (!want.has(k.toString('hex'))) addon.mapDelete(tmap, k);
}

export interface AttachResult {
  cgroup: string;
  cgroupId: number;
  pinDir: string;
  /** false: it was attached already and only its options were updated. */
  created: boolean;
}

/** Attach the reader to a cgroup (or update the options of the one attached there). */
export function attachReader(cgroupPath: string, opts: Partial<ReaderOptions> = {}, create = false): AttachResult {
  const o: ReaderOptions = { ...READER_DEFAULTS, ...opts };
  const config = encodeConfig(o);
  const trusted = o.trusted.map(trustedKey);
  checkKernel();
  const cgroup = resolveCgroup(cgroupPath);
  if (!existsSync(cgroup)) {
    if (!create) {
      throw new RsError(
        'TUNVS_ERR_CGROUP',
        `cgroup ${cgroup} does not exist (give an existing one, or --create to make it)`,
      );
    }
    mkdirSync(cgroup, { recursive: true });
  }
  const addon = rsAddon();
  ensureBpffs();
  const id = cgroupId(cgroup);
  const dir = pinDirOf(id);
  try {
    if (isAttached(dir)) {
      configure(addon, dir, o);
      writeMeta(id, cgroup);
      return { cgroup, cgroupId: id, pinDir: dir, created: false };
    }
    mkdirSync(PIN_ROOT, { recursive: true, mode: 0o700 });
    addon.attach(readerObject(), cgroup, dir, config, trusted);
  } catch (e) {
    throw explain(e, cgroup);
  }
  writeMeta(id, cgroup);
  return { cgroup, cgroupId: id, pinDir: dir, created: true };
}

/** Detach the reader from a cgroup. Returns how many programs left it (0: none attached). */
export function detachReader(cgroupPath: string): number {
  const cgroup = resolveCgroup(cgroupPath);
  if (!existsSync(cgroup)) {
    // The cgroup is gone (its links died with it); clean any pins that name it.
    let n = 0;
    for (const r of readerStatus()) if (r.cgroup === cgroup) n += detachById(r.cgroupId);
    return n;
  }
  return detachById(cgroupId(cgroup));
}

function detachById(id: number): number {
  const dir = pinDirOf(id);
  if (!existsSync(dir)) return 0;
  const n = rsAddon().detach(dir);
  rmSync(join(META_DIR, `${id}.json`), { force: true });
  return n;
}

/** Detach the reader from every cgroup it is attached to. */
export function detachAll(): number {
  let n = 0;
  for (const r of readerStatus()) n += detachById(r.cgroupId);
  return n;
}

export interface ReaderStatus {
  cgroupId: number;
  cgroup: string;
  attached?: string;
  /** Program name -> kernel program id, for the links still attached. */
  programs: Record<string, number>;
  options: ReaderOptions;
  counters: Record<ReaderCounter, number>;
  /** Connections that got a client address (TOA stored in their socket). */
  socketsServed: number;
}

/** Every cgroup the reader is attached to, with its options and counters. */
export function readerStatus(): ReaderStatus[] {
  if (!existsSync(PIN_ROOT)) return [];
  const addon = rsAddon();
  const cpus = addon.possibleCpus();
  const out: ReaderStatus[] = [];
  for (const name of readdirSync(PIN_ROOT).sort()) {
    const id = Number(name);
    if (!Number.isInteger(id)) continue;
    const dir = join(PIN_ROOT, name);
    const programs: Record<string, number> = {};
    for (const l of LINKS) {
      if (!existsSync(join(dir, l))) continue;
      try {
        programs[l] = addon.linkInfo(join(dir, l)).progId;
      } catch {
        // a link whose cgroup was removed: reported as missing
      }
    }
    const tkeys = existsSync(join(dir, 'toa_trusted')) ? addon.mapKeys(join(dir, 'toa_trusted'), 20) : [];
    const cfg = addon.mapLookup(join(dir, 'toa_config'), Buffer.alloc(4), 4);
    const counters = Object.fromEntries(READER_COUNTERS.map((c) => [c, 0])) as Record<ReaderCounter, number>;
    READER_COUNTERS.forEach((c, i) => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(i);
      const v = addon.mapLookup(join(dir, 'toa_counters'), key, 8 * cpus);
      if (v) for (let cpu = 0; cpu < cpus; cpu++) counters[c] += Number(v.readBigUInt64LE(8 * cpu));
    });
    const meta = readMeta(id);
    out.push({
      cgroupId: id,
      cgroup: meta.cgroup ?? `(cgroup id ${id})`,
      ...(meta.attached ? { attached: meta.attached } : {}),
      programs,
      options: decodeConfig(cfg ?? encodeConfig(READER_DEFAULTS), tkeys.map(trustedText)),
      counters,
      socketsServed: counters.toa_v4 + counters.toa_v6 + counters.toa_saved_syn,
    });
  }
  return out;
}

export function formatStatus(list: ReaderStatus[]): string {
  if (list.length === 0) return 'the TOA reader is not attached to any cgroup (tunvs rs attach --cgroup PATH)';
  const lines: string[] = [];
  for (const r of list) {
    const progs = LINKS.map(
      (l) => `${l.replace('toa_', '')}${r.programs[l] !== undefined ? ` (prog ${r.programs[l]})` : ' MISSING'}`,
    );
    const o = r.options;
    lines.push(
      `cgroup ${r.cgroup} (id ${r.cgroupId})${r.attached ? `, attached ${r.attached}` : ''}`,
      `  programs: ${progs.join(', ')}`,
      `  options:  TOA kind v4 ${o.kindV4}, v6 ${o.kindV6}/${o.kindV6Alt}; saved SYN ${o.savedSyn ? 'on' : 'off'}; trusted peers ${o.trusted.length > 0 ? o.trusted.join(' ') : 'any'}`,
      `  sockets served: ${r.socketsServed} (TOA v4 ${r.counters.toa_v4}, v6 ${r.counters.toa_v6}, from saved SYN ${r.counters.toa_saved_syn}); answers rewritten: ${r.counters.rewritten}`,
      `  without TOA: ${r.counters.no_toa}; untrusted peer: ${r.counters.untrusted}; malformed options: ${r.counters.bad_option}; v6 TOA on an IPv4 socket: ${r.counters.v6_toa_on_v4_socket}; storage failures: ${r.counters.store_failed}`,
    );
  }
  return lines.join('\n');
}

/** Move process `pid` (all its threads) into the cgroup, creating the cgroup if needed. */
export function joinCgroup(cgroupPath: string, pid = process.pid): string {
  const cgroup = resolveCgroup(cgroupPath);
  mkdirSync(cgroup, { recursive: true });
  try {
    appendFileSync(join(cgroup, 'cgroup.procs'), `${pid}\n`);
  } catch (e) {
    throw new RsError('TUNVS_ERR_CGROUP', `cannot move process ${pid} into ${cgroup}: ${(e as Error).message}`);
  }
  return cgroup;
}
