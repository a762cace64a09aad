import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  HmpError,
  MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
} from '../../src/errors.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { createStreamPair } from '../../src/testing/index.js';
import { rejectionOf } from './helpers.js';

interface Fixture {
  banner: string;
  replies: { command: string; raw: string; text: string; isError: boolean }[];
}
const fx: Fixture = JSON.parse(
  readFileSync(new URL('./fixtures/qemu-7.2.22-hmp.json', import.meta.url), 'utf8'),
);
const byCommand = new Map(fx.replies.map((r) => [r.command, r.raw]));

/** A fake HMP peer replaying QEMU 7.2.22's captured bytes; `hang` never answers until released. */
function fakeHmp(banner = fx.banner) {
  const [client, server] = createStreamPair();
  const lines: string[] = [];
  const held: string[] = [];
  let buf = '';
  server.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    let nl = buf.indexOf('\n');
    while (nl !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      const echo = `${line}\x1b[K\r\n`;
      if (line.startsWith('hang')) held.push(`${echo}done ${line}\r\n(qemu) `);
      else
        server.write(
          Buffer.from(
            byCommand.get(line) ?? `${echo}unknown command: '${line.split(' ')[0]}'\r\n(qemu) `,
            'latin1',
          ),
        );
      nl = buf.indexOf('\n');
    }
  });
  if (banner) server.write(Buffer.from(banner, 'latin1'));
  const release = () => {
    for (const h of held.splice(0)) server.write(h);
  };
  return { client, server, lines, release };
}

const open: HmpMonitor[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((m) => m.close()));
});
async function connect(client: Duplex, opts = {}) {
  const m = await HmpMonitor.fromStream(client, { description: 'fake.monitor', ...opts });
  open.push(m);
  return m;
}

