/**
 * The importers under mutated input: whatever a user feeds `tunvs import` (a half-edited
 * ipvsadm script, a listing cut short, a keepalived.conf with a brace missing), it either
 * gives a config that tunvs's own loader takes, or refuses with an ImportError that names a
 * line — never a TypeError, a RangeError or a hang. Seeded, so a failure names the input that
 * caused it and comes again.
 */

import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.js';
import { ImportError, importYaml, type ImportOptions, type ImportResult } from '../../src/config/import.js';
import { importIpvsadm } from '../../src/config/import_ipvsadm.js';
import { importKeepalived } from '../../src/config/import_keepalived.js';
import { IdRegistry, resolveServices } from '../../src/service/service.js';
import { Rng } from '../helpers/rng.js';

/** ipvsadm -Sn, DPVS's script words, a firewall-mark service and an all-ports one. */
const SCRIPT = `-A -t 198.18.0.100:80 -s wrr -p 300 -M 255.255.255.0
-a -t 198.18.0.100:80 -r 198.18.20.21:8080 -m -w 1 -x 100 -y 50
-a -t 198.18.0.100:80 -r 198.18.20.22:8080 -m -w 2
-A -t [fd18:18::100]:80 -s mh -b mh-port,mh-fallback -p 600 -M 64 --sloppy
-a -t [fd18:18::100]:80 -r [fd18:18:20::21]:80 -g -w 1
-A -u 198.18.0.100:53 -s sh -o
-a -u 198.18.0.100:53 -r 198.18.20.21:53 -i -w 1
ipvsadm -A -t 198.18.0.102:443 -s rr -j enable --conn-timeout 60
ipvsadm -P -t 198.18.0.102:443 -z 198.18.2.1
ipvsadm -a -t 198.18.0.102:443 -r 198.18.20.21:443 -b -w 1
ipvsadm -E -t 198.18.0.102:443 -s wlc --persistence-group g -p 60
-A -f 1 -s rr -p 600
-a -f 1 -r 198.18.20.21:0 -g -w 1
-A -t 198.18.0.103:0 -s rr -p 60
-a -t 198.18.0.103:0 -r 198.18.20.21:0 -g -w 1
-a -t 198.18.0.103:0 -r 198.18.20.99:0 -g -w 1 --sorry-server
--set 900 120 300
`;

/** ipvsadm -Ln and tunvs list, with their own words. */
const LISTING = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  198.18.0.100:80 wrr persistent 600 mask 255.255.255.0 group shop synproxy quorum lost
  -> 198.18.20.21:8080            FullNat 7      0          0         cap 100/75 weight from check (config 2)
  -> 198.18.20.22:8080            FullNat 1      0          0         DOWN (connect: refused)
  -> 198.18.20.99:8080            FullNat 1      0          0         sorry server (in use: no quorum)
TCP  [fd18:18::100]:80 sh (sh-fallback,sh-port) conn-timeout 30 sloppy
  -> [fd18:18:20::21]:80          Route   1      0          0
UDP  198.18.0.100:53 rr ops
  -> 198.18.20.21:53              Masq    1      0          0          inhibited
FWM  1 rr persistent 600
  -> 198.18.20.21:0               Route   1      0          0
