/**
 * The state one worker's NAT functions share: the packet views of the current ring, the
 * parsed fields of the packet in hand, lookup-key scratch, the shard's session table, the
 * services and the counters. Built once per worker; nothing here is allocated per packet.
 *
 * `parse()` validates a packet and fills the `p*` fields; the path functions (inbound.ts,
 * outbound.ts, the forwarding modes in modes/, icmp_errors.ts) read them.
 */

import type { SessionSync } from '../ha/session_sync.js';
import { SessionTable } from '../conn/table.js';
import { S_ESTABLISHED, S_UDP, secondsToTicks, timeoutTicks, type TimeoutsSec } from '../conn/state.js';
import {
  AF_INET,
  AF_INET6,
  IPPROTO_FRAGMENT,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IPV4_FRAG_MF,
  IPV4_FRAG_OFFSET_MASK,
  TCP_ACKF,
  TCP_FIN,
  TCP_RST,
  TCP_SYN,
} from '../packet/headers.js';
import type { ConnCounts, ResolvedService, ServiceTable } from '../service/service.js';
import {
  DROP_BAD_ICMP,
  DROP_BAD_IP_VERSION,
  DROP_BAD_IPV4_HEADER,
  DROP_BAD_IPV6_HEADER,
  DROP_BAD_TCP_FLAGS,
  DROP_BAD_TCP_HEADER,
  DROP_BAD_UDP_HEADER,
  DROP_IPV4_FRAGMENT,
  DROP_IPV6_EXT_HEADER,
  DROP_IPV6_FRAGMENT,
  DROP_IPV6_LINK_MULTICAST,
  DROP_TRUNCATED,
  DROP_UNSUPPORTED_PROTOCOL,
  VERDICT_FORWARD,
} from './verdict.js';
import { C_EMIT_FULL } from '../dataplane/counters.js';
import {
  EXT_MISPLACED,
  EXT_TRUNCATED,
  IPPROTO_DSTOPTS,
  IPPROTO_HOPOPTS,
  isExtensionHeader,
  lastOptionsHeader,
  optionsEnd,
} from '../packet/ipv6_ext.js';
import { deriveKey, IsnGenerator, randomIsnKey, type IsnKey } from './seq.js';
import { SynCookies } from './syncookie.js';
import { HoldPool } from './hold.js';
import type { PacketRing } from '../dataplane/ring.js';
import type { ForwardingMode } from './modes/mode.js';
import { TEMPLATE_KEY_WORDS, type TemplateTable } from '../conn/templates.js';
import { TunnelMtuTable } from './tunnel_pmtu.js';
import { HOLD_PER_SESSION_MAX, ONE_PACKET_REPLY_SEC, SERVICES_MAX } from '../constants.js';

/** Label of the SYN cookies' key, derived from the ISN key (seq.ts deriveKey). */
const COOKIE_KEY_LABEL = 0x636f6f6b;

export interface NatOptions {
  worker: number;
  workers: number;
  mtu: number;
  timeouts: TimeoutsSec;
  /** Send RST to both sides when an ESTABLISHED session times out. */
  rstOnExpire: boolean;
  tickMs: number;
  /** Key of the ISN hash (seq.ts); one per LB pair, stable across restarts (random if absent). */
  isnKey?: IsnKey;
}

/** The packet quoted by the ICMP error in hand (icmp_errors.ts fills it). */
export class IcmpQuote {
  l3 = 0;
  l4 = 0;
  proto = 0;
  sport = 0;
  dport = 0;
  /** Outer destination is a VIP (error about VIP → client) rather than a local address. */
  toVip = false;
}

export class NatContext {
  // Current ring views (set by the engine before each burst).
  buf: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(new ArrayBuffer(0));
  /** Absolute end of the current slot: a rewrite must not grow a packet past it. */
  slotEnd = 0;

  // The parsed packet.
  pAf = 0;
  pL3 = 0;
  pL4 = 0;
  pEnd = 0;
  pProto = 0;
  pS0 = 0;
  pS1 = 0;
  pS2 = 0;
  pS3 = 0;
  pD0 = 0;
  pD1 = 0;
  pD2 = 0;
  pD3 = 0;
  pSport = 0;
  pDport = 0;
  /** TCP flags byte, or the ICMP type for ICMP. */
  pFlags = 0;
  /** TCP header length in bytes. */
  pThl = 0;
  /** The L4 checksum field holds only the folded pseudo-header sum (virtio NEEDS_CSUM):
   * the kernel completes it later, so only address and length changes update it. */
  pPartial = false;
  /** A GSO super-packet (virtio gso_type != NONE): rewritten once for all its segments. */
  pGso = false;
  /** Offset of the packet's virtio_net_hdr (valid when the ring has headroom). */
  pVnet = 0;

