/**
 * The lab's fixed plan: namespaces, links and addresses. Addresses come from 198.18.0.0/15
 * (RFC 2544 benchmarking) and the ULA prefix fd18:18::/48, so lab traffic can never reach
 * a real network.
 *
 *      client ─┐                       ┌─ lb-a ─┐            ┌─ rs1, rs2, rs3
 *              ├ [br-client] router [br-up]      ├ [br-rs] ──┤
 *              ┘ 198.18.100/24      198.18.10/24 └─ lb-b ─┘   └─ redis   198.18.20/24
 *
 *   VIPs 198.18.0.100, fd18:18::100 (port 80)     routed by the router via 198.18.10.10
 *   LIPs 198.18.2.1-2, fd18:18:2::1-2             routed by the real servers via 198.18.20.10
 *
 * The two next hops (and fd18:18:10::10, fd18:18:20::10) float: keepalived (VRRP) puts them
 * on the master LB of the pair; a lab without the pair gives them to lb-a for good.
 *
 * The cluster (`lab up --cluster N`, docs/cluster.md) has LB nodes lb-a..lb-d (N started, the
 * rest ready to join), each with local addresses of its own (198.18.2.<k>1-<k>2, k = 1..4),
 * FRR on every node and on the router: the router learns the VIPs from every ready node by
 * BGP and spreads flows over them (ECMP, L4 hash); it also stands on br-rs (198.18.20.1) as
 * the real servers' way to the local addresses, which it learns the same way. Redis runs as
 * a primary (redis) and a replica (redis2) under three Sentinels (redis, redis2, router).
 */

export interface LabNode {
  /** Role name: also the namespace suffix. */
  name: string;
  /** Interfaces: bridge name in the switch namespace, v4 and v6 address with prefix length. */
  links: { bridge: string; v4: string; v6: string }[];
  /** Routes: [prefix, via] for v4 and v6. */
  routes: [string, string][];
  forwarding?: boolean;
}

export const LAB = {
  bridges: ['brc', 'bru', 'brr'],
  vip4: '198.18.0.100',
  vip6: 'fd18:18::100',
  vport: 80,
  laddrs4: ['198.18.2.1', '198.18.2.2'],
  laddrs6: ['fd18:18:2::1', 'fd18:18:2::2'],
  client4: '198.18.100.10',
  client6: 'fd18:18:100::10',
  rsPort: 8080,
  /** VIP ports of the NAT and TUNNEL services (lab/modes.ts; TUNNEL cannot change the port). */
  natPort: 8081,
  tunnelPort: 8080,
  /** The DR services' VIPs (port 8080: DR cannot change the port either, and tunnel-v4/v6
   * have 8080 on the main VIPs). */
  drVip4: '198.18.0.101',
  drVip6: 'fd18:18::101',
  echoPort: 9000,
  /** The UDP port the real servers' decapsulator takes GUE on (a service of tunnel.type gue). */
  guePort: 6080,
  /** What the echo check (echo_check.ts) gives its last few open connections past its
   * timeout: Linux's TCP_RTO_MAX (120 s; kernels before 6.15 keep it) and some slack. */
  echoStragglerSec: 130,
  /** The lab hosts' longest TCP retransmission interval (net.ipv4.tcp_rto_max_ms, lab.ts). */
  tcpRtoMaxMs: 10_000,
  iperfPort: 5201,
  realServers: [
    { name: 'rs1', v4: '198.18.20.21', v6: 'fd18:18:20::21' },
    { name: 'rs2', v4: '198.18.20.22', v6: 'fd18:18:20::22' },
    { name: 'rs3', v4: '198.18.20.23', v6: 'fd18:18:20::23' },
  ],
  lbA: { up4: '198.18.10.11', up6: 'fd18:18:10::11', rs4: '198.18.20.11', rs6: 'fd18:18:20::11' },
  lbB: { up4: '198.18.10.12', up6: 'fd18:18:10::12', rs4: '198.18.20.12', rs6: 'fd18:18:20::12' },
  /** The floating next hops (VRRP addresses of the pair). */
  float: { up4: '198.18.10.10', up6: 'fd18:18:10::10', rs4: '198.18.20.10', rs6: 'fd18:18:20::10' },
  redis4: '198.18.20.30',
  redisPort: 6379,
} as const;

/** The cluster's part of the plan. */
export const CLUSTER = {
  nodes: ['lb-a', 'lb-b', 'lb-c', 'lb-d'] as const,
  /** The router on the real servers' side: their way to every node's local addresses. */
  routerRs4: '198.18.20.1',
  routerRs6: 'fd18:18:20::1',
  routerUp4: '198.18.10.1',
  routerUp6: 'fd18:18:10::1',
  redis2: '198.18.20.31',
  sentinelPort: 26379,
  sentinelName: 'tunvs',
  /** BGP: the routers' AS and the LB nodes' (one AS for all nodes: equal paths for ECMP). */
  asRouter: 65000,
  asNodes: 65010,
} as const;

