/** Loads every scheduler so each registers itself by name. */
import './rr.js';
import './wrr.js';
import './lc.js';
import './wlc.js';
import './sh.js';
import './maglev.js';

export { createScheduler, SCHEDULER_NAMES } from './scheduler.js';
export type { Scheduler, SchedulerName, ServerPool, SchedulerOptions } from './scheduler.js';