  readonly quote = new IcmpQuote();

  /** Lookup keys: layout.ts "Lookup key". */
  readonly key = new Int32Array(10);
  readonly okey = new Int32Array(10);
  /** DR (modes/dr.ts): the packet in hand became a frame for the real servers' link. */
  toLink = false;
  /** The packet in hand is a datagram made whole from fragments (dataplane/reassembly.ts):
   * its sender let it be fragmented, and it leaves as fragments when too big (fragment.ts). */
  pReassembled = false;
  /** How many identifications nextIpId has given, from a random start. */
  ipIdSeq = (Math.random() * 0x100000000) >>> 0;
  /** Hash of `okey` left by a two-way mode's create (modes/mode.ts). */
  outHash = 0;
  /** Persistence templates, shared by every worker (conn/templates.ts), its lookup key, and
   * the template the last createSession used (−1: none). */
  templates: TemplateTable | null = null;
  readonly tkey = new Int32Array(TEMPLATE_KEY_WORDS);
  templateSlot = -1;
  /** The forwarding modes by id (modes/index.ts; the engine sets them). */
  modes: readonly ForwardingMode[] = [];
  /** TUNNEL's learned path MTUs by real server, shared by every worker (tunnel_pmtu.ts; the
   * engine sets the LB's). */
  tunnelMtus = new TunnelMtuTable();
  /** Option scratch: offsets of the options of the packet in hand, and a rebuild area. */
  readonly optOffsets = new Int32Array(40);
  /** Set by scanPacketOptions (toa.ts): the offset of the packet's timestamp option (−1:
   * none), and whether it has any option but NOP and timestamp (SACK, MSS, TOA, …: what the
   * option passes look for; an established segment usually has none). */
  optTs = -1;
  optOther = false;
  readonly optScratch = new Uint8Array(64);

  /** Timeouts in ticks by state (conn/state.ts), and by service the one of an idle session
   * ESTABLISHED or a UDP flow: the service's idleTimeout or the global one (session.ts
   * timeoutOf). */
  readonly timeouts: Int32Array;
  readonly idleTicks = new Int32Array(SERVICES_MAX);
  readonly isn: IsnGenerator;
  readonly cookies: SynCookies;
  /** SYN proxy: client segments held until their real server answers. */
  readonly hold = new HoldPool();
  /** Slots of the held segments being flushed (HoldPool.take). */
  readonly heldList = new Int32Array(HOLD_PER_SESSION_MAX);
  /** SYN proxy: a session whose server just answered; the engine sends its held segments
   * after the packet in hand (fullnat_in.ts flushHeld). −1: none. */
  flushRecord = -1;
  /** Half-open sessions (conn/state.ts isHalfOpen: synProxy auto watches them). */
  halfOpen = 0;
  /** synProxy auto: this worker's proxy is on, since when, and its last second's figures. */
  proxyAuto = false;
  proxyQuietSinceMs = 0;
  proxySecondMs = 0;
  proxySecondSynAcks = 0;
  proxySecondAccepted = 0;
  /** Bytes in front of each packet of the ring in hand (its virtio_net_hdr), 0 without. */
  headroom = 0;
  /** Packets the LB writes itself (RSTs, the SYN proxy's SYNs and held segments); the I/O
   * layer writes the first `emitCount` after each burst. */
  emitCount = 0;
  /** Current tick and time, set per burst. */
  tick = 0;
  nowMs = 0;
  /** HA session sync (null: no HA pair). */
  sync: SessionSync | null = null;

  constructor(
    readonly opts: NatOptions,
    readonly table: SessionTable,
    public services: ServiceTable,
    readonly counts: ConnCounts,
    readonly counters: Float64Array,
    readonly emit: PacketRing,
  ) {
    this.timeouts = timeoutTicks(opts.timeouts, opts.tickMs);
    const key = opts.isnKey ?? randomIsnKey();
    this.isn = new IsnGenerator(key);
    this.cookies = new SynCookies(deriveKey(key, COOKIE_KEY_LABEL));
  }

