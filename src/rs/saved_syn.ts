/**
 * The client address for Node servers that cannot use the eBPF reader (a container without
 * CAP_BPF, a host where loading programs is not allowed): the kernel keeps each
 * connection's SYN (TCP_SAVE_SYN on the listener) and the server reads the TOA from it
 * (TCP_SAVED_SYN on the accepted socket).
 *
 * It needs the TOA *in the SYN*: set `toa: { inSyn: true }` on the tunvs service. (By default
 * tunvs puts the TOA in the packets that complete the handshake, which only the eBPF reader
 * sees.) A connection that did not come through tunvs has no TOA: clientAddress() then gives
 * the socket's own peer.
 *
 *   import { createServer } from 'node:http';
 *   import { enableSavedSyn, clientAddress } from 'tunvs/saved-syn';
 *   const server = createServer((req, res) => {
 *     const c = clientAddress(req.socket);
 *     res.end(`hello ${c.address}:${c.port}\n`);
 *   });
 *   server.listen(8080, () => enableSavedSyn(server));
 *
 * Only SYNs that arrive after enableSavedSyn() are kept; the kernel frees a saved SYN when it
 * is read (here, once per socket; the result is cached) or when the socket closes.
 */

import type { Server, Socket } from 'node:net';
import { sockAddon } from './native.js';
import { DEFAULT_TOA_KINDS, parseToaOptions, tcpHeaderOf, type ToaAddress, type ToaKinds } from './toa_option.js';

interface HasFd {
  _handle?: { fd?: number } | null;
}

function fdOf(o: Server | Socket, what: string): number {
  const fd = (o as unknown as HasFd)._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error(`${what} has no file descriptor (not a TCP socket, or closed)`);
  return fd;
}

/** Turn on TCP_SAVE_SYN on a listening server (or when it starts listening). */
export function enableSavedSyn(server: Server): void {
  if (server.listening) sockAddon().setSaveSyn(fdOf(server, 'server'), true);
  else server.once('listening', () => sockAddon().setSaveSyn(fdOf(server, 'server'), true));
}

const cache = new WeakMap<Socket, ToaAddress | null>();

/** The TOA in this accepted socket's saved SYN, or undefined (no TOA, or no SYN saved). */
export function savedSynToa(socket: Socket, kinds: ToaKinds = DEFAULT_TOA_KINDS): ToaAddress | undefined {
  let t = cache.get(socket);
  if (t === undefined) {
    const syn = sockAddon().savedSyn(fdOf(socket, 'socket'));
    const tcp = syn ? tcpHeaderOf(syn) : undefined;
    t = (tcp && parseToaOptions(tcp.subarray(20), kinds)) ?? null;
    cache.set(socket, t);
  }
  return t ?? undefined;
}

export interface ClientAddress {
  address: string;
  port: number;
  /** true: from the TOA; false: the socket's own peer (no TOA in the SYN). */
  fromToa: boolean;
}

/** The client's address: from the TOA in the saved SYN when there is one, else the peer. */
export function clientAddress(socket: Socket, kinds: ToaKinds = DEFAULT_TOA_KINDS): ClientAddress {
  const t = savedSynToa(socket, kinds);
  if (t) return { address: t.address, port: t.port, fromToa: true };
  return {
    address: (socket.remoteAddress ?? '').replace(/^::ffff:/, ''),
    port: socket.remotePort ?? 0,
    fromToa: false,
  };
}
