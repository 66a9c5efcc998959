/** `tunvs import keepalived`: a keepalived.conf's virtual servers (DPVS's FULLNAT included) as
 * tunvs services, their checks as one healthCheck per service. */

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../src/config/config.js';
import { ImportError, parseFwmarkOption } from '../../src/config/import.js';
import { importKeepalived } from '../../src/config/import_keepalived.js';
import { distSrc } from '../../src/paths.js';

/** A pair's keepalived.conf: VRRP for the addresses, a FULLNAT service (DPVS's keepalived) with
 * HTTP checks, a DR service with TCP checks on a second port, an IPv6 NAT service. */
const CONF = `! Configuration File for keepalived
global_defs {
   router_id lb-a
   lvs_timeouts tcp 900 tcpfin 120 udp 300
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        198.18.0.100
    }
}

local_address_group laddr_g1 {
    198.18.2.1-2 dpdk0
    fd18:18:2::1 dpdk0
}

virtual_server 198.18.0.100 80 {
    delay_loop 3
    lb_algo wrr
    lb_kind FNAT
    protocol TCP
    persistence_timeout 600
    persistence_granularity 255.255.255.0
    laddr_group_name laddr_g1
    syn_proxy
    real_server 198.18.20.21 8080 {
        weight 2
        HTTP_GET {
            url {
              path /health
              status_code 200
            }
            connect_timeout 2
            retry 2
            delay_before_retry 1
        }
    }
    real_server 198.18.20.22 8080 {
        weight 1
        HTTP_GET {
            url { path /health
                  status_code 200 }
            connect_timeout 2
            nb_get_retry 2
        }
    }
}

virtual_server 198.18.0.101 443 {
    delay_loop 6
    lvs_sched mh
    lvs_method DR
    protocol TCP
    real_server 198.18.20.21 443 {
        TCP_CHECK { connect_port 9443
            connect_timeout 3 }
    }
    real_server 198.18.20.22 443 {
        TCP_CHECK {
            connect_port 9443
            connect_timeout 3
        }
    }
}

virtual_server fd18:18::100 80 {
    lb_algo rr
    lb_kind NAT
    protocol TCP
    sorry_server fd18:18:20::99 80
    real_server fd18:18:20::21 80 {
        weight 1
    }
}
`;

const source = (text: string, files: Record<string, string> = {}): Parameters<typeof importKeepalived>[0] => ({
  file: '/etc/keepalived/keepalived.conf',
  text,
  read: (f) => {
    const t = files[f];
    if (t === undefined) throw new Error('ENOENT: no such file');
    return t;
  },
  readdir: (d) =>
    Object.keys(files)
      .filter((f) => f.startsWith(`${d}/`))
      .map((f) => f.slice(d.length + 1)),
});

function refused(text: string, files?: Record<string, string>): ImportError {
  try {
    importKeepalived(source(text, files));
  } catch (e) {
    if (e instanceof ImportError) return e;
    throw e;
  }
  throw new Error('imported without an error');
}