  /** Each service's idle timeout (idleTicks), at every apply of the services; a removed
   * service keeps its own, for the sessions that run on. A one-packet service's is how long
   * a datagram's session waits for the reply. */
  setIdleTimeouts(services: readonly ResolvedService[]): void {
    for (const s of services) {
      this.idleTicks[s.id] =
        s.idleTimeoutSec > 0
          ? secondsToTicks(s.idleTimeoutSec, this.opts.tickMs)
          : s.onePacket
            ? secondsToTicks(ONE_PACKET_REPLY_SEC, this.opts.tickMs)
            : this.timeouts[s.proto === IPPROTO_TCP ? S_ESTABLISHED : S_UDP]!;
    }
  }

  /** A slot of the emit ring for a packet the LB writes (its virtio_net_hdr zeroed: complete
   * checksums, no GSO): its offset, or −1 when the ring is full (counted). */
  emitSlot(): number {
    const e = this.emit;
    if (this.emitCount >= e.slots) {
      this.counters[C_EMIT_FULL] = this.counters[C_EMIT_FULL]! + 1;
      return -1;
    }
    const off = this.emitCount * e.slotSize;
    e.bytes.fill(0, off, off + e.headroom);
    return off;
  }

  /**
   * The identification of a datagram the LB writes that may travel in fragments: one
   * fragment.ts cuts (IPv4's 16 bits or IPv6's 32), or a TUNNEL outer IPv4 packet without DF
   * (the kernel fragments it on the way). Each worker gives only its own residue modulo the
   * worker count, so two workers never give one to datagrams in flight between the same two
   * addresses at once (FULLNAT's local address and a tunnel's source carry every worker's
   * datagrams to a server, which would mix up their fragments); within a worker the sequence
   * wraps after 65536 / workers (IPv4) datagrams, as Linux's per destination counters do after
   * 65536.
   */
  nextIpId(v6: boolean): number {
    const { worker, workers } = this.opts;
    const k = (this.ipIdSeq = (this.ipIdSeq + 1) >>> 0);
    if (v6) return (((k % Math.floor(0x100000000 / workers)) * workers) >>> 0) + worker;
    return (k % Math.floor(0x10000 / workers)) * workers + worker;
  }

  /** The packet written at emitSlot()'s offset is `len` bytes (headroom excluded). */
  emitted(len: number): void {
    const i = this.emitCount++;
    this.emit.lens[i] = this.emit.headroom + len;
    this.emit.verdicts[i] = VERDICT_FORWARD;
  }

  /** The packet in hand becomes one the LB wrote: a virtio_net_hdr of zeros (complete
   * checksums, no GSO). */
  plainVnet(): void {
    if (this.headroom !== 0) this.buf.fill(0, this.pL3 - this.headroom, this.pL3);
    this.pPartial = false;
    this.pGso = false;
  }

  setRing(buf: Uint8Array, dv: DataView): void {
    this.buf = buf;
    this.dv = dv;
  }

