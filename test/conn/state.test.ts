import { describe, expect, it } from 'vitest';
import {
  nextStateInbound as inb,
  nextStateOutbound as outb,
  S_CLOSE,
  S_CLOSE_WAIT,
  S_ESTABLISHED,
  S_FIN_WAIT,
  S_LAST_ACK,
  S_NONE,
  S_SYN_RECV,
  S_SYNACK,
  S_TIME_WAIT,
  timeoutTicks,
  TIMEOUTS_DEFAULT_SEC,
} from '../../src/conn/state.js';

const SYN = 2;
const ACK = 16;
const FIN = 1;
const RST = 4;

describe('TCP state machine', () => {
  it('client closes first', () => {
    let s = inb(S_NONE, SYN);
    expect(s).toBe(S_SYN_RECV);
    s = outb(s, SYN | ACK);
    expect(s).toBe(S_SYNACK);
    s = inb(s, ACK);
    expect(s).toBe(S_ESTABLISHED);
    s = inb(s, FIN | ACK);
    expect(s).toBe(S_FIN_WAIT);
    s = outb(s, FIN | ACK);
    expect(s).toBe(S_LAST_ACK);
    s = inb(s, ACK);
    expect(s).toBe(S_TIME_WAIT);
  });
  it('server closes first', () => {
    let s = S_ESTABLISHED;
    s = outb(s, FIN | ACK);
    expect(s).toBe(S_CLOSE_WAIT);
    s = inb(s, FIN | ACK);
    expect(s).toBe(S_LAST_ACK);
    s = outb(s, ACK);
    expect(s).toBe(S_TIME_WAIT);
  });
  it('RST from either side closes', () => {
    expect(inb(S_ESTABLISHED, RST)).toBe(S_CLOSE);
    expect(outb(S_SYN_RECV, RST | ACK)).toBe(S_CLOSE);
  });
  it('a retransmitted SYN keeps SYN_RECV', () => {
    expect(inb(S_SYN_RECV, SYN)).toBe(S_SYN_RECV);
  });
  it('default timeouts are the DPVS ones, in ticks', () => {
    const t = timeoutTicks(TIMEOUTS_DEFAULT_SEC, 100);
    expect(t[S_ESTABLISHED]).toBe(900);
    expect(t[S_SYN_RECV]).toBe(300);
    expect(t[S_CLOSE]).toBe(30);
  });
});