describe('tunvs import keepalived', () => {
  it('virtual servers as services: mode, scheduler, persistence, local address group, SYN proxy, checks', () => {
    const r = importKeepalived(source(CONF));
    expect(r.config.timeouts).toEqual({ established: 900, finWait: 120, udp: 300 });
    expect(r.config.services).toEqual([
      {
        name: 'tcp-198.18.0.100-80',
        protocol: 'tcp',
        vip: '198.18.0.100',
        port: 80,
        mode: 'fullnat',
        scheduler: 'wrr',
        localAddresses: ['198.18.2.1', '198.18.2.2'], // the group's IPv4 ones (a range of two)
        persistence: { timeoutSec: 600, netmask: '255.255.255.0' },
        synProxy: 'on',
        // delay_loop 3, connect_timeout 2, retry 2 (nb_get_retry alike): down after 3 failures
        healthCheck: {
          type: 'http',
          interval: 3,
          timeout: 2,
          rise: 1,
          fall: 3,
          retryInterval: 1,
          path: '/health',
          expectStatus: 200,
        },
        realServers: [
          { address: '198.18.20.21', port: 8080, weight: 2 },
          { address: '198.18.20.22', port: 8080, weight: 1 },
        ],
      },
      {
        name: 'tcp-198.18.0.101-443',
        protocol: 'tcp',
        vip: '198.18.0.101',
        port: 443,
        mode: 'dr',
        scheduler: 'mh',
        healthCheck: { type: 'tcp', interval: 6, timeout: 3, rise: 1, fall: 2, retryInterval: 1, port: 9443 },
        realServers: [
          { address: '198.18.20.21', port: 443, weight: 1 },
          { address: '198.18.20.22', port: 443, weight: 1 },
        ],
      },
      {
        name: 'tcp-fd18-18--100-80',
        protocol: 'tcp',
        vip: 'fd18:18::100',
        port: 80,
        mode: 'nat',
        scheduler: 'rr',
        sorryServer: { address: 'fd18:18:20::99', port: 80 },
        realServers: [{ address: 'fd18:18:20::21', port: 80, weight: 1 }],
      },
    ]);
    const notes = r.notes.join('\n');
    expect(notes).toContain('left to keepalived (not LVS services): vrrp_instance');
    // LVS has the VIP on the node; tunvs must not (its packets would never reach it).
    expect(notes).toContain('198.18.0.100 is a VIP and an address of vrrp_instance VI_1: take it out');
    expect(parseConfig(r.config).services).toHaveLength(3);
  });

  it("a VRRP address that is a VIP is named, however written (prefix, IPv6 form, excluded); the routers' next hop is not", () => {
    const r = importKeepalived(
      source(`vrrp_instance up {
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {
        198.18.10.10/24 dev eth0
    }
    virtual_ipaddress_excluded {
        FD18:18:0::0100/64 dev eth0
    }
}
virtual_server fd18:18::100 80 {
    protocol TCP
    real_server fd18:18:20::21 80 { }
}
virtual_server 198.18.0.101 80 {
    protocol TCP
    real_server 198.18.20.21 80 { }
}
`),
    );
    const vrrp = r.notes.filter((n) => n.includes('vrrp_instance up'));
    expect(vrrp).toEqual([expect.stringMatching(/^fd18:18::100 is a VIP and an address of vrrp_instance up: /)]);
  });

  it('a virtual_server_group makes a service per member (ranges too); includes are read, * included', () => {
    const r = importKeepalived(
      source('include conf.d/*.conf\n', {
        '/etc/keepalived/conf.d/10-group.conf': `virtual_server_group web {
  198.18.0.110-111 80
  198.18.0.120 8080
}
`,
        '/etc/keepalived/conf.d/20-vs.conf': `virtual_server group web {
  lvs_sched sh
  lvs_method TUN type ipip
  protocol UDP
  real_server 198.18.20.21 {
  }
}
`,
      }),
      { laddrs: ['198.18.2.9'] },
    );
    expect(
      r.config.services.map(
        (s) => `${String(s.vip)}:${String(s.port)} ${String(s.mode)} → ${JSON.stringify(s.realServers)}`,
      ),
    ).toEqual([
      '198.18.0.110:80 tunnel → [{"address":"198.18.20.21","port":80,"weight":1}]',
      '198.18.0.111:80 tunnel → [{"address":"198.18.20.21","port":80,"weight":1}]',
      '198.18.0.120:8080 tunnel → [{"address":"198.18.20.21","port":8080,"weight":1}]',
    ]);
    expect(r.config.services[0]!.localAddresses).toEqual(['198.18.2.9']);
    expect(r.config.services.map((s) => s.protocol)).toEqual(['udp', 'udp', 'udp']);
    expect(r.notes.join('\n')).toMatch(/no timeouts set/);
  });

  it("lvs_method TUN type gre [csum] / gue port P [csum]: the service's tunnel, from the virtual server or each real server", () => {
    const vs = (method: string, rsMethod = '') =>
      `virtual_server 198.18.0.100 80 {\n  protocol TCP\n  lb_algo rr\n  ${method}\n` +
      `  real_server 198.18.20.21 80 {\n  ${rsMethod}\n  }\n  real_server 198.18.20.22 80 {\n  ${rsMethod}\n  }\n}\n`;
    const o = { laddrs: ['198.18.2.1'] };
    expect(importKeepalived(source(vs('lvs_method TUN type gre')), o).config.services[0]).toMatchObject({
      mode: 'tunnel',
      tunnel: { type: 'gre' },
    });
    expect(importKeepalived(source(vs('lvs_method TUN type gre csum')), o).config.services[0]!.tunnel).toEqual({
      type: 'gre',
      checksum: true,
    });
    expect(
      importKeepalived(source(vs('lvs_method DR', 'lvs_method TUN type gre nocsum')), o).config.services[0],
    ).toMatchObject({ mode: 'tunnel', tunnel: { type: 'gre' } });
    expect(importKeepalived(source(vs('lvs_method TUN type ipip')), o).config.services[0]).not.toHaveProperty('tunnel');
    expect(
      importKeepalived(source(vs('lvs_method TUN type gue port 6080 csum')), o).config.services[0]!.tunnel,
    ).toEqual({ type: 'gue', port: 6080, checksum: true });
    expect(refused(vs('lvs_method TUN type gue')).message).toMatch(/^line 4: a GUE tunnel needs its port/);
    expect(refused(vs('lvs_method TUN type gue port 6080 remcsum')).message).toMatch(
      /^line 4: remote checksum offload \(remcsum\) is not built/,
    );
    expect(refused(vs('lvs_method TUN type gre bogus')).message).toMatch(
      /^line 4: lvs_method TUN bogus: not type, port/,
    );
  });

  it('an empty virtual_server_group is refused with its line (it was a TypeError)', () => {
    const e = refused(
      'virtual_server_group web {\n}\nvirtual_server group web {\n  lb_kind DR\n  real_server 198.18.20.21 80 {\n  }\n}\n',
    );
    expect(e.message).toMatch(/^line 3: virtual_server_group web is empty/);
  });

  it('without protocol a virtual server is UDP, as keepalived makes it, and the note says so', () => {
    const r = importKeepalived(
      source('virtual_server 198.18.0.100 53 {\n  lb_algo rr\n  lb_kind DR\n  real_server 198.18.20.21 53 {\n  }\n}\n'),
    );
    expect(r.config.services[0]!.protocol).toBe('udp');
    expect(r.notes.join('\n')).toMatch(/line 1 .*: no protocol, so UDP, as keepalived makes it .*protocol TCP/);
  });

  it('ops: one-packet scheduling of a UDP service (onePacket); on TCP left out with a note, as IPVS ignores it', () => {
    const vs = (protocol: string) =>
      `virtual_server 198.18.0.100 53 {\n  protocol ${protocol}\n  lb_algo rr\n  lb_kind TUN\n  ops\n` +
      '  real_server 198.18.20.21 53 {\n  }\n}\n';
    const udp = importKeepalived(source(vs('UDP')), { laddrs: ['198.18.2.1'] });
    expect(udp.config.services[0]).toMatchObject({ protocol: 'udp', mode: 'tunnel', onePacket: true });
    const tcp = importKeepalived(source(vs('TCP')), { laddrs: ['198.18.2.1'] });
    expect(tcp.config.services[0]).not.toHaveProperty('onePacket');
    expect(tcp.notes.join('\n')).toMatch(/one-packet scheduling \(ops\) on tcp 198\.18\.0\.100:53, .* left out/);
  });

  it("thresholds become a server's maxConns / minConns; DPVS's establish_timeout the idleTimeout", () => {
    const r = importKeepalived(
      source(
        'virtual_server 198.18.0.100 80 {\n  protocol TCP\n  lb_algo wlc\n  lb_kind DR\n  establish_timeout 1800\n' +
          '  real_server 198.18.20.21 80 {\n    uthreshold 1000\n    lthreshold 600\n  }\n' +
          '  real_server 198.18.20.22 80 {\n    uthreshold 500\n  }\n' +
          '  real_server 198.18.20.23 80 {\n    lthreshold 10\n  }\n}\n',
      ),
    );
    expect(r.config.services[0]).toMatchObject({
      idleTimeout: 1800,
      realServers: [
        { address: '198.18.20.21', maxConns: 1000, minConns: 600 },
        { address: '198.18.20.22', maxConns: 500 },
        { address: '198.18.20.23', weight: 1 },
      ],
    });
    expect((r.config.services[0]!.realServers as object[])[2]).not.toHaveProperty('minConns');
    expect(r.notes.join('\n')).toMatch(
      /real_server 198\.18\.20\.23: a lower threshold \(10\) without an upper one does nothing/,
    );
  });

  const vs = (body: string, head = '198.18.0.100 80'): string =>
    `virtual_server ${head} {\n  lb_algo rr\n  lb_kind DR\n${body}\n}\n`;
  it("an all-ports virtual_server (port 0 or none): servers on the client's port, checked on their own", () => {
    for (const head of ['198.18.0.100 0', '198.18.0.100']) {
      const r = importKeepalived(
        source(
          vs(
            '  persistence_timeout 600\n' +
              '  real_server 198.18.20.21 80 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n' +
              '  real_server 198.18.20.22 80 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }',
            head,
          ),
        ),
      );
      expect(r.config.services[0]).toMatchObject({
        port: 0,
        mode: 'dr',
        persistence: { timeoutSec: 600 },
        realServers: [
          { address: '198.18.20.21', port: 0 },
          { address: '198.18.20.22', port: 0 },
        ],
        healthCheck: { type: 'tcp', port: 80 },
      });
      expect(r.notes.join('\n')).toMatch(/all-ports service keeps the port each client asked for/);
    }
  });

  it("virtual_server fwmark N: a service per VIP:port --fwmark names, one persistence group, checked on the servers' port", () => {
    const fwmarks = new Map([
      [
        3,
        [
          { protocol: 'tcp' as const, vip: '198.18.0.100', port: 80 },
          { protocol: 'tcp' as const, vip: '198.18.0.100', port: 443 },
        ],
      ],
    ]);
    const text = vs(
      '  persistence_timeout 600\n  ip_family inet\n' +
        '  real_server 198.18.20.21 8080 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }\n' +
        '  real_server 198.18.20.22 8080 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }',
      'fwmark 3',
    );
    const r = importKeepalived(source(text), { fwmarks });
    expect(r.config.services).toMatchObject([
      {
        vip: '198.18.0.100',
        port: 80,
        protocol: 'tcp',
        mode: 'dr',
        persistence: { timeoutSec: 600, group: 'fwmark-3' },
        healthCheck: { type: 'tcp', port: 8080 },
        realServers: [
          { address: '198.18.20.21', port: 80 },
          { address: '198.18.20.22', port: 80 },
        ],
      },
      { port: 443, healthCheck: { port: 8080 }, realServers: [{ port: 443 }, { port: 443 }] },
    ]);
    expect(r.notes.join('\n')).toMatch(/firewall-mark service 3 keeps the port each client asked for/);
    expect(() => importKeepalived(source(text))).toThrow(/line 1: firewall-mark service 3: .*--fwmark 3=/);
  });

  it("a firewall mark over both families: each member its family's servers and local addresses", () => {
    const fwmarks = new Map([
      [
        1,
        [
          { protocol: 'tcp' as const, vip: '198.18.0.100', port: 80 },
          { protocol: 'tcp' as const, vip: 'fd18:18::100', port: 80 },
        ],
      ],
    ]);
    const text =
      'local_address_group lg {\n  198.18.2.1\n  fd18:18:2::1\n}\n' +
      'virtual_server fwmark 1 {\n  lb_algo rr\n  lb_kind FNAT\n  laddr_group_name lg\n  persistence_timeout 600\n' +
      '  real_server 198.18.20.21 80 {\n  }\n  real_server fd18:18:20::21 80 {\n  }\n}\n';
    const r = importKeepalived(source(text), { fwmarks });
    expect(r.config.services).toMatchObject([
      { vip: '198.18.0.100', localAddresses: ['198.18.2.1'], realServers: [{ address: '198.18.20.21', port: 80 }] },
      { vip: 'fd18:18::100', localAddresses: ['fd18:18:2::1'], realServers: [{ address: 'fd18:18:20::21', port: 80 }] },
    ]);
  });

  it("a firewall mark's quorum_up / quorum_down: the command as written, for each member", () => {
    const fwmarks = new Map([parseFwmarkOption('1=tcp/198.18.0.100:80,tcp/198.18.0.101:443')]);
    const text =
      'virtual_server fwmark 1 {\n  lb_algo rr\n  lb_kind DR\n  protocol TCP\n' +
      '  quorum_up "/usr/local/bin/quorum.sh up 198.18.0.100"\n  quorum_down /usr/local/bin/quorum.sh\n' +
      '  real_server 198.18.20.21 80 {\n  }\n}\n';
    const r = importKeepalived(source(text), { fwmarks });
    expect(r.config.services.map((x) => [x.vip, x.quorumUp, x.quorumDown])).toEqual(
      ['198.18.0.100', '198.18.0.101'].map((vip) => [
        vip,
        ['/usr/local/bin/quorum.sh', 'up', '198.18.0.100'],
        ['/usr/local/bin/quorum.sh'],
      ]),
    );
  });

  it("the scheduler flags (sh-port, mh-fallback, flag-1, ...) are the service's hashPort / hashFallback", () => {
    const flagged = (body: string) => importKeepalived(source(vs(`${body}\n  real_server 198.18.20.21 80 {\n  }`)));
    expect(flagged('  lvs_sched sh\n  sh-port\n  sh-fallback').config.services[0]).toMatchObject({
      scheduler: 'sh',
      hashPort: true,
      hashFallback: true,
    });
    expect(flagged('  lvs_sched mh\n  flag-2').config.services[0]).toMatchObject({ scheduler: 'mh', hashPort: true });
    expect(flagged('  lvs_sched mh\n  flag-2').config.services[0]).not.toHaveProperty('hashFallback');
    expect(() => flagged('  lvs_sched rr\n  sh-port')).toThrow(/sh-port is for scheduler sh, not rr/);
  });

  it('lvs_sched sed, nq, twos, fo, ovf are the schedulers of those names', () => {
    for (const sched of ['sed', 'nq', 'twos', 'fo', 'ovf']) {
      const r = importKeepalived(source(vs(`  lvs_sched ${sched}\n  real_server 198.18.20.21 80 {\n  }`)));
      expect(r.config.services[0]!.scheduler).toBe(sched);
    }
  });
  it("DPVS's deny / allow address groups become the service's acl (a range as the fewest prefixes)", () => {
    const groups =
      'deny_address_group deny_g {\n  198.18.100.66\n  198.18.100.0-200\n  fd18:64::9\n}\n' +
      'allow_address_group allow_g {\n  198.18.100.0/24\n}\n' +
      'allow_address_group empty_g {\n}\n';
    const r = importKeepalived(
      source(
        groups +
          vs('  daddr_group_name deny_g\n  waddr_group_name allow_g\n  real_server 198.18.20.21 80 {\n  }') +
          vs('  waddr_group_name empty_g\n  real_server 198.18.20.21 80 {\n  }', '198.18.0.101 80'),
      ),
    );
    expect(r.config.services[0]!.acl).toEqual({
      allow: ['198.18.100.0/24'],
      deny: [
        '198.18.100.66/32',
        '198.18.100.0/25',
        '198.18.100.128/26',
        '198.18.100.192/29',
        '198.18.100.200/32',
        'fd18:64::9/128',
      ],
    });
    expect(r.config.services[1]).not.toHaveProperty('acl'); // an empty allow group lets all in, as in DPVS
    const ipset = refused(`deny_address_group d {\n  ipset:bad_guys\n}\n`);
    expect(ipset.line).toBe(2);
    expect(ipset.message).toMatch(/ipset:bad_guys: tunvs's acl lists prefixes/);
    const undef = refused(vs('  daddr_group_name nope\n  real_server 198.18.20.21 80 {\n  }'));
    expect(undef.line).toBe(4);
    expect(undef.message).toMatch(/deny_address_group nope is not defined/);
  });

  it("SSL_GET is an https check; virtualhost (the service's, or a url's own) is its Host", () => {
    const ssl = (url: string) =>
      `    SSL_GET {\n      url {\n        path /ping\n        status_code 204\n${url}      }\n    }\n`;
    const r = importKeepalived(
      source(
        vs(
          `  virtualhost www.example\n  real_server 198.18.20.21 443 {\n${ssl('')}  }\n` +
            `  real_server 198.18.20.22 443 {\n${ssl('        virtualhost www.example\n')}  }`,
          '198.18.0.100 443',
        ),
      ),
    );
    expect(r.config.services[0]!.healthCheck).toMatchObject({
      type: 'https',
      path: '/ping',
      expectStatus: 204,
      host: 'www.example',
    });
  });

  it.each([
    [vs('  real_server 198.18.20.21 80 {\n  }', 'fwmark 1'), 1, /firewall-mark service/],
    [vs('  real_server 198.18.20.21 80 {\n  }', '198.18.0.100'), 1, /all-ports service .* must be persistent/],
    [
      vs(
        '  persistence_timeout 60\n  real_server 198.18.20.21 80 {\n    TCP_CHECK {\n    }\n  }\n  real_server 198.18.20.22 443 {\n    TCP_CHECK {\n    }\n  }',
        '198.18.0.100 0',
      ),
      1,
      /checked on different ports: tunvs checks one port for all servers/,
    ],
    [
      vs('  persistence_timeout 60\n  real_server 198.18.20.21 {\n    TCP_CHECK {\n    }\n  }', '198.18.0.100 0'),
      1,
      /all-ports service whose real servers have no port: give their checkers a connect_port/,
    ],
    [
      vs('  lvs_sched dh\n  real_server 198.18.20.21 80 {\n  }'),
      4,
      /scheduler dh is not in tunvs .* nearest is sh or mh .*one destination, its VIP/,
    ],
    [vs('  real_server 198.18.20.21 80 {\n    MISC_CHECK {\n    }\n  }'), 5, /MISC_CHECK without misc_path/],
    [
      vs('  real_server 198.18.20.21 80 {\n    PING_CHECK {\n    }\n  }'),
      5,
      /PING_CHECK: tunvs runs TCP_CHECK, .*MISC_CHECK/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    MISC_CHECK {\n      misc_path "check.sh {address}"\n    }\n  }'),
      6,
      /misc_path check\.sh \{address\}: name the program by its absolute path/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    UDP_CHECK {\n      require_reply 0a XX\n    }\n  }'),
      6,
      /require_reply 0a XX: tunvs takes bytes in hex/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    UDP_CHECK {\n      min_reply_length 4\n    }\n  }'),
      6,
      /min_reply_length: tunvs checks that the reply begins/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    DNS_CHECK {\n      type PTR\n    }\n  }'),
      6,
      /type PTR: tunvs asks A, NS/,
    ],
    [
      vs(
        '  real_server 198.18.20.21 80 {\n    HTTP_GET {\n      url {\n        regex_options caseless\n      }\n    }\n  }',
      ),
      7,
      /regex_options: tunvs matches the regex/,
    ],
    [
      vs(
        '  real_server 198.18.20.21 80 {\n    SSL_GET {\n      virtualhost a.example\n    }\n  }\n' +
          '  real_server 198.18.20.22 80 {\n    SSL_GET {\n    }\n  }',
      ),
      9,
      /differs from the first server's in host/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    TCP_CHECK {\n    }\n  }\n  real_server 198.18.20.22 80 {\n  }'),
      8,
      /no checker and others have/,
    ],
    [
      vs(
        '  real_server 198.18.20.21 80 {\n    TCP_CHECK {\n      connect_timeout 1\n    }\n  }\n' +
          '  real_server 198.18.20.22 80 {\n    TCP_CHECK {\n      connect_timeout 2\n    }\n  }',
      ),
      9,
      /differs from the first server's in timeout/,
    ],
    [
      vs('  real_server 198.18.20.21 80 {\n    HTTP_GET {\n      url {\n        digest 9b3a\n      }\n    }\n  }'),
      7,
      /digest 9b3a: not an MD5 in hex/,
    ],
    [vs('  real_server 198.18.20.21 80 {\n    lb_kind NAT\n  }\n  real_server 198.18.20.22 80 {\n  }'), 7, /mixes/],
    [vs('  frobnicate yes\n  real_server 198.18.20.21 80 {\n  }'), 4, /unknown keyword frobnicate/],
    [
      vs('  real_server 198.18.20.21 80 {\n  }\n  real_server 198.18.20.21 80 {\n  }'),
      6,
      /is in this virtual_server twice/,
    ],
    [vs('  real_server 198.18.20.21 80 {\n'), 1, /the block of virtual_server is not closed/],
    ['include missing.conf\n', 1, /include \/etc\/keepalived\/missing\.conf: ENOENT/],
  ] as const)('refused: %s → line %i', (text, line, message) => {
    const e = refused(text);
    expect(e.message).toMatch(message);
    expect(e.line).toBe(line);
  });

  it('an error in an included file names it and the line there', () => {
    const e = refused('include other.conf\n', {
      '/etc/keepalived/other.conf': '\n\nvirtual_server 198.18.0.100 80 {\n  lvs_sched dh\n}\n',
    });
    expect(e.message).toMatch(/^\/etc\/keepalived\/other\.conf: line 4: scheduler dh/);
  });

  it("sorry_server, quorum and hysteresis become the service's sorryServer, quorum and hysteresis", () => {
    const r = importKeepalived(
      source(
        vs(
          '  sorry_server 198.18.20.99 8080\n  sorry_server_inhibit\n  sorry_server_lvs_method DR\n  quorum 2\n  hysteresis 1\n' +
            '  real_server 198.18.20.21 80 {\n    weight 2\n  }\n  real_server 198.18.20.22 80 {\n  }',
        ),
      ),
    );
    expect(r.config.services[0]).toMatchObject({
      sorryServer: { address: '198.18.20.99', port: 8080 },
      quorum: 2,
      hysteresis: 1,
    });
    expect(parseConfig(r.config).services[0]!.sorryServer).toEqual({ address: '198.18.20.99', port: 8080 });
    const method = refused(
      vs('  sorry_server 198.18.20.99 8080\n  sorry_server_lvs_method NAT\n  real_server 198.18.20.21 80 {\n  }'),
    );
    expect(method.message).toMatch(
      /sorry_server_lvs_method nat: tunvs forwards to the sorry server as to the real servers/,
    );
    const noQuorumUse = importKeepalived(source(vs('  quorum 3\n  real_server 198.18.20.21 80 {\n  }')));
    expect(noQuorumUse.config.services[0]).not.toHaveProperty('quorum');
    expect(noQuorumUse.notes.join('\n')).toMatch(/quorum and hysteresis skipped: without a sorry_server/);
  });

  it('quorum_up and quorum_down become quorumUp and quorumDown (the VIP in them as {address}); quorum goes with them', () => {
    const r = importKeepalived(
      source(
        vs(
          '  quorum 2\n  quorum_up "/usr/local/sbin/announce.sh 198.18.0.100 up"\n' +
            '  quorum_down "/usr/local/sbin/announce.sh 198.18.0.100 down" nobody\n' +
            '  real_server 198.18.20.21 80 {\n  }\n  real_server 198.18.20.22 80 {\n  }',
        ),
      ),
    );
    expect(r.config.services[0]).toMatchObject({
      quorum: 2,
      quorumUp: ['/usr/local/sbin/announce.sh', '{address}', 'up'],
      quorumDown: ['/usr/local/sbin/announce.sh', '{address}', 'down'],
    });
    expect(r.notes.join('\n')).toMatch(/quorum_down nobody: tunvs runs it as the check's user/);
    expect(parseConfig(r.config).services[0]!.quorumDown).toEqual(['/usr/local/sbin/announce.sh', '{address}', 'down']);
    expect(refused(vs('  quorum_up "announce.sh up"\n  real_server 198.18.20.21 80 {\n  }')).message).toMatch(
      /quorum_up announce\.sh up: name the program by its absolute path/,
    );
  });

  /** keepalived's other checkers, each real server checked alike (a MISC_CHECK naming its server). */
  const OTHER_CHECKERS = (dir: string, misc = true): string => {
    const server = (addr: string, checker: string): string => `    real_server ${addr} 53 {\n${checker}    }\n`;
    const service = (vip: string, proto: string, checker: (addr: string) => string): string =>
      `virtual_server ${vip} 53 {\n    delay_loop 5\n    lb_algo rr\n    lb_kind DR\n    protocol ${proto}\n` +
      server('198.18.20.21', checker('198.18.20.21')) +
      server('198.18.20.22', checker('198.18.20.22')) +
      '}\n';
    return (
      service(
        '198.18.0.100',
        'UDP',
        () => '        DNS_CHECK {\n            type A\n            name www.example.\n        }\n',
      ) +
      service(
        '198.18.0.101',
        'UDP',
        () =>
          '        UDP_CHECK {\n            payload 00 01 0a\n            require_reply 0A0b\n            connect_timeout 2\n        }\n',
      ) +
      service(
        '198.18.0.102',
        'TCP',
        (a) =>
          `        notify_down "/etc/keepalived/down.sh ${a} smtp"\n` +
          '        SMTP_CHECK {\n            helo_name lb.example\n        }\n',
      ) +
      (misc
        ? service(
            '198.18.0.103',
            'TCP',
            (a) =>
              `        MISC_CHECK {\n            misc_path "${dir}/check.sh ${a} 198.18.20.210 --port 53"\n` +
              '            misc_timeout 3\n            misc_dynamic\n            user nobody\n        }\n',
          )
        : '') +
      service(
        '198.18.0.104',
        'TCP',
        () =>
          '        HTTP_GET {\n            url {\n                path /status\n                digest 9B3AA6B26F3C2A3B2A1C0D1E2F3A4B5C\n' +
          '            }\n        }\n',
      ) +
      service(
        '198.18.0.105',
        'TCP',
        () =>
          '        HTTP_GET {\n            url {\n                path /status\n                status_code 200\n' +
          '                regex "^(DOWN|MAINT)"\n                regex_no_match\n            }\n        }\n',
      )
    );
  };

  it('MISC_CHECK, UDP_CHECK, DNS_CHECK, SMTP_CHECK, digest and regex become tunvs checks', () => {
    const r = importKeepalived(source(OTHER_CHECKERS('/etc/keepalived')));
    const checks = r.config.services.map((x) => x.healthCheck);
    const timing = { interval: 5, timeout: 5, rise: 1, fall: 2, retryInterval: 1 };
    expect(checks).toEqual([
      { type: 'dns', ...timing, query: 'www.example.', queryType: 'A' },
      { type: 'udp', ...timing, timeout: 2, payload: '00010a', expectReply: '0a0b' },
      { type: 'smtp', ...timing, helo: 'lb.example', notifyDown: ['/etc/keepalived/down.sh', '{address}', 'smtp'] },
      {
        type: 'exec',
        ...timing,
        timeout: 3,
        command: ['/etc/keepalived/check.sh', '{address}', '198.18.20.210', '--port', '53'],
        user: 'nobody',
        dynamicWeight: true,
      },
      {
        type: 'http',
        ...timing,
        path: '/status',
        expectStatus: 200,
        expectBodyMd5: '9b3aa6b26f3c2a3b2a1c0d1e2f3a4b5c',
      },
      { type: 'http', ...timing, path: '/status', expectStatus: 200, expectBodyNoMatch: '^(DOWN|MAINT)' },
    ]);
    // What it printed is a config tunvs takes.
    expect(parseConfig(r.config).services.map((x) => x.healthCheck?.type)).toEqual([
      'dns',
      'udp',
      'smtp',
      'exec',
      'http',
      'http',
    ]);
  });

  const keepalived = spawnSync('keepalived', ['--version']).status === 0;
  // Less the MISC_CHECK: keepalived 2.2's -t hangs once it has vetted a check script (its
  // checker child ends itself with SIGTERM and the parent waits on).
  it.skipIf(!keepalived)('the other checkers are a config keepalived itself accepts (keepalived -t)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-import-ka-'));
    try {
      const conf = OTHER_CHECKERS(dir, false);
      writeFileSync(join(dir, 'keepalived.conf'), conf);
      const t = spawnSync('keepalived', ['-t', '-f', join(dir, 'keepalived.conf')], {
        encoding: 'utf8',
        timeout: 20_000,
      });
      expect(t.status, t.stderr).toBe(0);
      expect(importKeepalived(source(conf)).config.services).toHaveLength(5);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.skipIf(!keepalived)(
    'the example, less DPVS keywords, is a config keepalived itself accepts (keepalived -t)',
    () => {
      const upstream = CONF.replace('lb_kind FNAT', 'lb_kind NAT')
        .replace('nb_get_retry', 'retry') // deprecated: a warning fails -t
        .replace(/local_address_group[^}]*\}\n/, '')
        .replace(/ *(laddr_group_name .*|syn_proxy)\n/g, '');
      const dir = mkdtempSync(join(tmpdir(), 'tunvs-import-ka-'));
      try {
        writeFileSync(join(dir, 'keepalived.conf'), upstream);
        const t = spawnSync('keepalived', ['-t', '-f', join(dir, 'keepalived.conf')], { encoding: 'utf8' });
        expect(t.status, t.stderr).toBe(0);
        const r = importKeepalived(source(upstream));
        expect(r.config.services.map((s) => `${String(s.mode)} ${String(s.protocol)}`)).toEqual([
          'nat tcp',
          'dr tcp',
          'nat tcp',
        ]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('the command: reads the file and its includes, prints YAML tunvs runs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tunvs-import-ka-'));
    try {
      mkdirSync(join(dir, 'conf.d'));
      writeFileSync(join(dir, 'keepalived.conf'), 'include conf.d/*.conf\n');
      writeFileSync(join(dir, 'conf.d', 'web.conf'), CONF);
      const r = spawnSync(
        process.execPath,
        [join(distSrc(), 'cli', 'main.js'), 'import', 'keepalived', join(dir, 'keepalived.conf')],
        { encoding: 'utf8' },
      );
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toMatch(
        /^# tunvs services from the virtual servers of .*keepalived\.conf \(tunvs import keepalived\)/,
      );
      expect(r.stdout).toContain(
        'healthCheck: { type: http, interval: 3, timeout: 2, rise: 1, fall: 3, retryInterval: 1, path: /health, expectStatus: 200 }',
      );
      expect(parseConfig(parse(r.stdout)).services).toHaveLength(3);
      expect(r.stderr).toContain('tunvs: import: left to keepalived');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
