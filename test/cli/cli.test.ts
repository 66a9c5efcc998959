import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { distSrc } from '../../src/paths.js';

const cli = (...args: string[]): { code: number; out: string; err: string } => {
  const r = spawnSync(process.execPath, [join(distSrc(), 'cli', 'main.js'), ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
};

describe('tunvs command line', () => {
  it('--help after any command prints the usage and does nothing else', () => {
    const r = cli('lab', 'up', '--prefix', 'tq-', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage:');
    expect(existsSync('/run/tunvs-lab/tq-'), 'no lab was brought up').toBe(false);
    expect(cli('rs', 'status', '-h').out).toContain('Usage:');
  });

  it('an argument no option takes is refused with exit 2 and named', () => {
    const r = cli('list', '--stat');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^tunvs: unexpected argument: --stat\n/);
    expect(cli('lab', 'down', '--prefix', 'tq-', 'now', 'please').err).toMatch(/unexpected arguments: now please/);
  });

  it('a missing value or a bad number says what is wrong', () => {
    expect(cli('run').err).toMatch(/run needs --config FILE/);
    expect(cli('run', '--config', 'x.yaml', '--workers', '0').err).toMatch(
      /--workers must be a positive integer, got 0/,
    );
    expect(cli('run', '--config', 'x.yaml', '--workers', '65').err).toMatch(/--workers must be at most 64, got 65/);
    expect(cli('lab', 'load', '--duration', '601').err).toMatch(/at most 600 seconds/);
    expect(cli('frobnicate').code).toBe(2);
    const decap = cli('rs', 'decap', 'attach', '--dev', 'eth0', '--xdp-mode', 'offload');
    expect(decap.code).toBe(2);
    expect(decap.err).toMatch(/--xdp-mode is native or generic, and only for attach \(got offload\)/);
    const gue = cli('rs', 'decap', 'attach', '--dev', 'eth0', '--gue-port', '6080', '--gue-port', '70000');
    expect([gue.code, gue.err]).toEqual([2, expect.stringMatching(/--gue-port 70000: a UDP port \(1-65535\)/)]);
    const nine = Array.from({ length: 9 }, (_, k) => ['--gue-port', String(6080 + k)]).flat();
    expect(cli('rs', 'decap', 'attach', '--dev', 'eth0', ...nine).err).toMatch(/at most 8 ports \(got 9\)/);
    expect(cli('rs', 'decap', 'detach', '--dev', 'eth0', '--gue-port', '6080').err).toMatch(
      /--gue-port is only for attach/,
    );
    const conns = cli('conns', '--protocol', 'sctp');
    expect(conns.code).toBe(2);
    expect(conns.err).toMatch(/^tunvs: --protocol must be tcp or udp, not sctp\n/);
    const state = cli('conns', '--state', 'establised');
    expect(state.code).toBe(2);
    expect(state.err).toMatch(/^tunvs: --state must be one of ESTABLISHED, .*TEMPLATE \(any case\), not establised\n/);
  });
});
