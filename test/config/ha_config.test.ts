import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { HA_DEFAULTS, parseConfig } from '../../src/config/config.js';
import { ConfigError } from '../../src/config/errors.js';
import { parseNotifyLine } from '../../src/ha/notify_fifo.js';

describe('ha config', () => {
  it('defaults, and absent means no pair', () => {
    expect(parseConfig({}).ha).toBeUndefined();
    expect(parseConfig({ ha: { redis: 'redis://198.18.20.30:6379', nodeId: 1 } }).ha).toEqual({
      redis: { url: 'redis://198.18.20.30:6379' },
      nodeId: 1,
      name: hostname(),
      ...HA_DEFAULTS,
    });
  });

  it('a cluster node, through Redis Sentinel', () => {
    const ha = parseConfig({
      ha: {
        mode: 'cluster',
        nodeId: 3,
        name: 'lb-c',
        sentinel: { name: 'tunvs', addresses: ['198.18.20.31:26379', '[fd18:18:20::32]:26379'] },
      },
    }).ha;
    expect(ha).toMatchObject({
      mode: 'cluster',
      nodeId: 3,
      name: 'lb-c',
      routeHealth: 'off',
      redis: {
        sentinel: {
          name: 'tunvs',
          addresses: [
            { host: '198.18.20.31', port: 26379 },
            { host: 'fd18:18:20::32', port: 26379 },
          ],
        },
      },
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
    const r = { redis: 'redis://r:6379', nodeId: 1 };
    expect(err({ ha: { nodeId: 1 } })).toMatch(/ha\.redis.*ha needs one of redis: .* or sentinel/);
    expect(err({ ha: { ...r, sentinel: { name: 'x', addresses: ['h:1'] } } })).toMatch(/ha\.redis.*one of/);
    expect(err({ ha: { ...r, redis: 'http://x' } })).toMatch(/ha\.redis/);
    expect(err({ ha: { ...r, initialRole: 'primary' } })).toMatch(/ha\.initialRole.*master, backup/);
    expect(err({ ha: { ...r, notifyFifo: 'relative' } })).toMatch(/ha\.notifyFifo.*absolute/);
    expect(err({ ha: { ...r, syncAfterMs: -1 } })).toMatch(/ha\.syncAfterMs/);
    expect(err({ ha: { ...r, bogus: 1 } })).toMatch(/bogus/);
    expect(err({ ha: { redis: 'redis://r:6379' } })).toMatch(
      /ha\.nodeId: give every node of the pair an id of its own, 1\.\.63/,
    );
    expect(err({ ha: { ...r, nodeId: 64 } })).toMatch(/ha\.nodeId: 64 is not valid: use a node id 1\.\.63/);
    expect(err({ ha: { ...r, mode: 'mesh' } })).toMatch(/ha\.mode.*pair, cluster/);
    expect(err({ ha: { ...r, mode: 'cluster', initialRole: 'master' } })).toMatch(
      /ha\.initialRole: a cluster node has no VRRP role/,
    );
    expect(err({ ha: { ...r, name: 'two words' } })).toMatch(/ha\.name/);
    expect(err({ ha: { ...r, drainMs: 500 } })).toMatch(/ha\.drainMs: drainMs is for mode: cluster/);
    expect(err({ ha: { ...r, mode: 'cluster', drainMs: -1 } })).toMatch(/ha\.drainMs: -1 is not valid/);
    expect(err({ ha: { ...r, routeHealth: 'any' } })).toMatch(/ha\.routeHealth: routeHealth is for mode: cluster/);
    expect(err({ ha: { ...r, mode: 'cluster', routeHealth: 'some' } })).toMatch(/ha\.routeHealth.*off, any, all/);
    const sentinel = (s: unknown): string => err({ ha: { nodeId: 1, sentinel: s } });
    expect(sentinel({ name: 'x', addresses: [] })).toMatch(/ha\.sentinel\.addresses: name at least one Sentinel/);
    expect(sentinel({ name: 'x', addresses: ['nohost'] })).toMatch(/ha\.sentinel\.addresses\[0\].*not host:port/);
    expect(sentinel({ addresses: ['h:1'] })).toMatch(/ha\.sentinel\.name/);
    expect(sentinel('redis://x')).toMatch(/ha\.sentinel.*not a mapping/);
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
