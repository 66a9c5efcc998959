/**
 * Registers every forwarding mode (import this, not the files), as sched/index.ts does for
 * the schedulers.
 */

import './fullnat.js';
import './nat.js';
import './tunnel.js';
import './dr.js';

export { modeTable, MODE_FULLNAT, MODE_NAMES, type ForwardingMode, type ModeName } from './mode.js';
