/**
 * The udp, dns, smtp and exec health checks against real servers and real processes on
 * loopback, the monitor taking an exec check's weight, and the config's refusals.
 */

import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { runCheck } from '../../src/control/checks/index.js';
import { HealthMonitor } from '../../src/control/health.js';
import {
  HEALTH_DEFAULT,
  IdRegistry,
  resolveServices,
  type HealthCheckSpec,
  type ResolvedService,
} from '../../src/service/service.js';

async function probe(spec: Partial<HealthCheckSpec>, port: number): Promise<string | undefined> {
  const r = await runCheck({ ...HEALTH_DEFAULT, ...spec }, { address: '127.0.0.1', port, service: 'web' });
  return r.ok ? undefined : r.error;
}

/** A loopback port nothing listens on (for UDP or TCP). */
async function closedUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(r));
  return port;
}

/**
 * A check against a closed loopback UDP port: its error and how long it took. Tests run beside
 * this one may bind that port between closedUdpPort's close and the probe (their socket hears
 * the query and says nothing: silence, or a timeout), so that outcome is tried again on another
 * port, twice at most.
 */
async function probeClosed(spec: Partial<HealthCheckSpec>): Promise<{ error: string | undefined; ms: number }> {
  for (let tries = 1; ; tries++) {
    const t0 = Date.now();
    const error = await probe(spec, await closedUdpPort());
    const silent = error === undefined || error.includes('within 1 s');
    if (!silent || tries === 3) return { error, ms: Date.now() - t0 };
  }
}

