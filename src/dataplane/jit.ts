/**
 * V8's inlining budget for the packet path, raised once per process when the engine module
 * loads (before any of its code is hot enough to be optimised; the flag is process-wide, so
 * the forwarder threads share it).
 *
 * TurboFan stops inlining into one optimised function once it has inlined
 * --max-inlined-bytecode-size-cumulative bytes of bytecode (920 by default). The engine's hot
 * path (processBurst → handle → natInbound → tcpInbound → rewrite, checksum and timestamp
 * helpers) is larger than that, so the small helpers left over stayed real calls. Measured as
 * instructions per packet (callgrind, `node --single-threaded`, the difference between two
 * packet counts, which leaves start-up and compilation out), see V8_INLINE_BUDGET_BYTES.
 * The flag on node's own command line overrides this one.
 */

import { setFlagsFromString } from 'node:v8';
import { V8_INLINE_BUDGET_BYTES } from '../constants.js';

const FLAG = '--max-inlined-bytecode-size-cumulative';

// One given on node's command line wins (how the default is measured against this).
if (!process.execArgv.some((a) => a.startsWith(FLAG))) setFlagsFromString(`${FLAG}=${V8_INLINE_BUDGET_BYTES}`);
