import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/errors.js';

/** The ConfigError parseConfig throws for `doc`: its code and path. */
function refusal(doc: unknown): { code: string; path: string } {
  try {
    parseConfig(doc);
  } catch (e) {
    if (e instanceof ConfigError) return { code: e.code, path: e.path };
    throw e;
  }
  throw new Error('accepted');
}

describe('io config (tun | xdp)', () => {
  it('TUN by default, with its offloads', () => {
    const c = parseConfig({});
    expect(c.io).toBe('tun');
    expect(c.xdp).toBeUndefined();
    expect(c.tun.offload).toBe(true);
  });

  it('xdp: the interfaces, native mode and copy by default; the TUN without offloads', () => {
    const c = parseConfig({ io: 'xdp', xdp: { interfaces: ['eth0', 'eth1'] }, tun: { offload: true } });
    expect(c.io).toBe('xdp');
    expect(c.xdp).toEqual({ interfaces: ['eth0', 'eth1'], mode: 'native', zeroCopy: false });
    expect(c.tun.offload).toBe(false);
    expect(parseConfig({ io: 'xdp', xdp: { interfaces: ['ens1f0'], mode: 'generic', zeroCopy: true } }).xdp).toEqual({
      interfaces: ['ens1f0'],
      mode: 'generic',
      zeroCopy: true,
    });
  });

  it('refuses what cannot run, naming the field', () => {
    expect(refusal({ io: 'dpdk' })).toEqual({ code: 'TUNVS_ERR_CONFIG_UNKNOWN', path: 'io' });
    expect(refusal({ io: 'xdp' })).toEqual({ code: 'TUNVS_ERR_CONFIG_MISSING', path: 'xdp.interfaces' });
    expect(refusal({ io: 'xdp', xdp: { interfaces: [] } })).toEqual({
      code: 'TUNVS_ERR_CONFIG_RANGE',
      path: 'xdp.interfaces',
    });
    expect(refusal({ io: 'xdp', xdp: { interfaces: ['eth0', 'eth0'] } })).toEqual({
      code: 'TUNVS_ERR_CONFIG_DUPLICATE',
      path: 'xdp.interfaces',
    });
    expect(refusal({ io: 'xdp', xdp: { interfaces: ['eth 0'] } }).path).toBe('xdp.interfaces[0]');
    expect(refusal({ io: 'xdp', xdp: { interfaces: ['eth0'], mode: 'offload' } })).toEqual({
      code: 'TUNVS_ERR_CONFIG_UNKNOWN',
      path: 'xdp.mode',
    });
    expect(refusal({ io: 'xdp', xdp: { interfaces: ['eth0'], queues: 4 } }).code).toBe('TUNVS_ERR_CONFIG_UNKNOWN');
  });

  it('an xdp section under io: tun is checked, and kept for when io changes', () => {
    expect(parseConfig({ xdp: { interfaces: ['eth0'] } }).xdp?.interfaces).toEqual(['eth0']);
    expect(refusal({ xdp: { interfaces: 'eth0' } }).path).toBe('xdp.interfaces');
  });
});
