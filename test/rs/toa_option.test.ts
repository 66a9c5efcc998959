import { describe, expect, it } from 'vitest';
import { parseToaOptions, tcpHeaderOf } from '../../src/rs/toa_option.js';

const toa4 = [254, 8, 0x1f, 0x90, 198, 18, 100, 10]; // port 8080
const toa6 = [253, 20, 0x00, 0x50, 0xfd, 0x18, 0, 0x18, 0x01, 0x00, ...new Array<number>(9).fill(0), 0x10];

describe('parseToaOptions', () => {
  it('finds an IPv4 TOA after other options and NOPs', () => {
    const opts = Uint8Array.from([2, 4, 5, 0xb4, 1, 1, 4, 2, ...toa4]);
    expect(parseToaOptions(opts)).toEqual({ family: 4, address: '198.18.100.10', port: 8080, kind: 254 });
  });

  it('finds an IPv6 TOA (kind 253 accepted by default)', () => {
    expect(parseToaOptions(Uint8Array.from(toa6))).toEqual({
      family: 6,
      address: 'fd18:18:100::10',
      port: 80,
      kind: 253,
    });
  });

  it('honours configured kinds', () => {
    const opts = Uint8Array.from([200, ...toa4.slice(1)]);
    expect(parseToaOptions(opts)).toBeUndefined();
    expect(parseToaOptions(opts, { v4: [200], v6: [200] })?.address).toBe('198.18.100.10');
  });

  it('stops at end-of-options, a bad length or a truncated option', () => {
    expect(parseToaOptions(Uint8Array.from([0, ...toa4]))).toBeUndefined();
    expect(parseToaOptions(Uint8Array.from([3, 1, ...toa4]))).toBeUndefined();
    expect(parseToaOptions(Uint8Array.from(toa4.slice(0, 6)))).toBeUndefined();
    // a TOA-kind option of another length is not a TOA
    expect(parseToaOptions(Uint8Array.from([254, 4, 0, 0]))).toBeUndefined();
  });
});

describe('tcpHeaderOf', () => {
  const tcp = Uint8Array.from([0, 80, 0x1f, 0x90, 0, 0, 0, 1, 0, 0, 0, 0, 0x70, 2, 0xff, 0xff, 0, 0, 0, 0, ...toa4]);

  it('skips an IPv4 header with options', () => {
    const ip = new Uint8Array(24);
    ip[0] = 0x46;
    ip[9] = 6;
    const h = tcpHeaderOf(Uint8Array.from([...ip, ...tcp]));
    expect(h?.length).toBe(28);
    expect(parseToaOptions(h!.subarray(20))?.port).toBe(8080);
  });

  it('skips IPv6 extension headers', () => {
    const ip = new Uint8Array(40);
    ip[0] = 0x60;
    ip[6] = 0; // hop-by-hop next
    const hbh = Uint8Array.from([6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, 8 bytes
    const h = tcpHeaderOf(Uint8Array.from([...ip, ...hbh, ...tcp]));
    expect(h?.length).toBe(28);
  });

  it('refuses what is not TCP or is cut short', () => {
    const ip = new Uint8Array(20);
    ip[0] = 0x45;
    ip[9] = 17;
    expect(tcpHeaderOf(Uint8Array.from([...ip, ...tcp]))).toBeUndefined();
    ip[9] = 6;
    expect(tcpHeaderOf(Uint8Array.from([...ip, ...tcp.subarray(0, 24)]))).toBeUndefined();
    expect(tcpHeaderOf(new Uint8Array(0))).toBeUndefined();
  });
});
