/**
 * The forwarding-mode interface and the registry that names the modes. Each mode lives in
 * its own file (fullnat.ts, nat.ts, tunnel.ts, dr.ts; client_side.ts: what all but FULLNAT share), fills this interface and registers itself
 * by id and name, as the schedulers do (service/sched/).
 *
 * What the engine does for every mode (nat/inbound.ts, nat/outbound.ts): find the session
 * of a client → VIP packet by its IN key, or of a real server's reply by its OUT key; make
 * one for a flow's first packet (schedule a real server, then `create`); hand the packet to
 * the record's mode (`inbound` / `outbound`). The mode is stored in the record (layout.ts
 * recMode), so changing a service's mode leaves its running sessions as they were.
 *
 * Which worker owns a packet is the same rule for every mode (dataplane/shard.ts
 * packetWorker); `owner` says which worker owns a session record that arrives without a
 * packet (HA sync installs).
 */

import type { NatContext } from '../context.js';

export const MODE_NAMES = ['fullnat', 'nat', 'tunnel', 'dr'] as const;
export type ModeName = (typeof MODE_NAMES)[number];
/** Mode ids (record META bits 29–30): index into MODE_NAMES. */
export const MODE_FULLNAT = 0;
export const MODE_NAT = 1;
export const MODE_TUNNEL = 2;
export const MODE_DR = 3;

/** How `ipvsadm -Ln` names each mode's forwarding (tunvs list shows the same word). */
export const MODE_FORWARD_NAMES: Readonly<Record<ModeName, string>> = {
  fullnat: 'FullNat',
  nat: 'Masq',
  tunnel: 'Tunnel',
  dr: 'Route',
};

/** A mode's entries are plain functions (NAT's rewrite is FULLNAT's own). */
export interface ForwardingMode {
  readonly id: number;
  readonly name: ModeName;
  /** The real server's replies come back through the LB: sessions have an OUT key (index
   * entry) and see both directions. False: only client packets pass (the session state
   * follows them alone, conn/state.ts nextStateInputOnly). */
  readonly twoWay: boolean;
  /**
   * A new session `r` of service `svc`: its IN key, real server (SVC_RS) and the real
   * server's half of the OUT key in `ok` are set. Fill the local half of `ok` (FULLNAT: a
   * local address and port; the others: the client's own address and port) and the words
   * the mode needs. Returns 0, or the drop reason (the caller frees the record). Two-way
   * modes leave the hash of `ok` in c.outHash.
   */
  readonly create: (
    c: NatContext,
    svc: number,
    r: number,
    ok: Int32Array,
    blockWords: number,
    clientIsn: number,
  ) => number;
  /** Client → VIP packet of session `r` (`n` TCP options scanned into c.optOffsets).
   * Returns the new length, or −reason. */
  readonly inbound: (c: NatContext, r: number, n: number) => number;
  /** Real server → client packet of session `r` (two-way modes only). */
  readonly outbound: (c: NatContext, r: number) => number;
  /** An ICMP error that quotes a packet of session `r` (nat/icmp_errors.ts has parsed the
   * quote into c.quote): pass it on to whoever sent the quoted packet. */
  readonly icmp: (c: NatContext, r: number) => number;
  /** Worker (of `workers`) that owns a session with client address a0..a3 and the OUT
   * key's ports word `outPorts` (rport<<16 | lport): the one packetWorker sends its packets to. */
  readonly owner: (a0: number, a1: number, a2: number, a3: number, outPorts: number, workers: number) => number;
}

const registry: (ForwardingMode | undefined)[] = [];

export function registerMode(m: ForwardingMode): void {
  registry[m.id] = m;
}

/** The modes by id (dense: index.ts registers every mode before any engine starts). */
export function modeTable(): readonly ForwardingMode[] {
  return MODE_NAMES.map((name, id) => {
    const m = registry[id];
    if (m === undefined) throw new Error(`forwarding mode ${name} is not registered`);
    return m;
  });
}

export function modeId(name: ModeName): number {
  return MODE_NAMES.indexOf(name);
}
