/** Messages between the main thread and the forwarder threads (workers/forwarder.ts). */

import type { MessagePort } from 'node:worker_threads';
import type { TimeoutsSec } from '../conn/state.js';
import type { QueueStats } from '../dataplane/tun_device.js';
import type { HaEngineOptions, SessionInfo } from '../dataplane/engine.js';
import type { IsnKey } from '../nat/seq.js';
import type { PeerLocalAddress, ResolvedService } from '../service/service.js';
import type { XdpPort } from '../dataplane/xdp_device.js';

export interface ForwarderInit {
  worker: number;
  workers: number;
  /** The TUN queue fd this thread drives (fds are process-wide). */
  fd: number;
  capacity: number;
  mtu: number;
  timeouts: TimeoutsSec;
  rstOnExpire: boolean;
  /** Key of the ISN hash (control/isn_secret.ts). */
  isnKey: IsnKey;
  /** The TUN was opened with IFF_VNET_HDR: packets sit behind a virtio_net_hdr. */
  offload: boolean;
  /** Scheduling priority of the forwarder threads (nice value, −20..19). */
  nice: number;
  services: ResolvedService[];
  countersSab: SharedArrayBuffer;
  connCountsSab: SharedArrayBuffer;
  /** Every forwarder's connCountsSab, by worker (session caps count the LB's sessions). */
  nodeConnCountsSabs: SharedArrayBuffer[];
  /** The LB's persistence templates (conn/templates.ts), one table for every worker. */
  templatesSab: SharedArrayBuffer;
  /** TUNNEL's learned path MTUs (nat/tunnel_pmtu.ts), one table for every worker. */
  tunnelMtuSab: SharedArrayBuffer;
  /** DR: the packet socket to the real servers' link (control/link.ts), −1 none. */
  linkFd: number;
  /** Hand-off rings (handoff.ts): to each owner, from each sender; null at our own index. */
  handoffTo: (SharedArrayBuffer | null)[];
  handoffFrom: (SharedArrayBuffer | null)[];
  /** Wake-up ports to / from each other worker (transferred); null at our own index. */
  wakePorts: (MessagePort | null)[];
  /** io: xdp — this forwarder's AF_XDP sockets (control/xdp.ts portsFor; none: TUN only). */
  xdp?: { ports: XdpPort[]; zeroCopy: boolean };
  /** HA: node id, the shared control words (ha/role.ts) and this worker's sync event ring
   * (ha/session_sync.ts). */
  ha?: HaEngineOptions;
}

export type ToForwarder =
  | { type: 'services'; services: ResolvedService[] }
  /** Cluster: the peers' local addresses and their nodes (replies to a taken-over peer's are
   * owned by port; a session on one is that peer's while it lives). */
  | { type: 'peer-laddrs'; laddrs: PeerLocalAddress[] }
  /** HA: the peers' worker counts, as registered (a full shard borrows ports they all serve). */
  | { type: 'peer-workers'; counts: number[] }
  /** gc: a full garbage collection first, so heapBytes is what is live (tunvs stats --gc). */
  | { type: 'stats'; id: number; gc?: boolean }
  | { type: 'stop' }
  /** DR: the packet socket for LINK slots changed (−1: none). */
  | { type: 'link'; fd: number }
  /** HA: install these events from peers (op + sync record each). */
  | { type: 'sync-install'; events: Int32Array; count: number }
  /* HA scans of the whole table: each runs in slices with the packets served between them,
   * one scan after the other in the order they came (workers/forwarder.ts), and replies when
   * done. */
  /** HA: reply with every session this node owns and has published (full resync). */
  | { type: 'sync-snapshot'; id: number }
  /** HA: a reload of peer `owner`'s sessions begins (0: every peer's): mark its copies stale. */
  | { type: 'sync-mark'; id: number; owner: number }
  /** HA: the reload is done: drop the copies of `owner` still stale. */
  | { type: 'sync-sweep'; id: number; owner: number }
  /** HA: take over the sessions installed from peer `owner`, 0: every peer. */
  | { type: 'sync-adopt'; id: number; owner: number }
  /** HA cluster: sessions go to the node that holds their local address (and, othersTo > 0,
   * the other modes' to that node); reply what moved. */
  | { type: 'sync-reconcile'; id: number; othersTo: number }
  /** HA, a pair's master standing down or a node stopping in order: publish its sessions
   * younger than syncAfter; reply how many. */
  | { type: 'sync-publish-young'; id: number }
  /** Health check with resetOnDown: end the real server's sessions with RSTs; reply how many. */
  | { type: 'reset-server'; id: number; serverId: number }
  /** `tunvs conns`: up to `limit` sessions matching the filter. */
  | { type: 'conns'; id: number; filter: ConnFilter; limit: number };

/** Session filter of `tunvs conns`: each given field must match (addresses as text,
 * "addr" or "addr:port"; state by name). */
export interface ConnFilter {
  /** tcp or udp (ipvsadm -Lnc shows both; --tcp-service / --udp-service pick one). */
  protocol?: string;
  vip?: string;
  client?: string;
  server?: string;
  state?: string;
}

export type FromForwarder =
  /** xdpError: io: xdp, the AF_XDP sockets could not be opened (the forwarder runs on TUN). */
  | { type: 'ready'; tableSab: SharedArrayBuffer; capacity: number; xdpError?: string }
  /** heapBytes: the V8 heap the forwarder thread's isolate uses (its own; the process's RSS
   * counts every thread). */
  | { type: 'stats'; id: number; queue: QueueStats; sessions: number; heapBytes: number }
  | { type: 'sync-snapshot'; id: number; records: Int32Array[]; writeCount: number }
  | { type: 'sync-marked'; id: number; marked: number }
  | { type: 'sync-swept'; id: number; removed: number }
  | { type: 'sync-adopted'; id: number; adopted: number }
  | { type: 'sync-reconciled'; id: number; claimed: number; handedOver: number }
  | { type: 'sync-published-young'; id: number; published: number }
  | { type: 'server-reset'; id: number; ended: number }
  | { type: 'conns'; id: number; sessions: SessionInfo[]; more: boolean }
  /** The asks (ids) the forwarder is still on, every ASK_PROGRESS_MS while there are any. */
  | { type: 'progress'; ids: number[] };

/** What the main thread asks a forwarder for `tunvs stats` and each scrape. */
export interface ForwarderStats {
  queue: QueueStats;
  heapBytes: number;
}
