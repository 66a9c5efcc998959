/** tcp: the server accepts a connection on the port within the timeout (keepalived's
 * TCP_CHECK). The connection is closed at once. */

import { connect } from 'node:net';
import { errorText, failed, PASS, registerCheck } from './check.js';

registerCheck(
  'tcp',
  (spec, t) =>
    new Promise((resolve) => {
      const sock = connect({ host: t.address, port: t.port, timeout: spec.timeout * 1000 });
      sock.once('connect', () => {
        sock.destroy();
        resolve(PASS);
      });
      sock.once('timeout', () => {
        sock.destroy();
        resolve(failed(`connect timed out after ${spec.timeout} s`));
      });
      sock.once('error', (e) => resolve(failed(`connect: ${errorText(e)}`)));
    }),
);
