/** Messages between the main thread and the forwarder threads (workers/forwarder.ts). */

import type { MessagePort } from 'node:worker_threads';
import type { TimeoutsSec } from '../conn/state.js';
import type { QueueStats } from '../dataplane/tun_device.js';
import type { ResolvedService } from '../service/service.js';

export interface ForwarderInit {
  worker: number;
  workers: number;
  /** The TUN queue fd this thread drives (fds are process-wide). */
  fd: number;
  capacity: number;
  mtu: number;
  timeouts: TimeoutsSec;
  rstOnExpire: boolean;
  /** The TUN was opened with IFF_VNET_HDR: packets sit behind a virtio_net_hdr. */
  offload: boolean;
  /** Scheduling priority of the forwarder threads (nice value, −20..19). */
  nice: number;
  services: ResolvedService[];
  countersSab: SharedArrayBuffer;
  connCountsSab: SharedArrayBuffer;
  /** Hand-off rings (handoff.ts): to each owner, from each sender; null at our own index. */
  handoffTo: (SharedArrayBuffer | null)[];
  handoffFrom: (SharedArrayBuffer | null)[];
  /** Wake-up ports to / from each other worker (transferred); null at our own index. */
  wakePorts: (MessagePort | null)[];
}

export type ToForwarder =
  { type: 'services'; services: ResolvedService[] } | { type: 'stats'; id: number } | { type: 'stop' };

export type FromForwarder =
  | { type: 'ready'; tableSab: SharedArrayBuffer; capacity: number }
  | { type: 'stats'; id: number; queue: QueueStats; sessions: number };