  /**
   * Validate the packet at [off, off + len) and fill the p* fields.
   * Returns 0, or a drop reason. Never throws, never reads outside [off, off + len).
   */
  parse(off: number, len: number): number {
    const b = this.buf;
    const dv = this.dv;
    if (len < 1) return DROP_TRUNCATED;
    const version = b[off]! >>> 4;
    let l4: number;
    let end: number;
    let proto: number;
    if (version === 4) {
      if (len < 20) return DROP_TRUNCATED;
      const ihl = (b[off]! & 15) << 2;
      if (ihl < 20) return DROP_BAD_IPV4_HEADER;
      const total = dv.getUint16(off + 2);
      if (total < ihl) return DROP_BAD_IPV4_HEADER;
      if (total > len) return DROP_TRUNCATED;
      if ((dv.getUint16(off + 6) & (IPV4_FRAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0) return DROP_IPV4_FRAGMENT;
      proto = b[off + 9]!;
      this.pAf = AF_INET;
      this.pS0 = dv.getInt32(off + 12);
      this.pD0 = dv.getInt32(off + 16);
      this.pS1 = this.pS2 = this.pS3 = 0;
      this.pD1 = this.pD2 = this.pD3 = 0;
      l4 = off + ihl;
      end = off + total;
      if (proto === IPPROTO_ICMPV6) return DROP_UNSUPPORTED_PROTOCOL;
    } else if (version === 6) {
      if (len < 40) return DROP_TRUNCATED;
      end = off + 40 + dv.getUint16(off + 4);
      if (end > off + len) return DROP_TRUNCATED;
      // To ff01::/16 or ff02::/16 (scope interface or link): never a VIP's; in practice the
      // kernel's own MLD report into the device (verdict.ts).
      if (b[off + 24] === 0xff && (b[off + 25]! & 15) <= 2) return DROP_IPV6_LINK_MULTICAST;
      proto = b[off + 6]!;
      l4 = off + 40;
      if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && proto !== IPPROTO_ICMPV6) {
        if (proto === IPPROTO_FRAGMENT) return DROP_IPV6_FRAGMENT;
        if (proto !== IPPROTO_HOPOPTS && proto !== IPPROTO_DSTOPTS) {
          return isExtensionHeader(proto) ? DROP_IPV6_EXT_HEADER : DROP_UNSUPPORTED_PROTOCOL;
        }
        // Options headers: forwarded as they came, the upper layer found behind them.
        const last = lastOptionsHeader(b, off, end);
        if (last < 0) {
          return last === EXT_TRUNCATED
            ? DROP_TRUNCATED
            : last === EXT_MISPLACED
              ? DROP_BAD_IPV6_HEADER
              : DROP_IPV6_EXT_HEADER;
        }
        proto = b[last]!;
        l4 = optionsEnd(b, last);
        if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP && proto !== IPPROTO_ICMPV6) {
          if (proto === IPPROTO_FRAGMENT) return DROP_IPV6_FRAGMENT; // reassembled behind them
          return isExtensionHeader(proto) ? DROP_IPV6_EXT_HEADER : DROP_UNSUPPORTED_PROTOCOL;
        }
      }
      this.pAf = AF_INET6;
      this.pS0 = dv.getInt32(off + 8);
      this.pS1 = dv.getInt32(off + 12);
      this.pS2 = dv.getInt32(off + 16);
      this.pS3 = dv.getInt32(off + 20);
      this.pD0 = dv.getInt32(off + 24);
      this.pD1 = dv.getInt32(off + 28);
      this.pD2 = dv.getInt32(off + 32);
      this.pD3 = dv.getInt32(off + 36);
    } else {
      return DROP_BAD_IP_VERSION;
    }
    this.pL3 = off;
    this.pL4 = l4;
    this.pEnd = end;
    this.pProto = proto;
    const l4len = end - l4;
    if (proto === IPPROTO_TCP) {
      if (l4len < 20) return DROP_TRUNCATED;
      const thl = (b[l4 + 12]! >>> 4) << 2;
      if (thl < 20 || thl > l4len) return DROP_BAD_TCP_HEADER;
      const flags = b[l4 + 13]!;
      // SYN with FIN or RST is never legitimate; a segment with no flag at all neither.
      if ((flags & TCP_SYN) !== 0 && (flags & (TCP_FIN | TCP_RST)) !== 0) return DROP_BAD_TCP_FLAGS;
      if ((flags & (TCP_SYN | TCP_FIN | TCP_RST | TCP_ACKF)) === 0) return DROP_BAD_TCP_FLAGS;
      this.pThl = thl;
      this.pFlags = flags;
      this.pSport = dv.getUint16(l4);
      this.pDport = dv.getUint16(l4 + 2);
      return 0;
    }
    if (proto === IPPROTO_UDP) {
      if (l4len < 8) return DROP_TRUNCATED;
      if (dv.getUint16(l4 + 4) !== l4len) return DROP_BAD_UDP_HEADER;
      this.pSport = dv.getUint16(l4);
      this.pDport = dv.getUint16(l4 + 2);
      this.pFlags = 0;
      this.pThl = 8;
      return 0;
    }
    if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) {
      if (l4len < 8) return DROP_BAD_ICMP;
      this.pFlags = b[l4]!;
      this.pSport = 0;
      this.pDport = 0;
      return 0;
    }
    return DROP_UNSUPPORTED_PROTOCOL;
  }

  /** Lookup key of the parsed packet in packet order (src, dst, sport<<16|dport). */
  fillKey(key: Int32Array): number {
    key[0] = (this.pAf << 8) | this.pProto;
    key[1] = (this.pSport << 16) | this.pDport;
    key[2] = this.pS0;
    key[3] = this.pD0;
    key[4] = this.pS1;
    key[5] = this.pD1;
    key[6] = this.pS2;
    key[7] = this.pD2;
    key[8] = this.pS3;
    key[9] = this.pD3;
    return this.pAf === AF_INET ? 3 : 9;
  }
}
