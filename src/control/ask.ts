/**
 * A request from the main thread to a forwarder thread, answered by a message with the same
 * id (forwarder_protocol.ts), with a deadline: a stuck or overloaded worker fails the request
 * (`tunvs conns`, `tunvs stats`, an HA resync) instead of hanging it. The worker's own
 * failure is handled where its thread is watched (runtime.ts startWorkers).
 */

import type { Worker } from 'node:worker_threads';
import type { FromForwarder, ToForwarder } from './forwarder_protocol.js';

/** How long a request may take by default: a snapshot of a full 1M-session shard is well
 * under a second; more means the thread is stuck. */
export const ASK_TIMEOUT_MS = 5000;

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
): Promise<T> {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    const onMessage = (m: FromForwarder): void => {
      if (m.type === type && 'id' in m && m.id === id) {
        clearTimeout(timer);
        thread.off('message', onMessage);
        resolve(m as T);
      }
    };
    const timer = setTimeout(() => {
      thread.off('message', onMessage);
      reject(
        new AskTimeoutError(
          `${label} did not answer ${msg.type} within ${timeoutMs} ms (busy or stuck: see tunvs stats and the log)`,
        ),
      );
    }, timeoutMs);
    thread.on('message', onMessage);
    thread.postMessage({ ...msg, id });
  });
}