describe('HmpMonitor (replaying QEMU 7.2.22 bytes)', () => {
  it('reads the version from the banner and returns clean output', async () => {
    const { client } = fakeHmp();
    const m = await connect(client);
    expect(m.protocol).toBe('hmp');
    expect(m.version).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(m.banner).toBe("QEMU 7.2.22 monitor - type 'help' for more information");
    expect(await m.command('info version')).toBe('7.2.22Debian 1:7.2+dfsg-7+deb12u18+b3\n');
    expect(await m.humanCommand('info status')).toBe('VM status: running\n');
    expect(await m.command('stop')).toBe('');
  });

  it('rejects HMP error text with HmpError naming the command', async () => {
    const { client } = fakeHmp();
    const m = await connect(client);
    const err = await rejectionOf(m.command('migrate_set_speed 10'));
    expect(err).toBeInstanceOf(HmpError);
    expect(err.command).toBe('migrate_set_speed 10');
    expect(err.text).toBe("unknown command: 'migrate_set_speed'");
    await expect(m.command('migrate_set_capability nope on')).rejects.toThrow(
      /invalid parameter value: nope/,
    );
    await expect(m.command('migrate_set_parameter downtime-limit bogus')).rejects.toThrow(HmpError);
    expect(await m.command('info status')).toBe('VM status: running\n');
  });

  it('runs queued commands one at a time, in order', async () => {
    const { client, lines } = fakeHmp();
    const m = await connect(client);
    const cmds = ['info status', 'info version', 'stop', 'info status', 'migrate_cancel'];
    const results = await Promise.all(cmds.map((c) => m.command(c)));
    expect(lines).toEqual(cmds);
    expect(results[1]).toContain('7.2.22');
    expect(results[2]).toBe('');
  });

  it('refuses command lines with CR or LF before sending anything', async () => {
    const { client, lines } = fakeHmp();
    const m = await connect(client);
    for (const bad of ['info status\nquit', 'stop\r', '\n']) {
      const err = await rejectionOf(m.command(bad));
      expect(err).toBeInstanceOf(HmpError);
      expect(err.command).toBe(bad);
      expect(err.message).toMatch(/must not contain/);
    }
    expect(lines).toEqual([]);
  });

  it('execute() is refused and waitForEvent() is rejected at once (no events over HMP)', async () => {
    const { client } = fakeHmp();
    const m = await connect(client);
    const err = await rejectionOf(m.execute('query-status'));
    expect(err).toBeInstanceOf(MonitorError);
    expect(err.message).toContain("'query-status'");
    const w = m.waitForEvent('STOP', { timeoutMs: 10_000 });
    await expect(w.promise).rejects.toThrow(/has no events/);
  });

  it('times out a command, drops its late reply and keeps later replies in step', async () => {
    const { client, release } = fakeHmp();
    const m = await connect(client);
    const err = await rejectionOf(m.command('hang 1', { timeoutMs: 50 }));
    expect(err).toBeInstanceOf(MonitorTimeoutError);
    expect(err.message).toContain("'hang 1'");
    expect(err.message).toContain('fake.monitor');
    const next = m.command('info status');
    release();
    expect(await next).toBe('VM status: running\n');
  });

  it('rejects queued commands with MonitorClosedError when the peer goes away', async () => {
    const { client, server } = fakeHmp();
    const m = await connect(client);
    const closes: unknown[] = [];
    m.on('close', (e) => closes.push(e));
    const p1 = rejectionOf(m.command('hang 2'));
    const p2 = rejectionOf(m.command('info status'));
    await new Promise((r) => setTimeout(r, 20));
    server.destroy();
    expect(await p1).toBeInstanceOf(MonitorClosedError);
    expect(await p2).toBeInstanceOf(MonitorClosedError);
    expect(m.closed).toBe(true);
    await m.close();
    expect(closes).toHaveLength(1);
  });

  it('closes with line-too-long as soon as a reply passes maxReplyBytes', async () => {
    const { client, server } = fakeHmp();
    const m = await connect(client, { maxReplyBytes: 16 * 1024 * 1024 });
    const closed = new Promise<Error | undefined>((r) => m.on('close', r));
    const pending = rejectionOf(m.command('hang'));
    const chunk = Buffer.alloc(1024 * 1024, 0x78);
    let written = 0;
    // Streams until the client hangs up: it must not wait for 64 MiB.
    while (!m.closed && written < 64 * 1024 * 1024) {
      if (!server.write(chunk)) await new Promise((r) => setImmediate(r));
      written += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    const err = await closed;
    expect(err).toBeInstanceOf(MonitorProtocolError);
    expect((err as MonitorProtocolError).reason).toBe('line-too-long');
    expect(err?.message).toMatch(/^HMP reply longer than 16777216 bytes/);
    expect(written).toBeLessThanOrEqual(18 * 1024 * 1024);
    const rejected = await pending;
    expect(rejected).toBeInstanceOf(MonitorClosedError);
    expect(rejected.cause).toBe(err);
  });

  it('close() is idempotent', async () => {
    const { client } = fakeHmp();
    const m = await connect(client);
    await Promise.all([m.close(), m.close()]);
    await expect(m.command('info status')).rejects.toBeInstanceOf(MonitorClosedError);
  });

  it('asks `info version` when the banner has no version', async () => {
    const { client, lines } = fakeHmp('monitor ready\r\n(qemu) ');
    const m = await connect(client);
    expect(m.version).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(lines).toEqual(['info version']);
  });

  it('times out without banner, and refuses a QMP socket', async () => {
    const a = fakeHmp('');
    await expect(HmpMonitor.fromStream(a.client, { greetingTimeoutMs: 50 })).rejects.toBeInstanceOf(
      MonitorTimeoutError,
    );
    const b = fakeHmp(
      '{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}}, "capabilities": []}}\r\n',
    );
    await expect(HmpMonitor.fromStream(b.client, { description: 'x.qmp' })).rejects.toThrow(
      'x.qmp is a QMP socket, not an HMP monitor',
    );
  });
});
