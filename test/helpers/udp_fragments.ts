/**
 * Fragmented UDP through a lab VIP, for the TUN path (lab.test.ts) and the AF_XDP path
 * (xdp.test.ts): a FULLNAT UDP service per family in front of the real servers' echo, and
 * 20 queries per family from 20 sockets (spread over the workers) of 3,000 and 20,000 bytes,
 * each answered with the server's name in front of it. Larger than the MTU both ways: the
 * client's kernel and the servers' fragment them, tunvs reassembles and fragments again.
 */

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { LAB, nsName } from '../../src/lab/lab.js';
import { runInNs } from '../../src/lab/netns.js';
import { distSrc } from '../../src/paths.js';
import { hostPort } from '../../src/service/addr.js';

export const FRAGMENT_VIPS = { 4: '198.18.0.104', 6: 'fd18:18::104' } as const;
export const FRAGMENT_PORT = 9056;

/** What one family's 20 queries and their answers make: datagrams made whole, and the
 * fragments written for the MTU of 1,500 (3 for ~3,000 bytes, 14 for ~20,000). */
export const FRAGMENT_DATAGRAMS = 40;
export const FRAGMENTS_WRITTEN = 20 * 3 + 20 * 14;

function cli(adminSocket: string, args: string[]): { code: number; err: string } {
  const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args, '--admin', adminSocket], {
    encoding: 'utf8',
  });
  return { code: r.status ?? 1, err: r.stderr };
}

/** Add the two services (`tunvs service add frag-v4`, `frag-v6`); the error text, or ''. */
export function addFragmentServices(adminSocket: string): string {
  for (const v of [4, 6] as const) {
    const r = cli(adminSocket, [
      'service',
      'add',
      `frag-v${v}`,
      '--protocol',
      'udp',
      '--vip',
      FRAGMENT_VIPS[v],
      '--port',
      String(FRAGMENT_PORT),
      // Its sessions leave soon after the test, not UDP's 300 s later.
      '--idle-timeout',
      '5',
      ...(v === 4 ? LAB.laddrs4 : LAB.laddrs6).flatMap((a) => ['--laddr', a]),
      ...LAB.realServers.flatMap((r) => ['--server', hostPort(r[`v${v}`], LAB.echoPort)]),
    ]);
    if (r.code !== 0) return r.err;
  }
  return '';
}

export function deleteFragmentServices(adminSocket: string): void {
  for (const v of [4, 6]) cli(adminSocket, ['service', 'delete', `frag-v${v}`]);
}

/** The 20 queries of family `v` from the lab's client: answers that came back whole, and
 * what was wrong with the others. */
export async function fragmentedQueries(prefix: string, v: 4 | 6): Promise<{ whole: number; bad: string[] }> {
  // One every 10 ms: a burst larger than a neighbour's queue of packets waiting for its
  // address to resolve (unres_qlen_bytes) would lose some in a fresh namespace.
  const script = `const dgram = require('dgram'); let done = 0, whole = 0; const bad = [];
    const t = setTimeout(end, 5000);
    function end() { clearTimeout(t); console.log(JSON.stringify({ whole, bad })); process.exit(0); }
    for (let i = 0; i < 20; i++) setTimeout(() => {
      const q = Buffer.alloc(i % 2 ? 20000 : 3000, String.fromCharCode(97 + (i % 26)));
      q.write('q' + i + ' ');
      const s = dgram.createSocket('udp${v}');
      s.on('message', (m) => {
        const text = m.toString(); const at = text.indexOf(' ');
        if (text.slice(at + 1) === q.toString()) whole++; else bad.push(i + ': ' + m.length + ' bytes');
        s.close(); if (++done === 20) end();
      });
      s.send(q, ${FRAGMENT_PORT}, '${FRAGMENT_VIPS[v]}');
    }, 10 * i);`;
  const out = (await runInNs(nsName(prefix, 'client'), [process.execPath, '-e', script])).out;
  return JSON.parse(out) as { whole: number; bad: string[] };
}