export type ClusterNode = (typeof CLUSTER.nodes)[number];

/** Addresses of cluster node lb-<k> (k = 1 for lb-a): its links and its local addresses. */
export function clusterNode(node: string): {
  up4: string;
  up6: string;
  rs4: string;
  rs6: string;
  laddrs4: string[];
  laddrs6: string[];
} {
  const k = labNodeId(node);
  return {
    up4: `198.18.10.${10 + k}`,
    up6: `fd18:18:10::${10 + k}`,
    rs4: `198.18.20.${10 + k}`,
    rs6: `fd18:18:20::${10 + k}`,
    laddrs4: [`198.18.2.${k}1`, `198.18.2.${k}2`],
    laddrs6: [`fd18:18:2::${k}1`, `fd18:18:2::${k}2`],
  };
}

/** The Sentinels of the cluster lab, host:port. */
export function labSentinels(): string[] {
  return [LAB.redis4, CLUSTER.redis2, CLUSTER.routerRs4].map((h) => `${h}:${CLUSTER.sentinelPort}`);
}

export function labNodes(cluster = false): LabNode[] {
  const rsRoutes: [string, string][] = cluster
    ? [
        ['198.18.2.0/24', CLUSTER.routerRs4],
        ['fd18:18:2::/64', CLUSTER.routerRs6],
      ]
    : [
        ['198.18.2.0/24', LAB.float.rs4],
        ['fd18:18:2::/64', LAB.float.rs6],
      ];
  const lb = (name: string, a: { up4: string; up6: string; rs4: string; rs6: string }): LabNode => ({
    name,
    links: [
      { bridge: 'bru', v4: `${a.up4}/24`, v6: `${a.up6}/64` },
      { bridge: 'brr', v4: `${a.rs4}/24`, v6: `${a.rs6}/64` },
    ],
    routes: [
      ['default', CLUSTER.routerUp4],
      ['default', CLUSTER.routerUp6],
    ],
    forwarding: true,
  });
  const lbs = cluster ? CLUSTER.nodes.map((n) => lb(n, clusterNode(n))) : [lb('lb-a', LAB.lbA), lb('lb-b', LAB.lbB)];
  return [
    {
      name: 'client',
      links: [{ bridge: 'brc', v4: `${LAB.client4}/24`, v6: `${LAB.client6}/64` }],
      routes: [
        ['default', '198.18.100.1'],
        ['default', 'fd18:18:100::1'],
      ],
    },
    {
      name: 'router',
      links: [
        { bridge: 'brc', v4: '198.18.100.1/24', v6: 'fd18:18:100::1/64' },
        { bridge: 'bru', v4: `${CLUSTER.routerUp4}/24`, v6: `${CLUSTER.routerUp6}/64` },
        ...(cluster ? [{ bridge: 'brr', v4: `${CLUSTER.routerRs4}/24`, v6: `${CLUSTER.routerRs6}/64` }] : []),
      ],
      // The cluster's router learns the VIPs and local addresses by BGP instead.
      routes: cluster
        ? []
        : [
            ['198.18.0.0/24', LAB.float.up4],
            ['fd18:18::/64', LAB.float.up6],
          ],
      forwarding: true,
    },
    ...lbs,
    {
      name: 'redis',
      links: [{ bridge: 'brr', v4: `${LAB.redis4}/24`, v6: 'fd18:18:20::30/64' }],
      routes: [],
    },
    ...(cluster
      ? [
          {
            name: 'redis2',
            links: [{ bridge: 'brr', v4: `${CLUSTER.redis2}/24`, v6: 'fd18:18:20::31/64' }],
            routes: [],
          },
        ]
      : []),
    ...LAB.realServers.map((rs) => ({
      name: rs.name,
      links: [{ bridge: 'brr', v4: `${rs.v4}/24`, v6: `${rs.v6}/64` }],
      routes: rsRoutes,
    })),
  ];
}

/** The token of the lab LBs' TCP admin listener (127.0.0.1:9201 inside each LB namespace). */
export const LAB_ADMIN_TOKEN = 'tunvs-lab-admin-token';
/** The ISN key both lab LBs share (and keep across restarts): lab-only, like the token. A
 * production pair gets a secret of its own (docs/config.md, isn). */
export const LAB_ISN_SECRET = 'tunvs-lab-isn-secret-not-for-production';

