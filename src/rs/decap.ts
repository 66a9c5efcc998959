/**
 * TUNNEL-mode real servers: the LB's IPIP / IPv6-in-IPv6 (or GRE) packets are taken apart by
 * the kernel's tunl0 / ip6tnl0 (gre0 / ip6gre0) devices where the ipip and ip6_tunnel (ip_gre,
 * ip6_gre) modules exist. Where they do not (or should not be loaded), `tunvs rs decap attach
 * --dev DEV` puts tunvs's XDP decapsulator (native/bpf/ipip_decap.bpf.c, both encapsulations)
 * on the interface the tunnel packets arrive on,
 * through iproute2 (`ip link set dev DEV xdp obj ...`). docs/modes.md has the rest of the
 * real server's side (the VIP on lo, arp_ignore / arp_announce, rp_filter, advmss).
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
import { packageRoot } from '../paths.js';

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

/** Attach the decapsulator to `dev` (in network namespace `netns`, or here); returns the
 * mode it runs in. */
export function attachDecap(dev: string, netns?: string, requested?: DecapMode): DecapMode {
  const obj = decapObject();
  if (!existsSync(obj))
    throw new Error(
      `the XDP decapsulator is not built (${obj} missing): node scripts/build-native.mjs (needs clang, libbpf-dev, linux-libc-dev)`,
    );
  const mode = decapMode(dev, netns, requested);
  ip(netns, ['link', 'set', 'dev', dev, IP_XDP_WORD[mode], 'obj', obj, 'sec', 'xdp']);
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