let dir: string;
let udp: UdpSocket;
let udpPort = 0;
let silent: UdpSocket;
let silentPort = 0;
let dns: UdpSocket;
let dnsPort = 0;
const dnsAsked: { name: string; type: number; rd: boolean }[] = [];
let smtp: Server;
let smtpPort = 0;
let smtpGreeting = '220-mail.example ESMTP\r\n220 ready\r\n';
let smtpHelo = '250 mail.example\r\n';
const helos: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tunvs-checks-'));
  chmodSync(dir, 0o755);
  // udp: answers "pong" + what it got; `silent` never answers.
  udp = createSocket('udp4');
  udp.on('message', (m, r) => udp.send(Buffer.concat([Buffer.from('pong'), m]), r.port, r.address));
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  udpPort = udp.address().port;
  silent = createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  silentPort = silent.address().port;
  // dns: answers first with a wrong id (to be ignored), then NOERROR for names under
  // ok.example and the root, NXDOMAIN otherwise.
  dns = createSocket('udp4');
  dns.on('message', (m, r) => {
    const labels: string[] = [];
    let o = 12;
    while (m[o]! > 0) {
      labels.push(m.toString('latin1', o + 1, o + 1 + m[o]!));
      o += 1 + m[o]!;
    }
    const name = labels.join('.') || '.';
    dnsAsked.push({ name, type: m.readUInt16BE(o + 1), rd: (m.readUInt16BE(2) & 0x0100) !== 0 });
    const answer = (id: number, rcode: number): Buffer => {
      const a = Buffer.from(m);
      a.writeUInt16BE(id, 0);
      a.writeUInt16BE(0x8180 | rcode, 2);
      return a;
    };
    dns.send(answer(m.readUInt16BE(0) ^ 0xffff, 0), r.port, r.address);
    dns.send(answer(m.readUInt16BE(0), name === '.' || name.endsWith('ok.example') ? 0 : 3), r.port, r.address);
  });
  await new Promise<void>((r) => dns.bind(0, '127.0.0.1', r));
  dnsPort = dns.address().port;
  smtp = createServer((c) => {
    c.setEncoding('latin1');
    c.write(smtpGreeting);
    c.on('data', (d: string) => {
      if (d.startsWith('HELO ')) {
        helos.push(d.trim());
        c.write(smtpHelo);
      } else if (d.startsWith('QUIT')) c.end('221 bye\r\n');
    });
    c.on('error', () => {});
  });
  await new Promise<void>((r) => smtp.listen(0, '127.0.0.1', r));
  smtpPort = (smtp.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const s of [udp, silent, dns]) await new Promise<void>((r) => s.close(r));
  await new Promise<void>((r) => smtp.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

/** An executable shell script in the test's directory. */
function script(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

describe('udp check', () => {
  it('a reply is needed only with expectReply, and then must begin with it', async () => {
    expect(await probe({ type: 'udp', payload: '70696e67' }, udpPort)).toBeUndefined();
    expect(await probe({ type: 'udp', payload: '70696e67', expectReply: '' }, udpPort)).toBeUndefined();
    expect(await probe({ type: 'udp', payload: '0102', expectReply: '706f6e670102' }, udpPort)).toBeUndefined();
    expect(await probe({ type: 'udp', payload: '0102', expectReply: '706f6e670103' }, udpPort)).toBe(
      'reply 706f6e670102 does not begin with 706f6e670103',
    );
  });

  it('silence passes without expectReply and fails with it; a closed port fails at once', async () => {
    expect(await probe({ type: 'udp' }, silentPort)).toBeUndefined();
    expect(await probe({ type: 'udp', expectReply: '' }, silentPort)).toBe('no reply within 1 s');
    const closed = await probeClosed({ type: 'udp', payload: '00' });
    expect(closed.error).toBe('udp: ECONNREFUSED');
    expect(closed.ms).toBeLessThan(500);
  });
});

describe('dns check', () => {
  it('passes on NOERROR, fails on NXDOMAIN, ignores an answer with another id', async () => {
    expect(await probe({ type: 'dns' }, dnsPort)).toBeUndefined();
    expect(dnsAsked.at(-1)).toEqual({ name: '.', type: 6, rd: true });
    expect(await probe({ type: 'dns', query: 'www.ok.example', queryType: 'AAAA' }, dnsPort)).toBeUndefined();
    expect(dnsAsked.at(-1)).toEqual({ name: 'www.ok.example', type: 28, rd: true });
    expect(await probe({ type: 'dns', query: 'nowhere.example.', queryType: 'A' }, dnsPort)).toBe(
      'dns: answer NXDOMAIN',
    );
    expect(dnsAsked.at(-1)).toEqual({ name: 'nowhere.example', type: 1, rd: true });
  });

  it('no answer fails at the timeout; a closed port at once', async () => {
    expect(await probe({ type: 'dns' }, silentPort)).toBe('no answer within 1 s');
    expect((await probeClosed({ type: 'dns' })).error).toBe('dns: ECONNREFUSED');
  });
});

describe('smtp check', () => {
  it('the greeting (over two lines), HELO with the name, 250', async () => {
    expect(await probe({ type: 'smtp', helo: 'lb-a.example' }, smtpPort)).toBeUndefined();
    expect(helos.at(-1)).toBe('HELO lb-a.example');
  });

  it('a greeting other than 220, or HELO refused, fails', async () => {
    smtpGreeting = '554 no service\r\n';
    expect(await probe({ type: 'smtp' }, smtpPort)).toBe('smtp: greeting 554, expected 220');
    smtpGreeting = '220 ready\r\n';
    smtpHelo = '501 bad name\r\n';
    expect(await probe({ type: 'smtp' }, smtpPort)).toBe('smtp: HELO answered 501, expected 250');
    smtpHelo = '250 mail.example\r\n';
  });
});

describe('exec check', () => {
  it('exit 0 passes, 1 fails; the server is in the environment', async () => {
    const env = join(dir, 'env');
    const ok = script('ok.sh', `echo "$TUNVS_CHECK_ADDRESS $TUNVS_CHECK_PORT $TUNVS_CHECK_SERVICE" > ${env}\nexit 0`);
    expect(await probe({ type: 'exec', command: [ok] }, 8080)).toBeUndefined();
    expect(readFileSync(env, 'utf8')).toBe('127.0.0.1 8080 web\n');
    expect(await probe({ type: 'exec', command: [script('bad.sh', 'exit 1')] }, 8080)).toBe(
      'exec: exited with status 1',
    );
    expect(await probe({ type: 'exec', command: [join(dir, 'missing')] }, 8080)).toBe('exec: ENOENT');
  });

  it('arguments go as given, without a shell', async () => {
    const out = join(dir, 'args');
    const echo = script('args.sh', `printf '%s|' "$@" > ${out}`);
    expect(await probe({ type: 'exec', command: [echo, 'a b', '$HOME', '*'] }, 1)).toBeUndefined();
    expect(readFileSync(out, 'utf8')).toBe('a b|$HOME|*|');
  });

  it('dynamicWeight: exit 2..255 passes with the weight status − 2; without it they fail', async () => {
    const seven = script('seven.sh', 'exit 7');
    const r = await runCheck(
      { ...HEALTH_DEFAULT, type: 'exec', command: [seven], dynamicWeight: true },
      { address: '127.0.0.1', port: 1, service: 'web' },
    );
    expect(r).toEqual({ ok: true, weight: 5 });
    expect(await probe({ type: 'exec', command: [seven] }, 1)).toBe('exec: exited with status 7');
    expect(await probe({ type: 'exec', command: [script('one.sh', 'exit 1')], dynamicWeight: true }, 1)).toBe(
      'exec: exited with status 1',
    );
  });

  it('past its timeout the command and what it started are stopped, and the check fails', async () => {
    const pids = join(dir, 'pids');
    const slow = script('slow.sh', `sleep 30 &\necho "$$ $!" > ${pids}\nwait`);
    const t0 = Date.now();
    expect(await probe({ type: 'exec', command: [slow], timeout: 1 }, 1)).toBe('exec: timed out after 1 s');
    expect(Date.now() - t0).toBeLessThan(1500);
    const [shell, sleeper] = readFileSync(pids, 'utf8').trim().split(' ').map(Number);
    const deadline = Date.now() + 3000;
    while ((existsSync(`/proc/${shell}`) || existsSync(`/proc/${sleeper}`)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    expect(existsSync(`/proc/${shell}`)).toBe(false);
    expect(existsSync(`/proc/${sleeper}`)).toBe(false);
  });

  it('user: the command runs as that user', async () => {
    const out = join(dir, 'uid');
    writeFileSync(out, '');
    chmodSync(out, 0o666);
    const who = script('who.sh', `id -u > ${out}`);
    expect(await probe({ type: 'exec', command: [who], user: 'nobody' }, 1)).toBeUndefined();
    expect(readFileSync(out, 'utf8').trim()).toBe(execId('nobody'));
  });

  it('commands start from the command runner, not from tunvs; a runner that dies fails its commands and is started again', async () => {
    const parent = join(dir, 'ppid');
    const who = script('ppid.sh', `echo $PPID > ${parent}\nsleep 5`);
    const slow = probe({ type: 'exec', command: [who], timeout: 10 }, 1);
    const deadline = Date.now() + 3000;
    while (!(existsSync(parent) && readFileSync(parent, 'utf8').endsWith('\n')) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const runner = Number(readFileSync(parent, 'utf8'));
    expect(runner).not.toBe(process.pid);
    expect(readFileSync(`/proc/${runner}/cmdline`, 'utf8')).toContain('command_runner.js');
    process.kill(runner, 'SIGKILL');
    expect(await slow).toMatch(/^exec: the command runner exited \(SIGKILL\)$/);
    rmSync(parent);
    expect(await probe({ type: 'exec', command: [script('quick.sh', `echo $PPID > ${parent}`)] }, 1)).toBeUndefined();
    const again = Number(readFileSync(parent, 'utf8'));
    expect(again).not.toBe(runner);
    expect(readFileSync(`/proc/${again}/cmdline`, 'utf8')).toContain('command_runner.js');
  });

  it('a stuck runner (SIGSTOP): its command fails once the timeout, the kill grace and 2 s are past, and a new runner runs the next', async () => {
    const parent = join(dir, 'ppid2');
    const quick = script('quick2.sh', `echo $PPID > ${parent}`);
    expect(await probe({ type: 'exec', command: [quick] }, 1)).toBeUndefined();
    const stuck = Number(readFileSync(parent, 'utf8'));
    process.kill(stuck, 'SIGSTOP');
    try {
      const t0 = Date.now();
      expect(await probe({ type: 'exec', command: [quick], timeout: 1 }, 1)).toBe(
        'exec: timed out after 1 s (the command runner did not answer)',
      );
      expect(Date.now() - t0).toBeGreaterThanOrEqual(3900);
      rmSync(parent);
      expect(await probe({ type: 'exec', command: [quick] }, 1)).toBeUndefined();
      expect(Number(readFileSync(parent, 'utf8'))).not.toBe(stuck);
    } finally {
      try {
        process.kill(stuck, 'SIGKILL');
      } catch {
        // killed as stuck already
      }
    }
  });
});

function execId(user: string): string {
  return String(
    Number(
      readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .find((l) => l.startsWith(`${user}:`))!
        .split(':')[2],
    ),
  );
}

/** Service "web" (198.18.0.100:80, FULLNAT) with these fields, resolved. */
function webService(fields: object, ids = new IdRegistry()): ResolvedService[] {
  return resolveServices(
    parseConfig({
      services: [{ name: 'web', vip: '198.18.0.100', port: 80, localAddresses: ['198.18.2.1'], ...fields }],
    }).services,
    ids,
  );
}

describe('the monitor and a dynamic weight', () => {
  it('an exec check with dynamicWeight sets the weight the forwarders see; down is still 0', async () => {
    const state = join(dir, 'state');
    writeFileSync(state, '12');
    const dyn = script('dyn.sh', `exit $(cat ${state})`);
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080, weight: 3 }],
      healthCheck: { type: 'exec', command: [dyn], dynamicWeight: true, interval: 1, timeout: 1, fall: 1, rise: 1 },
    });
    const changes: { up: boolean }[] = [];
    const logs: string[] = [];
    const mon = new HealthMonitor({ log: (_l, m) => logs.push(m) }, (_s, _r, up) => changes.push({ up }));
    const weight = (): number => mon.effective(services)[0]!.realServers[0]!.weight;
    try {
      expect(weight()).toBe(3);
      mon.sync(services);
      await until(() => weight() === 10);
      expect(changes).toEqual([{ up: true }]);
      expect(logs).toContain("health: web 127.0.0.1:8080 weight 10 (from the check's exit status)");
      writeFileSync(state, '1');
      await until(() => weight() === 0);
      expect(changes.at(-1)).toEqual({ up: false });
      writeFileSync(state, '0');
      // Back up: exit 0 leaves the weight the check set last (as keepalived's misc_dynamic).
      await until(() => weight() === 10);
      expect(changes.at(-1)).toEqual({ up: true });
    } finally {
      mon.stop();
    }
  });
});

describe('the monitor: retries and servers that start down', () => {
  it('retryInterval: after a failure the next checks come sooner, so fall failures take less than fall × interval', async () => {
    const bad = script('always-bad.sh', 'exit 1');
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080 }],
      healthCheck: { type: 'exec', command: [bad], interval: 10, retryInterval: 1, timeout: 1, fall: 3, rise: 1 },
    });
    const mon = new HealthMonitor({ log: () => {} }, () => {});
    const t0 = Date.now();
    try {
      mon.sync(services);
      await until(() => mon.state(services[0]!.id, services[0]!.realServers[0]!.id)?.up === false, 8000);
      // Checks at 0, 1 and 2 s: down after ~2 s (every interval, it would take 20 s).
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(mon.state(services[0]!.id, services[0]!.realServers[0]!.id)?.checks).toBe(3);
    } finally {
      mon.stop();
    }
  });

  it('startDown: a server takes no sessions until it has passed rise checks', async () => {
    const good = script('always-good.sh', 'exit 0');
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080, weight: 2 }],
      healthCheck: { type: 'exec', command: [good], interval: 1, timeout: 1, rise: 2, startDown: true },
    });
    const mon = new HealthMonitor({ log: () => {} }, () => {});
    const weight = (): number => mon.effective(services)[0]!.realServers[0]!.weight;
    try {
      mon.sync(services);
      expect(weight()).toBe(0);
      await until(() => weight() === 2, 5000);
      expect(mon.state(services[0]!.id, services[0]!.realServers[0]!.id)?.checks).toBe(2);
    } finally {
      mon.stop();
    }
  });
});

