import { describe, expect, it } from 'vitest';
import { parseCidr } from '../../src/service/addr.js';
import {
  checkKernel,
  decodeConfig,
  encodeConfig,
  READER_DEFAULTS,
  RsError,
  trustedKey,
  trustedText,
} from '../../src/rs/reader.js';

describe('reader options', () => {
  it('encodes the config entry the programs read (kinds, flags)', () => {
    expect([...encodeConfig(READER_DEFAULTS)]).toEqual([254, 254, 253, 1]);
    const o = {
      ...READER_DEFAULTS,
      kindV4: 200,
      kindV6: 200,
      kindV6Alt: 200,
      savedSyn: false,
      trusted: ['10.0.0.0/8'],
    };
    expect([...encodeConfig(o)]).toEqual([200, 200, 200, 2]);
    expect(decodeConfig(encodeConfig(o), o.trusted)).toEqual(o);
  });

  it('refuses kinds that are not TCP option kinds', () => {
    expect(() => encodeConfig({ ...READER_DEFAULTS, kindV4: 1 })).toThrow(/kindV4 must be a TCP option kind/);
    expect(() => encodeConfig({ ...READER_DEFAULTS, kindV6: 256 })).toThrow(RsError);
  });

  it('trusted prefixes: IPv4 as ::ffff:a.b.c.d with the length + 96, IPv6 as is; and back', () => {
    const k4 = trustedKey('198.18.2.0/24');
    expect(k4.readUInt32LE(0)).toBe(120);
    expect([...k4.subarray(4)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 198, 18, 2, 0]);
    expect(trustedText(k4)).toBe('198.18.2.0/24');
    expect(trustedText(trustedKey('198.18.2.1'))).toBe('198.18.2.1/32');
    const k6 = trustedKey('fd18:18:2::/64');
    expect(k6.readUInt32LE(0)).toBe(64);
    expect(trustedText(k6)).toBe('fd18:18:2::/64');
    expect(() => trustedKey('198.18.2.1/24')).toThrow(/not an address or prefix/);
    expect(() => trustedKey('lb.example')).toThrow(RsError);
  });

  it('parseCidr: strict prefixes, host bits zero', () => {
    expect(parseCidr('10.0.0.0/8')?.prefix).toBe(8);
    expect(parseCidr('::/0')?.prefix).toBe(0);
    expect(parseCidr('10.0.0.1')?.prefix).toBe(32);
    expect(parseCidr('10.0.0.0/33')).toBeUndefined();
    expect(parseCidr('10.0.0.0/08')).toBeUndefined();
    expect(parseCidr('fd18::1/64')).toBeUndefined();
  });

  it('a kernel older than 5.10 is named as the missing piece', () => {
    expect(() => checkKernel('5.4.0-150-generic')).toThrow(/needs Linux 5\.10 or later/);
    expect(() => checkKernel('5.10.0')).not.toThrow();
    expect(() => checkKernel('6.18.44')).not.toThrow();
  });
});