Timeout (tcp tcpfin udp): 900 120 300
`;

const KEEPALIVED = `global_defs {
   lvs_timeouts tcp 900 tcpfin 120 udp 300
}
local_address_group laddr_g1 {
    198.18.2.1-2 dpdk0
    fd18:18:2::1 dpdk0
}
virtual_server_group web {
    198.18.0.100 80
    198.18.0.101 80
}
virtual_server group web {
    lb_algo wrr
    lb_kind FNAT
    protocol TCP
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    laddr_group_name laddr_g1
    quorum 2
    hysteresis 1
    sorry_server 198.18.20.99 8080
    real_server 198.18.20.21 8080 {
        weight 2
        uthreshold 100
        HTTP_GET {
            url { path /health
                  status_code 200 }
            connect_timeout 2
            retry 2
        }
    }
    real_server 198.18.20.22 8080 {
        HTTP_GET {
            url { path /health
                  status_code 200 }
            connect_timeout 2
            retry 2
        }
    }
}
virtual_server fwmark 1 {
    lb_algo rr
    lb_kind DR
    persistence_timeout 60
    real_server 198.18.20.21 0 {
        MISC_CHECK {
            misc_path "/usr/local/bin/check {address}"
            misc_timeout 3
            misc_dynamic
        }
    }
}
virtual_server 198.18.0.102 443 {
    lb_algo mh
    lb_kind TUN
    protocol TCP
    real_server 198.18.20.21 443 {
        TCP_CHECK { connect_port 9443 connect_timeout 3 }
    }
}
virtual_server fd18:18::100 53 {
    lb_algo sh
    lb_kind NAT
    protocol UDP
    ops
    real_server fd18:18:20::21 53 {
        weight 1
    }
}
`;

/** Words a mutation may put in: options of both languages, numbers at and past their limits,
 * addresses of both families and none, braces. */
const WORDS = [
  ...'-A -E -D -C -a -e -d -P -Q -t -u -f -s -p -M -r -g -m -i -b -w -x -y -j -z -o -6 -S -L -n'.split(' '),
  ...'--set --ops --sloppy --sorry-server --persistence-group --conn-timeout --sched-flags --tun-type'.split(' '),
  ...'--allow --deny --max-new-per-sec 198.18.100.0/24 198.18.100.1/24 fd18::/64, ,,'.split(' '),
  ...'rr wrr lc wlc sh mh sed nq fo ovf lblc dh enable disable FullNat Masq Route Tunnel Local'.split(' '),
  ...'0 1 -1 65535 65536 4294967296 999999999999 1e3 NaN 255.255.255.0 33 129 0x10'.split(' '),
  ...'198.18.0.100 198.18.0.100:80 198.18.0.100:0 [fd18:18::100]:80 [fd18:18::100] fd18::1 256.1.1.1 :80 []:'.split(
    ' ',
  ),
  ...'{ } } { virtual_server real_server TCP_CHECK HTTP_GET MISC_CHECK url path lb_kind lb_algo protocol NAT DR TUN FNAT'.split(
    ' ',
  ),
  ...'weight persistence_timeout persistence_granularity quorum hysteresis sorry_server include ops group persistent mask'.split(
    ' ',
  ),
  ...'-> TCP UDP FWM ( ) (config cap 1/2 100/ /5 DOWN inhibited quorum lost " ! #'.split(' '),
];

/** `text` with 1–3 random edits: a word dropped, repeated, swapped with the next or
 * replaced; a line dropped, repeated or cut short. Spacing is kept where the edit allows. */
function mutate(text: string, r: Rng): string {
  const lines = text.split('\n');
  const edits = 1 + r.below(3);
  for (let e = 0; e < edits; e++) {
    const li = r.below(lines.length);
    const line = lines[li]!;
    const words = line.split(/(\s+)/); // words at even places, their spacing at odd ones
    const wordAt = (): number => 2 * r.below((words.length + 1) >> 1 || 1);
    const kind = r.below(7);
    if (kind === 0) words.splice(wordAt(), 1);
    else if (kind === 1) {
      const w = wordAt();
      words.splice(w, 0, words[w] ?? '', ' ');
    } else if (kind === 2) {
      const w = wordAt();
      if (words[w + 2] !== undefined) [words[w], words[w + 2]] = [words[w + 2]!, words[w]!];
    } else if (kind === 3) words[wordAt()] = r.pick(WORDS);
    else if (kind === 4) lines.splice(li, 1);
    else if (kind === 5) lines.splice(li, 0, line);
    else lines[li] = line.slice(0, r.below(line.length + 1));
    if (kind < 4) lines[li] = words.join('');
  }
  return lines.join('\n');
}

const OPTIONS: ImportOptions = {
  laddrs: ['198.18.2.9', 'fd18:18:2::9'],
  fwmarks: new Map([[1, [{ protocol: 'tcp' as const, vip: '198.18.0.110', port: 80 }]]]),
};

/** Run one import: a config tunvs loads, or an ImportError naming a line; anything else is
 * thrown for the test to report with the input. */
function check(run: () => ImportResult): 'imported' | 'refused' {
  let r: ImportResult;
  try {
    r = run();
  } catch (e) {
    if (e instanceof ImportError) {
      expect(e.message).toMatch(/^line \d+|^[^:]+: line \d+/);
      return 'refused';
    }
    throw e;
  }
  const config = parseConfig(parse(importYaml(r, 'fuzz')));
  resolveServices(config.services, new IdRegistry());
  return 'imported';
}

/** TUNVS_FUZZ_ROUNDS and TUNVS_FUZZ_SEED run it longer or elsewhere (by hand; CI runs the
 * default). */
const ROUNDS = Number(process.env.TUNVS_FUZZ_ROUNDS ?? 1500);
const SEED = Number(process.env.TUNVS_FUZZ_SEED ?? 0x7475_6e76);

describe('the importers under mutated input (seeded)', () => {
  it.each([
    ['an ipvsadm script', SCRIPT, (t: string) => importIpvsadm(t, OPTIONS)],
    ['a listing', LISTING, (t: string) => importIpvsadm(t, OPTIONS)],
    [
      'a keepalived.conf',
      KEEPALIVED,
      (t: string) =>
        importKeepalived(
          {
            file: '/etc/keepalived/keepalived.conf',
            text: t,
            read: () => {
              throw new Error('ENOENT: no such file');
            },
            readdir: () => [],
          },
          OPTIONS,
        ),
    ],
  ] as const)(`%s: ${ROUNDS} mutations each import or are refused with a line`, (_what, seed, run) => {
    expect(check(() => run(seed))).toBe('imported');
    const r = new Rng(SEED);
    const outcome = { imported: 0, refused: 0 };
    for (let i = 0; i < ROUNDS; i++) {
      const text = mutate(seed, r);
      try {
        outcome[check(() => run(text))]++;
      } catch (e) {
        throw new Error(`seed ${SEED} round ${i}: ${(e as Error).stack ?? String(e)}\n--- input ---\n${text}`);
      }
    }
    // Both outcomes occur: the mutations reach past the first check.
    expect(outcome.imported).toBeGreaterThan(ROUNDS / 20);
    expect(outcome.refused).toBeGreaterThan(ROUNDS / 20);
  });
});
