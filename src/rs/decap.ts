/**
 * TUNNEL-mode real servers: the LB's IPIP / IPv6-in-IPv6 packets are taken apart by the
 * kernel's tunl0 / ip6tnl0 devices where the ipip and ip6_tunnel modules exist. Where they do
 * not (or should not be loaded), `tunvs rs decap attach --dev DEV` puts tunvs's XDP
 * decapsulator (native/bpf/ipip_decap.bpf.c) on the interface the tunnel packets arrive on,
 * through iproute2 (`ip link set dev DEV xdp obj ...`). docs/modes.md has the rest of the
 * real server's side (the VIP on lo, arp_ignore / arp_announce, rp_filter, advmss).
 */

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

/** Where the compiled decapsulator (BPF object) is. */
export function decapObject(): string {
  return join(packageRoot(), 'native', 'rs', 'build', 'ipip_decap.bpf.o');
}

/** Attach the decapsulator to `dev` (in network namespace `netns`, or here). */
export function attachDecap(dev: string, netns?: string): void {
  const obj = decapObject();
  if (!existsSync(obj))
    throw new Error(
      `the XDP decapsulator is not built (${obj} missing): node scripts/build-native.mjs (needs clang, libbpf-dev, linux-libc-dev)`,
    );
  ip(netns, ['link', 'set', 'dev', dev, 'xdp', 'obj', obj, 'sec', 'xdp']);
}

/** Remove whatever XDP program `dev` has (the decapsulator, attached above). */
export function detachDecap(dev: string, netns?: string): void {
  ip(netns, ['link', 'set', 'dev', dev, 'xdp', 'off']);
}

function ip(netns: string | undefined, args: string[]): void {
  try {
    execFileSync('ip', [...(netns === undefined ? [] : ['-n', netns]), ...args], { stdio: 'pipe' });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`ip ${args.join(' ')}: ${err.stderr?.toString().trim() || err.message}`);
  }
}