/** HA part of an LB's config in the lab: a node of the pair, or of the cluster. */
export type LabHa =
  | {
      mode: 'pair';
      cluster: string;
      /** The node's HA id (lb-a 1, lb-b 2: labNodeId) and name. */
      node: string;
      role: 'master' | 'backup';
      /** keepalived's notify FIFO on this node. */
      fifo: string;
    }
  | { mode: 'cluster'; cluster: string; node: string };

/** HA node id of a lab LB: lb-a 1, lb-b 2, lb-c 3, ... */
export function labNodeId(node: string): number {
  const m = /^lb-([a-z])$/.exec(node);
  if (!m) throw new Error(`not a lab LB: ${node}`);
  return m[1]!.charCodeAt(0) - 'a'.charCodeAt(0) + 1;
}

/** The NAT, TUNNEL and DR services' YAML lines (lab/modes.ts; one flow-style entry each, so
 * tests can drop a line). A cluster node's (`cluster`) have no NAT — the servers' replies
 * would have to come back to the node that holds the session, which ECMP does not give — and
 * schedule TUNNEL and DR with mh and sloppy TCP, so a flow that ECMP moves to another node
 * goes on there, to the same server, even before its session is synced (docs/cluster.md). */
export function modeServices(laddr4: string, laddr6: string, v6: boolean, cluster = false): string {
  const servers = (v: 'v4' | 'v6'): string =>
    LAB.realServers.map((r) => `{ address: "${r[v]}", port: ${LAB.rsPort} }`).join(', ');
  const sched = cluster ? 'scheduler: mh, sloppy: true' : 'scheduler: rr';
  const line = (name: string, vip: string, port: number, mode: string, extra: string, v: 'v4' | 'v6'): string =>
    `  - { name: ${name}, vip: "${vip}", port: ${port}, mode: ${mode}, ${sched}, ${extra}realServers: [${servers(v)}] }\n`;
  const family = (v: 'v4' | 'v6'): string => {
    const [vip, drVip, laddr] = v === 'v4' ? [LAB.vip4, LAB.drVip4, laddr4] : [LAB.vip6, LAB.drVip6, laddr6];
    return (
      (cluster ? '' : line(`nat-${v}`, vip, LAB.natPort, 'nat', '', v)) +
      line(`tunnel-${v}`, vip, LAB.tunnelPort, 'tunnel', `localAddresses: ["${laddr}"], `, v) +
      line(`dr-${v}`, drVip, LAB.tunnelPort, 'dr', '', v)
    );
  };
  return family('v4') + (v6 ? family('v6') : '');
}

/** How an LB of the lab runs (labConfig). */
export interface LabLbOptions {
  workers: number;
  steering?: boolean;
  offload?: boolean;
  ha?: LabHa;
  /** The IPv6 services (default true). */
  v6?: boolean;
  /** With the NAT, TUNNEL and DR services (default false). */
  modes?: boolean;
  /** Packet I/O (default tun); xdp attaches to `interfaces` (default the node's eth0, eth1). */
  io?: 'tun' | 'xdp';
  interfaces?: readonly string[];
}

/** The interfaces of a lab LB node: toward the router, toward the real servers. */
export const LAB_LB_INTERFACES = ['eth0', 'eth1'] as const;

