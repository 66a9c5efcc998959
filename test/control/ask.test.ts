/**
 * Requests to forwarder threads have a deadline (control/ask.ts): real worker threads, one
 * that answers and one that is stuck in a busy loop.
 */

import { Worker } from 'node:worker_threads';
import { afterEach, expect, it } from 'vitest';
import { AskTimeoutError, askWorker } from '../../src/control/ask.js';

const threads: Worker[] = [];
afterEach(async () => {
  await Promise.all(threads.splice(0).map((t) => t.terminate()));
});

function thread(code: string): Worker {
  const t = new Worker(code, { eval: true });
  threads.push(t);
  return t;
}

it('an answer with the same id resolves the request', async () => {
  const t = thread(`
    const { parentPort } = require('node:worker_threads');
    parentPort.on('message', (m) => parentPort.postMessage({ type: 'sync-swept', id: m.id, removed: 7 }));
  `);
  const m = await askWorker(t, 'forwarder 0', { type: 'sync-sweep', id: 0, owner: 2 }, 'sync-swept', 2000);
  expect(m).toMatchObject({ type: 'sync-swept', removed: 7 });
});

it('a stuck worker fails the request after the deadline, naming the worker and the request', async () => {
  const t = thread(`
    const { parentPort } = require('node:worker_threads');
    parentPort.on('message', () => { const end = Date.now() + 3000; while (Date.now() < end); });
  `);
  const t0 = Date.now();
  const err = await askWorker(t, 'forwarder 1', { type: 'sync-snapshot', id: 0 }, 'sync-snapshot', 300).catch(
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AskTimeoutError);
  expect((err as AskTimeoutError).code).toBe('TUNVS_ERR_WORKER_TIMEOUT');
  expect((err as Error).message).toMatch(/forwarder 1 did not answer sync-snapshot within 300 ms/);
  expect(Date.now() - t0).toBeLessThan(2000);
});
