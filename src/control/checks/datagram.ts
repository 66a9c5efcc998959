/**
 * One UDP exchange for the udp and dns checks: a connected socket to the server sends one
 * datagram and settles once. The kernel hands a connected UDP socket the ICMP port or host
 * unreachable its datagram drew, so a closed port fails at once (ECONNREFUSED).
 */

import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { errorText, failed, type CheckResult, type CheckTarget } from './check.js';

export interface Exchange {
  /** The check's name, for errors ("udp: ECONNREFUSED"). */
  name: string;
  message: Buffer;
  timeoutSec: number;
  /** A datagram that came back: the result, or undefined to wait on (not an answer to us). */
  reply: (msg: Buffer) => CheckResult | undefined;
  /** The result when nothing answered within the timeout. */
  silence: CheckResult;
}

export function exchange(t: CheckTarget, x: Exchange): Promise<CheckResult> {
  return new Promise((resolve) => {
    const sock = createSocket(isIP(t.address) === 6 ? 'udp6' : 'udp4');
    let done = false;
    const finish = (r: CheckResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const timer = setTimeout(() => finish(x.silence), x.timeoutSec * 1000);
    sock.on('error', (e) => finish(failed(`${x.name}: ${errorText(e)}`)));
    sock.on('message', (msg) => {
      const r = x.reply(msg);
      if (r) finish(r);
    });
    sock.connect(t.port, t.address, () => {
      sock.send(x.message, (e) => {
        if (e) finish(failed(`${x.name}: ${errorText(e)}`));
      });
    });
  });
}
