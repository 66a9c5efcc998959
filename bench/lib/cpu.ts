/**
 * CPU time as the benchmarks count it, from /proc (clock ticks of USER_HZ = 100).
 *
 *   machineBusySeconds   every core's busy time so far (all but idle and iowait)
 *   processCpu           a process's user and system time (all its threads) and its main
 *                        thread's share (tunvs: the control plane — HA sync, health, admin)
 *   machineStalls        what kept the machine's runnable threads waiting so far: time the
 *                        hypervisor gave to others (steal) and the kernel's pressure stall
 *                        totals (PSI: some task waiting for a CPU, all waiting for IO)
 *
 * A thread that writes into a veth or TUN is often charged, as system time, for the softirq
 * that carries the packet through the next namespace's stack too: system time says what the
 * kernel did while that process ran, not only for it. User time is the process's own work.
 */

import { readFileSync } from 'node:fs';

const USER_HZ = 100;

/** The machine's CPU times from /proc/stat's first line, in ticks: user, nice, system, idle,
 * iowait, irq, softirq, steal, guest, guest_nice. */
function machineTicks(): number[] {
  return readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
}

export function machineBusySeconds(): number {
  const f = machineTicks();
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user … steal (guest is inside user)
  return (total - f[3]! - f[4]!) / USER_HZ;
}

export interface MachineStalls {
  /** CPU time the hypervisor ran something else while this machine wanted to run (s). */
  stealSec: number;
  /** /proc/pressure/cpu "some": time at least one runnable task waited for a CPU (s). */
  cpuSomeSec: number;
  /** /proc/pressure/io "full": time every non-idle task waited for IO at once (s). */
  ioFullSec: number;
}

export function machineStalls(): MachineStalls {
  const psi = (what: string, line: string): number => {
    try {
      const m = new RegExp(`^${line} .*total=(\\d+)`, 'm').exec(readFileSync(`/proc/pressure/${what}`, 'utf8'));
      return m ? Number(m[1]) / 1e6 : NaN;
    } catch {
      return NaN; // a kernel without PSI
    }
  };
  return { stealSec: (machineTicks()[7] ?? 0) / USER_HZ, cpuSomeSec: psi('cpu', 'some'), ioFullSec: psi('io', 'full') };
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
