/**
 * smtp: the server's greeting (220), HELO `helo` answered with 250, then QUIT (keepalived's
 * SMTP_CHECK). Replies may span lines ("250-..." continues, "250 ..." ends one). The check
 * passes on the 250; QUIT is sent as a courtesy and the connection closed without waiting.
 */

import { connect } from 'node:net';
import { hostname } from 'node:os';
import { errorText, failed, PASS, registerCheck, type CheckResult } from './check.js';

/** Longest reply held while waiting for its last line (RFC 5321 limits a line to 512 bytes). */
const REPLY_HELD_BYTES = 4096;

registerCheck(
  'smtp',
  (spec, t) =>
    new Promise((resolve) => {
      const sock = connect({ host: t.address, port: t.port, timeout: spec.timeout * 1000 });
      let done = false;
      const finish = (r: CheckResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (r.ok) sock.end('QUIT\r\n');
        else sock.destroy();
        resolve(r);
      };
      // The socket's timeout is per idle period; the whole exchange gets the same bound.
      const timer = setTimeout(
        () => finish(failed(`no complete exchange within ${spec.timeout} s`)),
        spec.timeout * 1000,
      );
      let stage: 'greeting' | 'helo' = 'greeting';
      let text = '';
      sock.setEncoding('latin1');
      sock.on('data', (c: string) => {
        text += c;
        // A reply is complete at a line "NNN text" (a space, or nothing, after the code).
        const m = /(?:^|\r?\n)(\d{3})(?: [^\r\n]*)?\r?\n/.exec(text);
        if (!m) {
          if (text.length > REPLY_HELD_BYTES) finish(failed(`smtp: no reply line in ${REPLY_HELD_BYTES} bytes`));
          return;
        }
        const code = m[1]!;
        text = '';
        if (stage === 'greeting') {
          if (code !== '220') return finish(failed(`smtp: greeting ${code}, expected 220`));
          stage = 'helo';
          sock.write(`HELO ${spec.helo ?? hostname()}\r\n`);
        } else finish(code === '250' ? PASS : failed(`smtp: HELO answered ${code}, expected 250`));
      });
      sock.once('timeout', () => finish(failed(`smtp: timed out after ${spec.timeout} s`)));
      sock.once('error', (e) => finish(failed(`smtp: ${errorText(e)}`)));
      sock.once('end', () => finish(failed(`smtp: closed by the server during the ${stage}`)));
    }),
);
