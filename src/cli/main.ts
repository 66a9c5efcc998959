#!/usr/bin/env node
/**
 * tunvs command line. Each command is a thin shell over src/: run (control/runtime.ts),
 * list and stats (admin API clients), lab (lab/lab.ts).
 */

import { availableParallelism } from 'node:os';
import { ConfigError } from '../config/errors.js';
import { DEFAULTS } from '../config/config.js';
import { adminRequest } from '../control/admin.js';
import { stderrLogger } from '../control/log.js';
import { Runtime } from '../control/runtime.js';
import { labCurl, labDown, labLoad, labStatus, labToa, labUp } from '../lab/lab.js';

const HELP = `tunvs — userspace L4 load balancer (FULLNAT + TOA on a TUN device)

Usage:
  tunvs run --config FILE [--workers N]   run the load balancer (root); SIGHUP reloads
  tunvs list [-n] [--stats] [--json]      services and real servers (like ipvsadm -Ln)
  tunvs stats [--json]                    counters, drops by reason, TUN device and queue counters
  tunvs lab up [--workers N] [--no-steering] [--no-offload]
                                          build the netns lab and start tunvs on LB A
  tunvs lab curl [-6] [--count N]         GET the VIP from the lab client
  tunvs lab toa [-6] [--count N]          requests with a capture on the real servers: what the
                                          application saw beside the TOA it received (tshark)
  tunvs lab load [-6] [--connections N] [--duration S]
                                          autocannon through the VIP (default 50, 10 s; max 600 s)
  tunvs lab status                        what the lab runs
  tunvs lab down                          remove the lab (namespaces, processes)
  tunvs help                              this text

Options:
  --admin PATH    admin socket (default ${DEFAULTS.adminSocket}; the lab's is under /run/tunvs-lab)
  --prefix P      lab namespace prefix (default tvs-)

Examples:
  sudo tunvs run --config /etc/tunvs/tunvs.yaml
  sudo tunvs list --stats
  sudo tunvs lab up && sudo tunvs lab curl && sudo tunvs lab down
`;

function flag(args: string[], name: string): boolean {
  const i = args.indexOf(name);
  if (i >= 0) args.splice(i, 1);
  return i >= 0;
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
  args.splice(i, 2);
  return v;
}

class UsageError extends Error {}

function positiveInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return n;
}

async function main(argv: string[]): Promise<number> {
  const args = [...argv];
  const cmd = args.shift() ?? 'help';
  const prefix = option(args, '--prefix') ?? 'tvs-';
  const log = (line: string): void => console.log(line);
  switch (cmd) {
    case 'run': {
      const configPath = option(args, '--config');
      if (configPath === undefined) throw new UsageError('run needs --config FILE');
      const workers = positiveInt(option(args, '--workers'), '--workers');
      const rt = new Runtime({ configPath, logger: stderrLogger, ...(workers !== undefined ? { workers } : {}) });
      await rt.start();
      return -1; // keep running until a signal
    }
    case 'list':
    case 'stats': {
      const admin = option(args, '--admin') ?? DEFAULTS.adminSocket;
      const json = flag(args, '--json');
      const stats = flag(args, '--stats');
      flag(args, '-n'); // numeric output is the only output
      const reply = await adminRequest(admin, cmd === 'list' ? { cmd, stats } : { cmd });
      if (json) console.log(JSON.stringify(cmd === 'list' ? reply.services : reply, null, 2));
      else if (cmd === 'list') console.log(reply.text);
      else
        console.log(
          JSON.stringify(
            { counters: reply.counters, drops: reply.drops, device: reply.device, queues: reply.queues },
            null,
            2,
          ),
        );
      return 0;
    }
    case 'lab': {
      const sub = args.shift();
      if (sub === 'up') {
        const workers = positiveInt(option(args, '--workers'), '--workers') ?? Math.min(availableParallelism(), 4);
        const steering = !flag(args, '--no-steering');
        const offload = !flag(args, '--no-offload');
        await labUp({ prefix, workers, steering, offload, log });
        log(`lab up. Try: tunvs lab curl; tunvs lab status; tear down with: tunvs lab down`);
        return 0;
      }
      if (sub === 'down') {
        await labDown(prefix, log);
        return 0;
      }
      if (sub === 'status') {
        log(await labStatus(prefix));
        return 0;
      }
      if (sub === 'curl') {
        const family = flag(args, '-6') ? 6 : 4;
        const count = positiveInt(option(args, '--count'), '--count') ?? 1;
        process.stdout.write(labCurl(prefix, family, count));
        return 0;
      }
      if (sub === 'toa') {
        const family = flag(args, '-6') ? 6 : 4;
        const count = positiveInt(option(args, '--count'), '--count') ?? 3;
        const { observed } = await labToa(prefix, family, count);
        for (const o of observed) {
          const toa = o.toa ? `${o.toa.address}:${o.toa.port} (TOA kind ${o.toa.kind})` : 'no TOA captured';
          log(`${o.server}: application saw ${o.appSaw}; TOA on the wire says the client is ${toa}`);
        }
        return 0;
      }
      if (sub === 'load') {
        const family = flag(args, '-6') ? 6 : 4;
        const connections = positiveInt(option(args, '--connections'), '--connections') ?? 50;
        const seconds = positiveInt(option(args, '--duration'), '--duration') ?? 10;
        if (seconds > 600) throw new UsageError('--duration is at most 600 seconds (every load run is bounded)');
        return labLoad(prefix, family, connections, seconds);
      }
      throw new UsageError(`lab needs one of: up, down, status, curl, toa, load (got ${sub ?? 'nothing'})`);
    }
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(`tunvs: ${e.message}\n\n${HELP}`);
      process.exitCode = 2;
    } else if (e instanceof ConfigError) {
      console.error(`tunvs: config error [${e.code}] ${e.message}`);
      process.exitCode = 1;
    } else {
      console.error(`tunvs: ${(e as Error).message}`);
      process.exitCode = 1;
    }
  },
);
