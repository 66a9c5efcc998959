/**
 * Memory as `tunvs stats` reports it per thread, and the full collection `tunvs stats --gc`
 * asks of every thread first. A thread's V8 heap in use counts its garbage until a major
 * collection, which V8 runs when it sees fit (minutes apart on a quiet node: a soak saw the
 * main thread's heap climb from 12 to 19 MiB and fall back to 12 at once), so a heap read
 * without one cannot tell a leak from garbage. A diagnostic: each thread pauses for its
 * collection (milliseconds at tunvs's heap sizes).
 */

import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let collect: (() => void) | undefined;

/** A full garbage collection of this thread's heap. Node gives scripts `gc` only with
 * --expose-gc; set at run time, the flag shows it to a context made after it. */
export function fullGc(): void {
  if (!collect) {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as () => void;
  }
  collect();
}

/** This thread's V8 heap in use (its garbage included, unless fullGc ran just before). */
export function heapBytes(): number {
  return getHeapStatistics().used_heap_size;
}
