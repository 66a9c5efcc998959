/** Loads every health check so each registers itself by type. */
import './tcp.js';
import './http.js';
import './udp.js';
import './dns.js';
import './smtp.js';
import './exec.js';

export { runCheck } from './check.js';
export { runCommand } from './command.js';
export type { CheckResult, CheckTarget } from './check.js';