/** The tunvs config an LB runs in the lab. */
export function labConfig(adminSocket: string, o: LabLbOptions): string {
  const { workers, steering = true, offload = true, ha, v6 = true, modes = false, io = 'tun' } = o;
  const interfaces = o.interfaces ?? LAB_LB_INTERFACES;
  const haPart =
    ha?.mode === 'pair'
      ? `ha:
  nodeId: ${labNodeId(ha.node)}
  name: ${ha.node}
  redis: "redis://${LAB.redis4}:${LAB.redisPort}"
  cluster: "${ha.cluster}"
  initialRole: ${ha.role}
  notifyFifo: "${ha.fifo}"
`
      : ha?.mode === 'cluster'
        ? `ha:
  mode: cluster
  nodeId: ${labNodeId(ha.node)}
  name: ${ha.node}
  sentinel: { name: ${CLUSTER.sentinelName}, addresses: [${labSentinels()
    .map((a) => `"${a}"`)
    .join(', ')}] }
  cluster: "${ha.cluster}"
  drainMs: 1000
  routeHealth: any
`
        : '';
  // A cluster node has local addresses of its own; the pair's nodes share theirs.
  const own = ha?.mode === 'cluster' ? clusterNode(ha.node) : { laddrs4: LAB.laddrs4, laddrs6: LAB.laddrs6 };
  const rs = (v: 'v4' | 'v6'): string =>
    LAB.realServers.map((r) => `      - { address: "${r[v]}", port: ${LAB.rsPort}, weight: 1 }`).join('\n');
  const ioPart = io === 'xdp' ? `io: xdp\nxdp: { interfaces: [${interfaces.join(', ')}] }\n` : '';
  return `# tunvs lab LB (generated by tunvs lab up)
${ioPart}tun: { name: tunvs0, mtu: 1500, steering: ${steering}, offload: ${offload} }
workers: ${workers}
sessions: 262144
isn: { secret: "${LAB_ISN_SECRET}" }
admin: { socket: "${adminSocket}", tcp: { listen: "127.0.0.1:9201", token: "${LAB_ADMIN_TOKEN}" } }
metrics: { listen: "127.0.0.1:9100" }
${haPart}services:
  - name: web-v4
    vip: ${LAB.vip4}
    port: ${LAB.vport}
    scheduler: rr
    localAddresses: [${own.laddrs4.join(', ')}]
    realServers:
${rs('v4')}
  - name: echo-v4
    vip: ${LAB.vip4}
    port: ${LAB.echoPort}
    scheduler: rr
    localAddresses: [${own.laddrs4.join(', ')}]
    realServers:
${rs('v4').replace(/port: 8080/g, `port: ${LAB.echoPort}`)}
  - name: iperf3-v4
    vip: ${LAB.vip4}
    port: ${LAB.iperfPort}
    scheduler: rr
    localAddresses: [${own.laddrs4.join(', ')}]
    realServers: [{ address: "${LAB.realServers[0].v4}", port: ${LAB.iperfPort}, weight: 1 }]
${
  v6
    ? `  - name: web-v6
    vip: "${LAB.vip6}"
    port: ${LAB.vport}
    scheduler: rr
    localAddresses: [${own.laddrs6.map((a) => `"${a}"`).join(', ')}]
    realServers:
${rs('v6')}
`
    : ''
}${modes ? `  # the other forwarding modes (docs/modes.md)\n${modeServices(own.laddrs4[0], own.laddrs6[0], v6, ha?.mode === 'cluster')}` : ''}`;
}

/**
 * keepalived for one LB of the lab's pair: two VRRP instances (upstream and real-server
 * side) in one sync group, so both next hops move together; IPv6 next hops ride along as
 * excluded addresses (VRRP adverts carry one family). tunvs is tracked twice: its TUN device
 * (the kernel deletes it the moment tunvs dies, and keepalived hears it over netlink: no
 * polling delay) and a script asking its admin socket (tunvs-ha-check: fails when tunvs is
 * hung or not ready: two checks in a row, so one slow answer does not move the next hops; and
 * failed until its first pass, so a keepalived starting beside a tunvs that is not ready
 * cannot take them). Either way the node goes to FAULT and sends a priority-0 advert, and
 * the backup takes over after its skew time — priorities 250/249 keep that at 27 ms.
 * keepalived's notify FIFO tells tunvs its role (tunvs reads it: ha.notifyFifo).
 */
export function keepalivedConfig(o: {
  node: 'lb-a' | 'lb-b';
  priority: number;
  /** The track script's executable (haCheckBinary()). */
  check: string;
  adminSocket: string;
  routerId: string;
  fifo: string;
  /** Interfaces of the upstream and the real-server side (default eth0, eth1). */
  up?: string;
  servers?: string;
  /** Also float the IPv6 next hops (default true). */
  v6?: boolean;
}): string {
  const instance = (name: string, dev: string, vrid: number, v4: string, v6: string): string => `
vrrp_instance ${name} {
    state BACKUP
    interface ${dev}
    virtual_router_id ${vrid}
    priority ${o.priority}
    advert_int 1
    virtual_ipaddress {
        ${v4}/24 dev ${dev}
    }${
      o.v6 === false
        ? ''
        : `
    virtual_ipaddress_excluded {
        ${v6}/64 dev ${dev}
    }`
    }
    track_interface {
        tunvs0
    }
    track_script {
        chk_tunvs
    }
}`;
  return `# keepalived for ${o.node} (generated by tunvs lab up)
global_defs {
    router_id ${o.routerId}
    script_user root
    vrrp_notify_fifo ${o.fifo}
    vrrp_garp_master_repeat 3
    vrrp_garp_master_refresh 10
}

vrrp_script chk_tunvs {
    script "${o.check} --admin ${o.adminSocket}"
    interval 1
    timeout 2
    fall 2
    rise 1
    init_fail
}

vrrp_sync_group tunvs {
    group {
        upstream
        servers
    }
}
${instance('upstream', o.up ?? 'eth0', 51, LAB.float.up4, LAB.float.up6)}
${instance('servers', o.servers ?? 'eth1', 52, LAB.float.rs4, LAB.float.rs6)}
`;
}
