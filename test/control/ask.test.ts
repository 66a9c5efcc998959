/**
 * Requests to forwarder threads have a deadline (control/ask.ts): real worker threads, one
 * that answers and one that is stuck in a busy loop; one on a long job that says so (as the
 * forwarder does: workers/forwarder.ts answer), whose request waits past the deadline, up to
 * its cap.
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

/** A worker that answers after `ms`, saying every 50 ms that it is on the asks `ids(m.id)`;
 * returned once it listens (a thread still starting on a loaded machine would miss the
 * deadline before its first word, and the deadline is what these tests are about). */
async function slowWorker(ms: number, ids: string): Promise<Worker> {
  const t = thread(`
    const { parentPort } = require('node:worker_threads');
    parentPort.on('message', (m) => {
      const tick = setInterval(() => parentPort.postMessage({ type: 'progress', ids: ${ids} }), 50);
      setTimeout(() => { clearInterval(tick); parentPort.postMessage({ type: 'sync-marked', id: m.id, marked: 3 }); }, ${ms});
    });
    parentPort.postMessage({ type: 'listening' });
  `);
  await new Promise((resolve) => t.once('message', resolve));
  return t;
}

it('a worker on a long job that says so keeps its request alive past the deadline', async () => {
  const t = await slowWorker(700, '[m.id]');
  const m = await askWorker(t, 'forwarder 0', { type: 'sync-mark', id: 0, owner: 2 }, 'sync-marked', 200);
  expect(m).toMatchObject({ marked: 3 });
});

it("progress on other asks does not: the deadline is this request's", async () => {
  const t = await slowWorker(700, '[m.id + 1000]');
  const err = await askWorker(t, 'forwarder 0', { type: 'sync-mark', id: 0, owner: 2 }, 'sync-marked', 200).catch(
    (e: unknown) => e,
  );
  expect((err as Error).message).toMatch(/did not answer sync-mark within 200 ms/);
});

it('a job that goes on saying it is on it fails at the cap, saying so', async () => {
  const t = await slowWorker(5000, '[m.id]');
  const t0 = Date.now();
  const err = await askWorker(t, 'forwarder 2', { type: 'sync-mark', id: 0, owner: 2 }, 'sync-marked', 200, 600).catch(
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AskTimeoutError);
  expect((err as Error).message).toMatch(
    /forwarder 2 still had not answered sync-mark after \d+ s \(it said it was on it/,
  );
  expect(Date.now() - t0).toBeGreaterThanOrEqual(600);
  expect(Date.now() - t0).toBeLessThan(2000);
});
