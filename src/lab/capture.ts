/**
 * Packet captures in lab namespaces with tshark (Debian's; a tool the project did not
 * write, so it is an independent judge of what tunvs put on the wire): start one by PID,
 * stop it by that PID, and read back the TCP packets with tshark's own checksum verdicts
 * and the TOA option they carry.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { parseToaOptions, type ToaKinds } from '../rs/toa_option.js';
import { isAlive, spawnInNs, stopPid } from './netns.js';

export interface Capture {
  pid: number;
  file: string;
  log: string;
}

export async function startCapture(ns: string, iface: string, file: string, filter: string): Promise<Capture> {
  const log = `${file}.log`;
  const pid = spawnInNs(ns, ['tshark', '-i', iface, '-q', '-w', file, '-f', filter, '-a', 'duration:300'], log);
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (existsSync(log) && readFileSync(log, 'utf8').includes('Capturing on')) {
      // dumpcap reports before the socket is fully live: give it a moment.
      await new Promise((r) => setTimeout(r, 300));
      return { pid, file, log };
    }
    if (!isAlive(pid)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`tshark did not start in ${ns}: ${existsSync(log) ? readFileSync(log, 'utf8') : 'no log'}`);
}

export async function stopCapture(c: Capture): Promise<void> {
  if (isAlive(c.pid)) process.kill(c.pid, 'SIGINT');
  const deadline = Date.now() + 5000;
  while (isAlive(c.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await stopPid(c.pid, 1000);
}

export interface TcpSeen {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  syn: boolean;
  ack: boolean;
  /** tshark's verdicts: true = checksum verified good (TCP: tcpChecksumGood). */
  ipChecksumGood: boolean;
  tcpChecksumGood: boolean;
  /** The TOA found in the options (kind 254/253/200, length 8 or 20), if any. */
  toa?: { kind: number; address: string; port: number };
}

/** The kinds the lab's services use (tunvs's default 254, 253 for v6, 200 as configured). */
const LAB_KINDS: ToaKinds = { v4: [254, 253, 200], v6: [254, 253, 200] };

function decodeToa(hex: string): TcpSeen['toa'] {
  const t = parseToaOptions(Buffer.from(hex.replace(/[^0-9a-f]/gi, ''), 'hex'), LAB_KINDS);
  return t && { kind: t.kind, address: t.address, port: t.port };
}

/** The packets of capture file `file` that tshark's display `filter` keeps, each as the
 * values of `fields` (all occurrences comma-joined, or with `outermost` the first only),
 * with the `checks` protocols' checksums verified by tshark. */
function tsharkRows(file: string, checks: string[], filter: string, fields: string[], outermost = false): string[][] {
  const out = execFileSync(
    'tshark',
    [
      '-r',
      file,
      ...checks.flatMap((p) => ['-o', `${p}.check_checksum:TRUE`]),
      '-Y',
      filter,
      '-T',
      'fields',
      ...(outermost ? ['-E', 'occurrence=f'] : []),
      ...fields.flatMap((f) => ['-e', f]),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] },
  );
  return out
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => l.split('\t'));
}

/** The tshark fields tcpChecksumGood reads, in its order (with the TCP check on). */
export const TCP_CHECKSUM_FIELDS = ['tcp.checksum.status', 'tcp.checksum', 'tcp.checksum_calculated'] as const;

/**
 * tshark's verdict on a TCP checksum (TCP_CHECKSUM_FIELDS' values), corrected in one case: a
 * field of 0xffff where the checksum comes to 0x0000 is good. Both are zero in ones'
 * complement and every stack takes either (RFC 1624 §3); Linux writes 0xffff when it completes
 * a partial checksum that comes to zero (skb_checksum_help's CSUM_MANGLED_0, as on the lab's
 * interfaces with TX checksumming off), and tshark calls that bad ("0xffff instead of 0x0000"):
 * one segment in 65,536 of those the kernel completes. tunvs itself never writes 0xffff.
 */
export function tcpChecksumGood(
  status: string | undefined,
  field: string | undefined,
  calculated: string | undefined,
): boolean {
  return status === '1' || (Number(field) === 0xffff && /^0x0{4}$/.test(calculated ?? ''));
}

/** TCP packets of a capture file, as tshark decodes and verifies them. */
export function readCapture(file: string): TcpSeen[] {
  const fields = ['ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport', 'tcp.flags.syn'];
  fields.push('tcp.flags.ack', 'tcp.options', 'ip.checksum.status', ...TCP_CHECKSUM_FIELDS);
  return tsharkRows(file, ['ip', 'tcp'], 'tcp', fields).map(
    ([s4, s6, d4, d6, sport, dport, syn, ack, opts, ipSum, tcpSum, tcpField, tcpCalculated]) => {
      const toa = decodeToa(opts ?? '');
      return {
        src: s4 || s6 || '',
        dst: d4 || d6 || '',
        sport: Number(sport),
        dport: Number(dport),
        syn: syn === '1' || syn === 'True',
        ack: ack === '1' || ack === 'True',
        // IPv6 has no header checksum: "not present" counts as good.
        ipChecksumGood: s4 ? ipSum === '1' : true,
        tcpChecksumGood: tcpChecksumGood(tcpSum, tcpField, tcpCalculated),
        ...(toa ? { toa } : {}),
      };
    },
  );
}

export interface UdpSeen {
  v6: boolean;
  sport: number;
  dport: number;
  /** The checksum field as sent (0: none, IPv4 only). */
  checksum: number;
  /** tshark's verdict on it: good, bad, or none to check (a zero IPv4 checksum). */
  checksumStatus: 'good' | 'bad' | 'none';
}

/** The outermost UDP headers of a capture file (tunnel packets: TUNNEL's GUE), with tshark's
 * verdict on each checksum. */
export function readUdpCapture(file: string): UdpSeen[] {
  const fields = ['ipv6.src', 'udp.srcport', 'udp.dstport', 'udp.checksum', 'udp.checksum.status'];
  return tsharkRows(file, ['udp'], 'udp', fields, true).map(([s6, sport, dport, sum, status]) => ({
    v6: (s6 ?? '') !== '',
    sport: Number(sport),
    dport: Number(dport),
    checksum: Number(sum),
    checksumStatus: status === '1' ? 'good' : status === '0' ? 'bad' : 'none',
  }));
}
