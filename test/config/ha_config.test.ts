import { describe, expect, it } from 'vitest';
import { HA_DEFAULTS, parseConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseNotifyLine } from '../../src/ha/notify_fifo.js';

describe('ha config', () => {
  it('defaults, and absent means no pair', () => {
    expect(parseConfig({}).ha).toBeUndefined();
    expect(parseConfig({ ha: { redis: 'redis://198.18.20.30:6379' } }).ha).toEqual({
      redis: 'redis://198.18.20.30:6379',
      ...HA_DEFAULTS,
    });
  });

  it('errors name the field', () => {
    const err = (doc: unknown): string => {
      try {
        parseConfig(doc);
        return '';
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
    };
    expect(err({ ha: {} })).toMatch(/ha\.redis.*ha needs redis/);
    expect(err({ ha: { redis: 'http://x' } })).toMatch(/ha\.redis/);
    expect(err({ ha: { redis: 'redis://r:6379', initialRole: 'primary' } })).toMatch(/ha\.initialRole.*master, backup/);
    expect(err({ ha: { redis: 'redis://r:6379', notifyFifo: 'relative' } })).toMatch(/ha\.notifyFifo.*absolute/);
    expect(err({ ha: { redis: 'redis://r:6379', syncAfterMs: -1 } })).toMatch(/ha\.syncAfterMs/);
    expect(err({ ha: { redis: 'redis://r:6379', bogus: 1 } })).toMatch(/bogus/);
  });
});

describe("keepalived's notify FIFO lines", () => {
  it('maps states to roles, groups apart from instances', () => {
    expect(parseNotifyLine('GROUP "tunvs" MASTER')).toEqual({ role: 'master', group: true });
    expect(parseNotifyLine('INSTANCE "upstream" BACKUP 249')).toEqual({ role: 'backup', group: false });
    expect(parseNotifyLine('INSTANCE "servers" FAULT 0')).toEqual({ role: 'fault', group: false });
    expect(parseNotifyLine('GROUP "tunvs" STOP')).toEqual({ role: 'fault', group: true });
    expect(parseNotifyLine('INSTANCE "x" MASTER_RX_LOWER_PRI 100')).toBeNull();
    expect(parseNotifyLine('garbage')).toBeNull();
  });
});
