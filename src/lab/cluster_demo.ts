/**
 * `tunvs lab cluster`: the active/active cluster shown working (docs/cluster.md). Brings the
 * cluster lab up when there is none, shows new connections spread over the nodes, kills tunvs
 * on one node by PID under byte-checked streams and an autocannon load, prints the timeline
 * (out of ECMP, its local addresses on the backup, its sessions adopted) and the outcome,
 * then starts the node again and shows it rejoin only once it has loaded the sessions.
 */

import { adminRequest } from '../control/admin.js';
import { clusterStatusOf, nextHops, vipNextHops } from './cluster.js';
import { frrDir } from './frr.js';
import { autocannonInClient, timeline } from './failover.js';
import { labCurl, labDown, labUp } from './lab.js';
import { isAlive, listNamespaces } from './netns.js';
import { adminOf, labPid, restartTunvs } from './pair.js';
import { readState, type LabState } from './state.js';
import { outcomeLines, runStreams } from './streams.js';
import { CLUSTER, clusterNode, LAB } from './topology.js';

const STREAMS = 200;
const STREAM_SECONDS = 20;
const LOAD_SECONDS = 16;
/** The node the demo fails. */
const VICTIM = 'lb-b';

async function counter(state: LabState, node: string, name: string): Promise<number> {
  try {
    const r = (await adminRequest(adminOf(state, node), { cmd: 'stats' }, 1000)) as {
      counters: Record<string, number>;
    };
    return r.counters[name] ?? 0;
  } catch {
    return -1;
  }
}

export async function labCluster(
  prefix: string,
  nodes: number,
  workers: number,
  log: (l: string) => void,
): Promise<number> {
  let state = readState(prefix);
  if (state && !state.admins) {
    throw new Error(`the lab ${prefix} runs without the cluster: tunvs lab down, then tunvs lab cluster`);
  }
  if (!state) {
    if (listNamespaces().some((n) => n.startsWith(prefix))) await labDown(prefix, () => undefined);
    log(`== Bringing up the cluster: ${nodes} tunvs nodes, FRR (BGP + BFD) on them and the router, Redis + Sentinel`);
    state = await labUp({ prefix, workers, cluster: nodes, log });
  }
  const fresh = (): LabState => (state = readState(prefix)!);
  const running = CLUSTER.nodes.filter((n) => labPid(fresh(), `tunvs-${n}`) !== undefined);
  if (!running.includes(VICTIM)) throw new Error(`${VICTIM} does not run: tunvs lab down and try again`);
  const up = (n: string): string => clusterNode(n).up4;

  log(
    `\n== 300 new connections to ${LAB.vip4}: the router spreads them (ECMP over ${vipNextHops(state, 4).length} nodes)`,
  );
  const before = await Promise.all(running.map((n) => counter(fresh(), n, 'sessions_created')));
  labCurl(prefix, 4, 300);
  const after = await Promise.all(running.map((n) => counter(fresh(), n, 'sessions_created')));
  log(running.map((n, i) => `${n} ${(((after[i]! - before[i]!) / 300) * 100).toFixed(0)}%`).join(', '));

  log(`\n== ${STREAMS} long-lived streams (every byte checked) + autocannon -c 20 through ${LAB.vip4}`);
  const streams = runStreams(state, STREAMS, STREAM_SECONDS);
  await streams.ready;
  const cannon = autocannonInClient(prefix, 20, LOAD_SECONDS);
  await new Promise((r) => setTimeout(r, 3500)); // older than syncAfterMs: on every node
  const lip = clusterNode(VICTIM).laddrs4[0]!;
  const adoptedBefore = await Promise.all(running.map((n) => counter(fresh(), n, 'sync_adopted')));
  const pid = labPid(state, `tunvs-${VICTIM}`)!;
  log(`\n== kill -9 ${pid} (tunvs on ${VICTIM})`);
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  await timeline(log, t0, 10_000, [
    { what: `tunvs on ${VICTIM} gone`, check: () => !isAlive(pid) },
    {
      what: `the router dropped ${VICTIM} from the VIP's next hops`,
      check: () => !vipNextHops(state!, 4).includes(up(VICTIM)),
    },
    {
      what: `${VICTIM}'s local addresses routed to its backup`,
      check: () => nextHops(state!, 4, lip).length > 0 && !nextHops(state!, 4, lip).includes(up(VICTIM)),
    },
    {
      what: `${VICTIM}'s sessions adopted by its backup (its alive key expired)`,
      check: async () => {
        const now = await Promise.all(running.map((n) => counter(state!, n, 'sync_adopted')));
        return now.some((x, i) => running[i] !== VICTIM && x > adoptedBefore[i]!);
      },
    },
  ]);
  const s = await streams.done;
  log('\n== Outcome');
  for (const line of outcomeLines(s, await cannon)) log(line);

  log(`\n== ${VICTIM} returns: tunvs starts again, loads the sessions, then announces`);
  const t1 = Date.now();
  const back = await restartTunvs(prefix, VICTIM);
  await timeline(log, t1, 20_000, [
    { what: `tunvs on ${VICTIM} running (pid ${back})`, check: () => isAlive(back) },
    {
      what: `${VICTIM} ready (its own and its peers' sessions loaded)`,
      check: async () => (await clusterStatusOf(state!, VICTIM))?.ready === true,
    },
    { what: `the router spreads over ${VICTIM} again`, check: () => vipNextHops(state!, 4).includes(up(VICTIM)) },
  ]);
  log(
    `\nThe cluster stays up: tunvs lab status, tunvs cluster status --admin ${state.adminSocket} --vtysh-socket ${frrDir(state.dir, 'lb-a')}; remove it with: tunvs lab down`,
  );
  return s.ok >= s.connections * 0.99 && s.corruptedBytes === 0 ? 0 : 1;
}
