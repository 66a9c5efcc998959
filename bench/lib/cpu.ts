/**
 * CPU time as the benchmarks count it, from /proc (clock ticks of USER_HZ = 100).
 *
 *   machineBusySeconds   every core's busy time so far (all but idle and iowait)
 *   processCpu           a process's user and system time (all its threads) and its main
 *                        thread's share (tunvs: the control plane — HA sync, health, admin)
 *
 * A thread that writes into a veth or TUN is often charged, as system time, for the softirq
 * that carries the packet through the next namespace's stack too: system time says what the
 * kernel did while that process ran, not only for it. User time is the process's own work.
 */

import { readFileSync } from 'node:fs';

const USER_HZ = 100;

export function machineBusySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest is inside user)
  return (total - f[3]! - f[4]!) / USER_HZ;
}

export interface ProcessCpu {
  user: number;
  system: number;
  /** User + system time of the main thread alone. */
  main: number;
}

function statTimes(path: string): [number, number] {
  const stat = readFileSync(path, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [Number(f[11]) / USER_HZ, Number(f[12]) / USER_HZ]; // utime, stime
}

export function processCpu(pid: number): ProcessCpu {
  const [user, system] = statTimes(`/proc/${pid}/stat`);
  const [mu, ms] = statTimes(`/proc/${pid}/task/${pid}/stat`);
  return { user, system, main: mu + ms };
}

/** `b − a`, field by field. */
export function cpuSince(a: ProcessCpu, b: ProcessCpu): ProcessCpu {
  return { user: b.user - a.user, system: b.system - a.system, main: b.main - a.main };
}
