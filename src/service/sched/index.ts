/** Loads every scheduler so each registers itself by name. */
import './rr.js';
import './wrr.js';
import './lc.js';
import './wlc.js';
import './sed.js';
import './nq.js';
import './twos.js';
import './fo.js';
import './ovf.js';
import './sh.js';
import './maglev.js';

export { createScheduler, SCHEDULER_NAMES } from './scheduler.js';
export type { Scheduler, SchedulerName, ServerPool, SchedulerOptions } from './scheduler.js';
