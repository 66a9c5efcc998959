/**
 * udp: one datagram (`payload`, hex; default empty) to the server's port (keepalived's
 * UDP_CHECK); a closed port fails at once (datagram.ts). With `expectReply` a reply must come
 * within the timeout and begin with those bytes ("" takes any); without it, silence until the
 * timeout passes, as keepalived's does without require_reply (a UDP server need not answer a
 * probe).
 */

import { failed, PASS, registerCheck } from './check.js';
import { exchange } from './datagram.js';

registerCheck('udp', (spec, t) => {
  const want = spec.expectReply === undefined ? undefined : Buffer.from(spec.expectReply, 'hex');
  return exchange(t, {
    name: 'udp',
    message: Buffer.from(spec.payload ?? '', 'hex'),
    timeoutSec: spec.timeout,
    reply: (msg) =>
      want === undefined || msg.subarray(0, want.length).equals(want)
        ? PASS
        : failed(`reply ${msg.subarray(0, 16).toString('hex')} does not begin with ${spec.expectReply}`),
    silence: want === undefined ? PASS : failed(`no reply within ${spec.timeout} s`),
  });
});
