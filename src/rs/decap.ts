/**
 * TUNNEL-mode real servers: the LB's IPIP / IPv6-in-IPv6 (GRE, GUE) packets are taken apart by
 * the kernel's tunl0 / ip6tnl0 (gre0 / ip6gre0; fou's GUE ports) where the ipip and ip6_tunnel
 * (ip_gre, ip6_gre; fou) modules exist. Where they do not (or should not be loaded), `tunvs rs
 * decap attach --dev DEV [--gue-port P]...` puts tunvs's XDP decapsulator
 * (native/bpf/ipip_decap.bpf.c, all three encapsulations, GUE on the ports given) on the
 * interface the tunnel packets arrive on, through the rs addon (libbpf: it fills the GUE ports
 * before the program is attached). docs/modes.md has the rest of the real server's side (the
 * VIP on lo, arp_ignore / arp_announce, rp_filter, advmss).
 *
 *   decapMode     which XDP mode: native (in the driver) unless DEV is a veth, where native
 *                 XDP turns segmentation offload off on the veth's peer (the kernel's
 *                 veth_xdp_set), so everything sent to the server (a container's eth0)
 *                 would arrive cut to MTU-sized packets; generic XDP runs after the skb is
 *                 built and leaves the peer's offloads alone
 *   attachDecap   attach it in that mode
 *   detachDecap   remove it, whichever mode it runs in
 */

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DECAP_GUE_PORTS_MAX } from '../constants.js';
import { packageRoot } from '../paths.js';
import { rsAddon } from './native.js';

/** Where the compiled decapsulator (BPF object) is. */
export function decapObject(): string {
  return join(packageRoot(), 'native', 'rs', 'build', 'ipip_decap.bpf.o');
}

export const DECAP_MODES = ['native', 'generic'] as const;
export type DecapMode = (typeof DECAP_MODES)[number];

/** iproute2's word for each mode. */
const IP_XDP_WORD: Record<DecapMode, string> = { native: 'xdpdrv', generic: 'xdpgeneric' };

/** `requested`, or the mode that suits `dev`: generic on a veth (above), else native. */
export function decapMode(dev: string, netns?: string, requested?: DecapMode): DecapMode {
  if (requested !== undefined) return requested;
  const links = JSON.parse(ip(netns, ['-j', '-d', 'link', 'show', 'dev', dev]) || '[]') as {
    linkinfo?: { info_kind?: string };
  }[];
  return links[0]?.linkinfo?.info_kind === 'veth' ? 'generic' : 'native';
}

/** Attach the decapsulator to `dev` (in network namespace `netns`, or here), taking GUE
 * apart on `guePorts` too; returns the mode it runs in. */
export function attachDecap(dev: string, netns?: string, requested?: DecapMode, guePorts: number[] = []): DecapMode {
  const obj = decapObject();
  if (!existsSync(obj))
    throw new Error(
      `the XDP decapsulator is not built (${obj} missing): node scripts/build-native.mjs (needs clang, libbpf-dev, linux-libc-dev)`,
    );
  if (guePorts.length > DECAP_GUE_PORTS_MAX)
    throw new Error(`at most ${DECAP_GUE_PORTS_MAX} GUE ports (got ${guePorts.length})`);
  for (const p of guePorts)
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`GUE port ${p} is not a port (1-65535)`);
  const mode = decapMode(dev, netns, requested);
  try {
    rsAddon().decapAttach(obj, dev, mode === 'generic', netns === undefined ? '' : `/run/netns/${netns}`, guePorts);
  } catch (e) {
    throw new Error(`attach the XDP decapsulator to ${dev} (${mode}): ${(e as Error).message}`);
  }
  return mode;
}

/** Remove whatever XDP program `dev` has (the decapsulator, attached above), in either mode
 * (`xdp off` alone removes only the driver's). */
export function detachDecap(dev: string, netns?: string): void {
  for (const mode of DECAP_MODES) ip(netns, ['link', 'set', 'dev', dev, IP_XDP_WORD[mode], 'off']);
}

function ip(netns: string | undefined, args: string[]): string {
  try {
    return execFileSync('ip', [...(netns === undefined ? [] : ['-n', netns]), ...args], {
      stdio: 'pipe',
      encoding: 'utf8',
    });
  } catch (e) {
    const err = e as { stderr?: Buffer | string; message: string };
    throw new Error(`ip ${args.join(' ')}: ${err.stderr?.toString().trim() || err.message}`);
  }
}