describe('the monitor: notifications', () => {
  it('notifyDown and notifyUp run when a server goes down and up, with the event and the server', async () => {
    const state = join(dir, 'notify-state');
    const events = join(dir, 'events');
    writeFileSync(state, '0');
    writeFileSync(events, '');
    const check = script('notify-check.sh', `exit $(cat ${state})`);
    const note = script('note.sh', `echo "$TUNVS_EVENT $1 $TUNVS_CHECK_SERVICE" >> ${events}`);
    const failing = script('note-fails.sh', 'exit 3');
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080 }],
      healthCheck: {
        type: 'exec',
        command: [check],
        interval: 1,
        timeout: 1,
        fall: 1,
        rise: 1,
        notifyDown: [note, '{address}:{port}'],
        notifyUp: [failing],
      },
    });
    const logs: string[] = [];
    const mon = new HealthMonitor({ log: (_l, m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`) }, () => {});
    try {
      mon.sync(services);
      writeFileSync(state, '1');
      await until(() => readFileSync(events, 'utf8') !== '');
      expect(readFileSync(events, 'utf8')).toBe('down 127.0.0.1:8080 web\n');
      writeFileSync(state, '0');
      await until(() => logs.some((l) => l.includes('notifyUp')));
      expect(logs.find((l) => l.includes('notifyUp'))).toBe(
        `health: web 127.0.0.1:8080: notifyUp ${failing} failed {"status":3}`,
      );
    } finally {
      mon.stop();
    }
  });
});

describe('the monitor: quorum commands', () => {
  it('quorumDown runs at a start without the quorum and when it is lost, quorumUp when it is back, in order', async () => {
    for (const port of [8081, 8082]) writeFileSync(join(dir, `q${port}`), '0');
    writeFileSync(join(dir, 'q8082'), '1');
    const events = join(dir, 'quorum-events');
    writeFileSync(events, '');
    const check = script('quorum-check.sh', `exit $(cat ${dir}/q$1)`);
    const note = script(
      'quorum-note.sh',
      `echo "$TUNVS_EVENT $1 $TUNVS_CHECK_SERVICE $TUNVS_QUORUM_WEIGHT" >> ${events}`,
    );
    const services = webService({
      realServers: [
        { address: '127.0.0.1', port: 8081 },
        { address: '127.0.0.1', port: 8082 },
      ],
      healthCheck: {
        type: 'exec',
        command: [check, '{port}'],
        interval: 1,
        timeout: 1,
        fall: 1,
        rise: 1,
        startDown: true,
      },
      quorum: 2,
      quorumUp: [note, '{address}:{port}'],
      quorumDown: [note, '{address}:{port}'],
    });
    const id = services[0]!.id;
    const logs: string[] = [];
    const mon = new HealthMonitor(
      { log: (_l, m) => logs.push(m) },
      () => void mon.effective(services), // as the runtime's push to the forwarders
    );
    const lines = (): string[] =>
      readFileSync(events, 'utf8')
        .split('\n')
        .filter((l) => l !== '');
    try {
      mon.sync(services);
      mon.effective(services); // the start: both servers down until they pass
      expect(mon.hasQuorum(id)).toBe(false);
      await until(() => lines().length === 1);
      // 8081 passes, 8082 fails: weights up 1 < 2, no change. Then 8082 passes: 2.
      await until(() => mon.state(id, services[0]!.realServers[0]!.id)?.up === true);
      expect(mon.hasQuorum(id)).toBe(false);
      writeFileSync(join(dir, 'q8082'), '0');
      await until(() => lines().length === 2);
      expect(mon.hasQuorum(id)).toBe(true);
      writeFileSync(join(dir, 'q8081'), '1');
      await until(() => lines().length === 3);
      expect(mon.hasQuorum(id)).toBe(false);
      // No sorry server: the servers up keep their weights.
      expect(mon.effective(services)[0]!.realServers.map((r) => r.weight)).toEqual([0, 1]);
      expect(lines()).toEqual([
        'quorum-down 198.18.0.100:80 web 0',
        'quorum-up 198.18.0.100:80 web 2',
        'quorum-down 198.18.0.100:80 web 1',
      ]);
      expect(logs.filter((l) => l.includes('quorum'))).toEqual([
        'health: web starts without its quorum (weights up 0 < 2)',
        'health: web has its quorum again (weights up 2 ≥ 2)',
        'health: web lost its quorum (weights up 1 < 2)',
      ]);
    } finally {
      mon.stop();
    }
  });

  it('a failing quorum command is logged', async () => {
    const failing = script('quorum-fails.sh', 'exit 4');
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080, weight: 0 }],
      quorumDown: [failing],
    });
    const logs: string[] = [];
    const mon = new HealthMonitor({ log: (_l, m, f) => logs.push(`${m} ${JSON.stringify(f ?? {})}`) }, () => {});
    mon.effective(services);
    await until(() => logs.some((l) => l.includes('failed')));
    expect(logs).toEqual([
      'health: web starts without its quorum (weights up 0 < 1) {}',
      `health: web: quorumDown ${failing} failed {"status":4}`,
    ]);
  });
});

describe("the monitor keeping every service's quorum (a cluster's route health)", () => {
  it('follows a service without a sorry server or a quorum command only when asked; the weights stay', () => {
    const ids = new IdRegistry();
    const web = (w: number) => webService({ realServers: [{ address: '198.18.20.21', port: 8080, weight: w }] }, ids);
    let all = false;
    const logs: string[] = [];
    const mon = new HealthMonitor(
      { log: (_l, m) => logs.push(m) },
      () => {},
      () => all,
    );
    const id = web(1)[0]!.id;
    mon.effective(web(1));
    expect(mon.hasQuorum(id)).toBeUndefined();
    all = true;
    expect(mon.effective(web(1))[0]!.realServers[0]!.weight).toBe(1);
    expect(mon.hasQuorum(id)).toBe(true);
    expect(mon.effective(web(0))[0]!.realServers[0]!.weight).toBe(0); // drained: no server left
    expect(mon.hasQuorum(id)).toBe(false);
    expect(logs).toEqual(['health: web lost its quorum (weights up 0 < 1)']);
  });
});

describe('the monitor and a sorry server', () => {
  /** web with rs1, rs2 at these weights and a sorry server; the same ids every time. */
  const ids = new IdRegistry();
  const web = (w1: number, w2: number, quorum?: object) =>
    webService(
      {
        realServers: [
          { address: '198.18.20.21', port: 8080, weight: w1 },
          { address: '198.18.20.22', port: 8080, weight: w2 },
        ],
        sorryServer: { address: '198.18.20.99', port: 8080 },
        ...quorum,
      },
      ids,
    );

  it('takes the new sessions when the weights up fall under the quorum, with hysteresis both ways', () => {
    const logs: string[] = [];
    const mon = new HealthMonitor({ log: (_l, m) => logs.push(m) }, () => {});
    const seen = (w1: number, w2: number): number[] =>
      mon.effective(web(w1, w2, { quorum: 3, hysteresis: 1 }))[0]!.realServers.map((r) => r.weight);
    expect(seen(2, 2)).toEqual([2, 2, 0]); // 4 ≥ quorum + hysteresis: up
    expect(mon.hasQuorum(web(2, 2)[0]!.id)).toBe(true);
    expect(seen(2, 0)).toEqual([2, 0, 0]); // 2 ≥ quorum − hysteresis: still up
    expect(seen(1, 0)).toEqual([0, 0, 1]); // 1 < 2: lost, every real server out
    expect(mon.hasQuorum(web(1, 0)[0]!.id)).toBe(false);
    expect(seen(3, 0)).toEqual([0, 0, 1]); // 3 < quorum + hysteresis: still lost
    expect(seen(3, 1)).toEqual([3, 1, 0]); // 4: regained
    expect(logs).toEqual([
      'health: web lost its quorum (weights up 1 < 2): new sessions to the sorry server 198.18.20.99:8080',
      'health: web has its quorum again (weights up 4 ≥ 4): new sessions to its real servers',
    ]);
  });

  it('by default (quorum 1) it stands in when every server is down or drained; it is never checked', async () => {
    const state = join(dir, 'sorry-state');
    writeFileSync(state, '0');
    const check = script('sorry.sh', `exit $(cat ${state})`);
    const services = webService({
      realServers: [{ address: '127.0.0.1', port: 8080 }],
      sorryServer: { address: '127.0.0.2', port: 8080 },
      healthCheck: { type: 'exec', command: [check], interval: 1, timeout: 1, fall: 1, rise: 1 },
    });
    const mon = new HealthMonitor({ log: () => {} }, () => {});
    const weights = (): number[] => mon.effective(services)[0]!.realServers.map((r) => r.weight);
    try {
      mon.sync(services);
      expect(weights()).toEqual([1, 0]);
      expect(mon.state(services[0]!.id, services[0]!.realServers[1]!.id)).toBeUndefined();
      writeFileSync(state, '1');
      await until(() => weights()[1] === 1);
      expect(weights()).toEqual([0, 1]);
      writeFileSync(state, '0');
      await until(() => weights()[0] === 1);
      expect(weights()).toEqual([1, 0]);
      expect(mon.effective(web(0, 0))[0]!.realServers.map((r) => r.weight)).toEqual([0, 0, 1]);
    } finally {
      mon.stop();
    }
  });
});

async function until(ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('config: a sorry server', () => {
  const svc = (o: object) => webService({ realServers: [{ address: '198.18.20.21', port: 8080 }], ...o })[0]!;

  it('is the last real server, at weight 0, marked', () => {
    const s = svc({ sorryServer: { address: '198.18.20.99', port: 80 }, quorum: 2, hysteresis: 1 });
    expect(s.realServers.map((r) => [r.address, r.port, r.weight, r.sorry])).toEqual([
      ['198.18.20.21', 8080, 1, undefined],
      ['198.18.20.99', 80, 0, true],
    ]);
    expect([s.quorum, s.hysteresis]).toEqual([2, 1]);
  });

  it('is refused as one of the real servers, or of the other family', () => {
    expect(() => svc({ sorryServer: { address: '198.18.20.21', port: 8080 } })).toThrow(
      /services\[0\]\.sorryServer: 198\.18\.20\.21:8080 is one of the real servers/,
    );
    expect(() => svc({ sorryServer: { address: 'fd18::99', port: 80 } })).toThrow(/sorryServer\.address: .*IPv6/);
    expect(() => svc({ sorryServer: { address: '198.18.20.99' } })).toThrow(/a sorry server needs address and port/);
    expect(svc({ quorum: 2 })).toMatchObject({ quorum: 2, hysteresis: 0 }); // a cluster's route health reads it
    expect(svc({ quorum: 2, hysteresis: 1, quorumUp: ['/bin/true'] })).toMatchObject({
      quorum: 2,
      hysteresis: 1,
      quorumUp: ['/bin/true'],
    });
    expect(() => svc({ quorumDown: ['withdraw.sh'] })).toThrow(
      /services\[0\]\.quorumDown: name the program by its absolute path/,
    );
    expect(() => svc({ sorryServer: { address: '198.18.20.99', port: 80 }, quorum: 2, hysteresis: 2 })).toThrow(
      /hysteresis: 2 is not valid: use an integer 0\.\.quorum − 1/,
    );
  });
});

describe('config: a check takes the fields of its type', () => {
  const cfg = (healthCheck: object) =>
    parseConfig({
      services: [{ vip: '198.18.0.100', port: 53, realServers: [{ address: '198.18.1.11', port: 53 }], healthCheck }],
    }).services[0]!.healthCheck;

  it('takes each type with its fields', () => {
    expect(cfg({ type: 'udp', payload: 'de ad BE EF', expectReply: '' })).toMatchObject({
      type: 'udp',
      payload: 'deadbeef',
      expectReply: '',
    });
    expect(cfg({ type: 'dns', query: 'www.example.com.', queryType: 'A' })).toMatchObject({
      query: 'www.example.com.',
    });
    expect(cfg({ type: 'smtp', helo: 'lb.example' })).toMatchObject({ helo: 'lb.example' });
    expect(cfg({ type: 'exec', command: ['/bin/true', 8080], user: 'nobody', dynamicWeight: true })).toMatchObject({
      command: ['/bin/true', '8080'],
      user: 'nobody',
    });
    expect(cfg({ type: 'http', expectBodyMatch: 'ok|up', expectBodyMd5: 'A'.repeat(32) })).toMatchObject({
      expectBodyMd5: 'a'.repeat(32),
    });
  });

  it('refuses what a type does not take, and bad values, naming the field', () => {
    expect(() => cfg({ type: 'tcp', path: '/x' })).toThrow(
      /healthCheck\.path: a tcp check takes no path: it is for type http or https/,
    );
    expect(() => cfg({ type: 'http', command: ['/bin/true'] })).toThrow(/it is for type exec/);
    expect(() => cfg({ type: 'exec' })).toThrow(/healthCheck\.command: an exec check needs a command/);
    expect(() => cfg({ type: 'exec', command: ['true'] })).toThrow(/absolute path/);
    expect(() => cfg({ type: 'exec', command: ['/bin/true'], user: 'no-such-user-tunvs' })).toThrow(
      /healthCheck\.user: no user no-such-user-tunvs on this system/,
    );
    expect(() => cfg({ type: 'udp', payload: 'abc' })).toThrow(/healthCheck\.payload: .*hex/);
    expect(() => cfg({ type: 'http', expectBodyMatch: '(' })).toThrow(/not a regular expression/);
    expect(() => cfg({ type: 'http', expectBodyMd5: 'abc' })).toThrow(/MD5/);
    expect(() => cfg({ type: 'dns', queryType: 'PTR' })).toThrow(/healthCheck\.queryType/);
    expect(() => cfg({ type: 'dns', query: 'a..b' })).toThrow(/not a DNS name/);
    expect(() => cfg({ type: 'tcp', interval: 2, retryInterval: 3 })).toThrow(
      /healthCheck\.retryInterval: 3 is longer than interval 2/,
    );
  });
});
