/** The lab's record of what it started (namespaces, processes by PID and start time), kept
 * in /run/tunvs-lab/<prefix>/state.json so that `down` removes exactly that. */

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive, procStatFields } from './netns.js';

export interface Proc {
  name: string;
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22): guards against PID reuse. */
  start: string;
}

export interface LabState {
  prefix: string;
  namespaces: string[];
  procs: Proc[];
  dir: string;
  adminSocket: string;
  /** The cgroup (relative to the cgroup2 mount) the real-server apps run in, with the TOA
   * reader attached; absent when the lab runs without the reader. */
  cgroup?: string;
  /** With the pair: lb-b's admin socket (lb-a's is adminSocket). */
  adminSocketB?: string;
  /** With the cluster: every started node's admin socket, by node. */
  admins?: Record<string, string>;
}

export function stateDir(prefix: string): string {
  return join('/run/tunvs-lab', prefix.replace(/[^A-Za-z0-9_-]/g, '_'));
}

export function procStart(pid: number): string {
  return procStatFields(pid)?.[19] ?? '';
}

export function readState(prefix: string): LabState | undefined {
  const file = join(stateDir(prefix), 'state.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as LabState) : undefined;
}

export function writeState(s: LabState): void {
  writeFileSync(join(s.dir, 'state.json'), JSON.stringify(s, null, 2));
}

/**
 * Record a process the lab started (by PID and start time, so that only it is ever stopped)
 * and save the state. A restart takes the place of its exited predecessor of the same name:
 * `lab status` shows what runs, and `lab down` stops it where the first one stood in the
 * order (a node's watchdog before its tunvs).
 */
export function recordProc(state: LabState, name: string, pid: number): void {
  const proc = { name, pid, start: procStart(pid) };
  const gone = state.procs.findIndex((p) => p.name === name && !isAlive(p.pid));
  if (gone >= 0) state.procs[gone] = proc;
  else state.procs.push(proc);
  writeState(state);
}

export function nsName(prefix: string, node: string): string {
  return `${prefix}${node}`;
}

/** Poll `check` every 100 ms until it holds; on timeout, the tail of `logFile` is in the error. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  logFile?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail =
    logFile && existsSync(logFile) ? `\n--- ${logFile} ---\n${readFileSync(logFile, 'utf8').slice(-2000)}` : '';
  throw new Error(`timed out waiting for ${what}${tail}`);
}
