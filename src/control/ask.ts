/**
 * A request from the main thread to a forwarder thread, answered by a message with the same
 * id (forwarder_protocol.ts), with a deadline: a stuck or overloaded worker fails the request
 * (`tunvs conns`, `tunvs stats`, an HA resync) instead of hanging it. The deadline is for
 * silence: a worker on a long job (its HA scans run one after the other, in slices between
 * its packets) says every ASK_PROGRESS_MS which asks it is still on, and each word starts
 * the deadline again, up to ASK_WORKING_MAX_MS in all. The worker's own failure is handled
 * where its thread is watched (runtime.ts startWorkers).
 */

import type { Worker } from 'node:worker_threads';
import type { FromForwarder, ToForwarder } from './forwarder_protocol.js';

/** How long a worker may leave a request without a word, by default: a snapshot of a full
 * 1M-session shard is well under a second; more means the thread is stuck. */
export const ASK_TIMEOUT_MS = 5000;
/** How often a worker on a long job says so (its `progress` message): well inside the
 * deadline, and rare enough to cost nothing. */
export const ASK_PROGRESS_MS = 1000;
/** The longest a request may take however often the worker says it is on it: jobs queued
 * behind each other at several million sessions take seconds; minutes means one of them
 * waits for something that will not come. */
export const ASK_WORKING_MAX_MS = 120_000;

let nextId = 0;

export class AskTimeoutError extends Error {
  readonly code = 'TUNVS_ERR_WORKER_TIMEOUT';
}

export function askWorker<T extends FromForwarder>(
  thread: Pick<Worker, 'on' | 'off' | 'postMessage'>,
  label: string,
  msg: ToForwarder,
  type: T['type'],
  timeoutMs = ASK_TIMEOUT_MS,
  workingMaxMs = ASK_WORKING_MAX_MS,
): Promise<T> {
  const id = ++nextId;
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromForwarder): void => {
      if (m.type === 'progress') {
        if (m.ids.includes(id) && Date.now() - t0 < workingMaxMs) timer.refresh();
      } else if (m.type === type && 'id' in m && m.id === id) {
        clearTimeout(timer);
        thread.off('message', onMessage);
        resolve(m as T);
      }
    };
    const timer = setTimeout(() => {
      thread.off('message', onMessage);
      reject(
        new AskTimeoutError(
          Date.now() - t0 >= workingMaxMs
            ? `${label} still had not answered ${msg.type} after ${Math.round((Date.now() - t0) / 1000)} s (it said it was on it: see tunvs stats and the log)`
            : `${label} did not answer ${msg.type} within ${timeoutMs} ms (busy or stuck: see tunvs stats and the log)`,
        ),
      );
    }, timeoutMs);
    thread.on('message', onMessage);
    thread.postMessage({ ...msg, id });
  });
}
