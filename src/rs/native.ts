/** The real-server side's native pieces: the socket helpers (in the main addon, no libbpf)
 * and the eBPF loader (a separate addon linked with libbpf, native/rs/). */

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from '../paths.js';

export interface SockAddon {
  setSaveSyn(fd: number, on: boolean): void;
  savedSyn(fd: number): Buffer | null;
  execvp(file: string, args: string[]): never;
}

export interface LinkInfo {
  progId: number;
  linkId: number;
  cgroupId: number;
  attachType: number;
}

export interface RsAddon {
  attach(obj: string, cgroup: string, pinDir: string, config: Buffer, trusted: Buffer[]): void;
  detach(pinDir: string): number;
  linkInfo(path: string): LinkInfo;
  mapLookup(path: string, key: Buffer, valueBytes: number): Buffer | null;
  mapUpdate(path: string, key: Buffer, value: Buffer): void;
  mapDelete(path: string, key: Buffer): boolean;
  mapKeys(path: string, keySize: number): Buffer[];
  possibleCpus(): number;
  decapAttach(obj: string, dev: string, generic: boolean, netnsPath: string, guePorts: number[]): void;
}

const BUILD_HINT =
  'build it with: node scripts/build-native.mjs (needs clang, libbpf-dev and linux-libc-dev; Debian: apt-get install clang libbpf-dev linux-libc-dev)';

let sock: SockAddon | undefined;
let rs: RsAddon | undefined;

export function sockAddon(): SockAddon {
  if (sock) return sock;
  const file = join(packageRoot(), 'native', 'build', 'Release', 'tunvs_native.node');
  if (!existsSync(file)) throw new Error(`native addon not built (${file} missing): run npm ci`);
  sock = createRequire(import.meta.url)(file) as SockAddon;
  return sock;
}

/** Where the compiled reader (BPF object) is. */
export function readerObject(): string {
  return join(packageRoot(), 'native', 'rs', 'build', 'toa_reader.bpf.o');
}

export function rsAddon(): RsAddon {
  if (rs) return rs;
  const file = join(packageRoot(), 'native', 'rs', 'build', 'Release', 'tunvs_rs.node');
  if (!existsSync(file) || !existsSync(readerObject())) {
    throw new Error(
      `the eBPF TOA reader is not built (${existsSync(file) ? readerObject() : file} missing): ${BUILD_HINT}`,
    );
  }
  rs = createRequire(import.meta.url)(file) as RsAddon;
  return rs;
}
