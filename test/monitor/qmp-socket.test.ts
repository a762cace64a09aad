import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  HmpError,
  MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  MonitorTimeoutError,
  QmpArgumentsError,
  QmpError,
} from '../../src/errors.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { connectTransport } from '../../src/monitor/transport.js';
import type { MonitorEvent } from '../../src/monitor/types.js';
import {
  createStreamPair,
  FakeQmpServer,
  type FakeQmpServerOptions,
  QmpInputSplitter,
} from '../../src/testing/index.js';
import { rejectionOf } from './helpers.js';

const servers: FakeQmpServer[] = [];
const monitors: QmpMonitor[] = [];
afterEach(async () => {
  await Promise.all(monitors.splice(0).map((m) => m.close()));
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function setup(
  opts: FakeQmpServerOptions = {},
  monOpts: Parameters<typeof QmpMonitor.connect>[1] = {},
) {
  const server = await FakeQmpServer.start(opts);
  servers.push(server);
  const mon = await QmpMonitor.connect({ path: server.path }, monOpts);
  monitors.push(mon);
  return { server, mon };
}

function logger() {
  return { debug: vi.fn(), warn: vi.fn() };
}

describe('QmpMonitor over a UNIX socket (FakeQmpServer)', () => {
  it('reads the greeting, negotiates, and sends commands without ids (replies come in order)', async () => {
    const log = logger();
    const { server, mon } = await setup({ version: { major: 2, minor: 8, micro: 1 } }, { logger: log });
    expect(mon.protocol).toBe('qmp');
    expect(mon.version).toEqual({ major: 2, minor: 8, micro: 1 });
    expect(mon.greeting).toEqual({
      version: { major: 2, minor: 8, micro: 1 },
      package: 'fake',
      capabilities: ['oob'],
    });
    expect(await mon.execute('query-status')).toEqual({ status: 'running', running: true });
    expect(await mon.execute('query-status', { x: 1 })).toEqual({ status: 'running', running: true });
    expect(server.received).toEqual([
      { execute: 'qmp_capabilities' },
      { execute: 'query-status' },
      { execute: 'query-status', arguments: { x: 1 } },
    ]);
    expect(log.debug).toHaveBeenCalledWith(
      expect.objectContaining({ seq: 2, command: { execute: 'query-status' } }),
      'QMP send query-status',
    );
  });

  it('accepts a pino logger', async () => {
    const { mon } = await setup({}, { logger: pino({ level: 'silent' }) });
    await expect(mon.execute('query-status')).resolves.toMatchObject({ running: true });
  });

  it('matches 100 concurrent commands to replies in order', async () => {
    const { server, mon } = await setup({ handlers: { echo: () => undefined } });
    const all = Promise.all(Array.from({ length: 100 }, (_, n) => mon.execute('echo', { n })));
    while (server.received.filter((c) => c.execute === 'echo').length < 100)
      await new Promise((r) => setTimeout(r, 5));
    for (const c of server.received.filter((c) => c.execute === 'echo'))
      server.reply(undefined, { return: c.arguments?.n });
    expect(await all).toEqual(Array.from({ length: 100 }, (_, n) => n));
    expect(mon.pendingCount).toBe(0);
  });

  it('routes events that arrive before the reply; a throwing listener breaks nothing', async () => {
    const log = logger();
    const { server, mon } = await setup(
      {
        handlers: {
          stop: () => {
            server.sendEvent('STOP');
            return { return: {} };
          },
        },
      },
      { logger: log },
    );
    const seen: MonitorEvent[] = [];
    mon.on('event', () => {
      throw new Error('listener bug');
    });
    mon.on('event', (ev) => seen.push(ev));
    const waiter = mon.waitForEvent('STOP', { timeoutMs: 2000 });
    await expect(mon.execute('stop')).resolves.toEqual({});
    const ev = await waiter.promise;
    expect(ev.event).toBe('STOP');
    expect(ev.data).toEqual({});
    expect(ev.timestamp.seconds).toBeGreaterThan(0);
    expect(seen.map((e) => e.event)).toEqual(['STOP']);
    expect(log.warn).toHaveBeenCalledWith(
      expect.objectContaining({ event: 'STOP' }),
      expect.stringContaining('listener threw'),
    );
    await expect(mon.execute('query-status')).resolves.toMatchObject({ status: 'running' });
  });

  it('waitForEvent: filter, several names, timeout, abort and cancel', async () => {
    const { server, mon } = await setup();
    const w1 = mon.waitForEvent(['MIGRATION', 'STOP'], {
      filter: (e) => e.event === 'STOP' || e.data.status === 'completed',
      timeoutMs: 2000,
    });
    server.sendEvent('MIGRATION', { status: 'active' });
    server.sendEvent('MIGRATION', { status: 'completed' });
    expect((await w1.promise).data).toEqual({ status: 'completed' });

    const t0 = Date.now();
    await expect(mon.waitForEvent('RESUME', { timeoutMs: 50 }).promise).rejects.toThrow(MonitorTimeoutError);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(45);

    const ac = new AbortController();
    const w2 = mon.waitForEvent('RESUME', { signal: ac.signal });
    ac.abort(new Error('user gave up'));
    await expect(w2.promise).rejects.toThrow('user gave up');

    const w3 = mon.waitForEvent('RESUME');
    w3.cancel();
    expect(mon.listenerCount('event')).toBe(0);
  });

  it('rejects error replies with QmpError carrying class, desc and command', async () => {
    const { mon } = await setup({
      handlers: {
        'migrate-set-capabilities': () => ({
          error: { class: 'GenericError', desc: "Parameter 'capability' does not accept value 'nope'" },
        }),
      },
    });
    const args = { capabilities: [{ capability: 'nope', state: true }] };
    const err = await rejectionOf(mon.execute('migrate-set-capabilities', args));
    expect(err).toBeInstanceOf(QmpError);
    expect(err.errorClass).toBe('GenericError');
    expect(err.desc).toBe("Parameter 'capability' does not accept value 'nope'");
    expect(err.command).toEqual({ execute: 'migrate-set-capabilities', arguments: args });
    const nf = await rejectionOf(mon.execute('nope'));
    expect(nf).toMatchObject({ errorClass: 'CommandNotFound', desc: 'The command nope has not been found' });
  });

  it('humanCommand detects HMP error text inside a successful reply', async () => {
    const { mon } = await setup({
      handlers: {
        'human-monitor-command': (c) =>
          c.arguments?.['command-line'] === 'info status'
            ? { return: 'VM status: running\r\n' }
            : { return: "unknown command: 'migrate_set_speed'\r\n" },
      },
    });
    expect(await mon.humanCommand('info status')).toBe('VM status: running\n');
    const err = await rejectionOf(mon.humanCommand('migrate_set_speed 10'));
    expect(err).toBeInstanceOf(HmpError);
    expect(err.command).toBe('migrate_set_speed 10');
    expect(err.text).toBe("unknown command: 'migrate_set_speed'");
  });

  it('times a command out, drops its late reply, and keeps working', async () => {
    const log = logger();
    const { server, mon } = await setup(
      { handlers: { slow: () => undefined } },
      { logger: log, timeoutMs: 5000 },
    );
    const err = await rejectionOf(mon.execute('slow', undefined, { timeoutMs: 60 }));
    expect(err).toBeInstanceOf(MonitorTimeoutError);
    expect(err.message).toContain("'slow'");
    expect(err.message).toContain(server.path);
    // QEMU answers in order: the late reply comes before any later command's.
    server.reply(undefined, { return: 'late' });
    await expect(mon.execute('query-status')).resolves.toMatchObject({ running: true });
    expect(log.debug).toHaveBeenCalledWith(
      expect.objectContaining({ command: 'slow' }),
      'late QMP reply after timeout dropped',
    );
  });

  it('uses the default timeoutMs option', async () => {
    const { mon } = await setup({ handlers: { slow: () => undefined } }, { timeoutMs: 40 });
    await expect(mon.execute('slow')).rejects.toThrow(/within 40 ms/);
  });

  it('an error reply without id fails the oldest pending command only', async () => {
    const { server, mon } = await setup({ handlers: { a: () => undefined, b: () => undefined } });
    const a = rejectionOf(mon.execute('a'));
    const b = mon.execute('b');
    await server.nextCommand('b');
    server.sendLine({ error: { class: 'GenericError', desc: 'JSON parse error, expecting value' } });
    const err = await a;
    expect(err).toBeInstanceOf(QmpError);
    expect(err.command).toEqual({ execute: 'a' });
    expect(err.desc).toBe('JSON parse error, expecting value');
    server.reply(server.received.find((c) => c.execute === 'b')?.id, { return: 2 });
    expect(await b).toBe(2);
    expect(mon.closed).toBe(false);
  });

  it('drops a reply no command waits for and unparsable lines, with a warning', async () => {
    const log = logger();
    const { server, mon } = await setup({}, { logger: log });
    server.reply('not-ours', { return: 1 });
    await server.sendRaw('{"return": 2}\r\n');
    await server.sendRaw('garbage\r\n');
    await vi.waitFor(() => expect(log.warn).toHaveBeenCalledTimes(3));
    // Only out-of-band commands carry ids: a reply with an id is never taken in order.
    expect(log.warn).toHaveBeenCalledWith(
      expect.objectContaining({ message: { return: 1, id: 'not-ours' } }),
      'QMP reply with an id no command was sent with dropped',
    );
    expect(log.warn).toHaveBeenCalledWith(
      expect.objectContaining({ message: { return: 2 } }),
      'QMP reply with no command waiting dropped',
    );
    expect(log.warn).toHaveBeenCalledWith(
      expect.objectContaining({ line: 'garbage' }),
      'unparsable QMP line dropped',
    );
    await expect(mon.execute('query-status')).resolves.toEqual({ status: 'running', running: true });
  });

  it('reassembles replies the server writes in split chunks', async () => {
    const { server, mon } = await setup({ handlers: { split: () => undefined } });
    const p = mon.execute('split');
    const cmd = await server.nextCommand('split');
    const line = `${JSON.stringify({ return: { text: 'Grüße €' }, id: cmd.id })}\r\n`;
    const bytes = Buffer.from(line);
    await server.sendRaw(bytes, { splitAt: [3, bytes.indexOf(0xe2) + 1, bytes.length - 1] });
    expect(await p).toEqual({ text: 'Grüße €' });
  });

  it('rejects every pending command with MonitorClosedError on disconnect; close emitted once', async () => {
    const { server, mon } = await setup({ handlers: { hang: () => undefined } });
    const closes: (Error | undefined)[] = [];
    mon.on('close', (e) => closes.push(e));
    const pending = [mon.execute('hang'), mon.execute('hang'), mon.execute('hang')].map(rejectionOf);
    const waiter = mon.waitForEvent('STOP');
    while (server.received.filter((c) => c.execute === 'hang').length < 3)
      await new Promise((r) => setTimeout(r, 5));
    server.dropConnections();
    for (const e of await Promise.all(pending)) {
      expect(e).toBeInstanceOf(MonitorClosedError);
      expect(e.message).toContain("'hang'");
    }
    await expect(waiter.promise).rejects.toBeInstanceOf(MonitorClosedError);
    expect(mon.closed).toBe(true);
    await expect(mon.execute('query-status')).rejects.toBeInstanceOf(MonitorClosedError);
    await mon.close();
    expect(closes).toHaveLength(1);
    expect(closes[0]).toBeInstanceOf(Error);
  });

  it('close() is idempotent and rejects pending commands', async () => {
    const { mon } = await setup({ handlers: { hang: () => undefined } });
    const closes: unknown[] = [];
    mon.on('close', (e) => closes.push(e));
    const p = rejectionOf(mon.execute('hang'));
    await Promise.all([mon.close(), mon.close()]);
    await mon.close();
    expect(await p).toBeInstanceOf(MonitorClosedError);
    expect(closes).toEqual([undefined]);
  });

  it('times out when no greeting is ever sent', async () => {
    const server = await FakeQmpServer.start({ greeting: 'none' });
    servers.push(server);
    const err = await rejectionOf(QmpMonitor.connect({ path: server.path }, { greetingTimeoutMs: 80 }));
    expect(err).toBeInstanceOf(MonitorTimeoutError);
    expect(err.message).toContain(server.path);
  });

  it('rejects a non-QMP greeting (an HMP banner) with a MonitorError', async () => {
    const server = await FakeQmpServer.start({
      greeting: "QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ",
    });
    servers.push(server);
    const err = await rejectionOf(QmpMonitor.connect({ path: server.path }, { greetingTimeoutMs: 2000 }));
    expect(err).toBeInstanceOf(MonitorError);
    expect(err).toBeInstanceOf(MonitorProtocolError);
    expect(err.message).toContain('not a QMP monitor');
    expect(err.message).toContain(server.path);
  });

  it('rejects a JSON greeting that is not QMP', async () => {
    const server = await FakeQmpServer.start({ greeting: { hello: 'world' } });
    servers.push(server);
    await expect(QmpMonitor.connect({ path: server.path })).rejects.toThrow(/wrong server greeting/);
  });

  it('fails the handshake when qmp_capabilities is refused', async () => {
    const server = await FakeQmpServer.start({
      handlers: { qmp_capabilities: () => ({ error: { class: 'GenericError', desc: 'nope' } }) },
    });
    servers.push(server);
    await expect(QmpMonitor.connect({ path: server.path })).rejects.toThrow(/negotiation failed.*nope/);
  });

  it('names the missing socket path in the connection error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvmhv-mon-'));
    try {
      const path = join(dir, 'missing.qmp');
      const err = await rejectionOf(QmpMonitor.connect({ path }));
      expect(err).toBeInstanceOf(MonitorError);
      expect(err.message).toContain(path);
      expect(err.message).toContain('ENOENT');
      await expect(connectTransport({ host: '127.0.0.1', port: 1 })).rejects.toThrow(
        /127\.0\.0\.1:1.*ECONNREFUSED/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('closes with a MonitorProtocolError when a line exceeds maxLineBytes', async () => {
    const { server, mon } = await setup(
      { handlers: { hang: () => undefined } },
      { maxLineBytes: 16 * 1024 * 1024 },
    );
    const closed = new Promise<Error | undefined>((r) => mon.on('close', r));
    const p = rejectionOf(mon.execute('hang'));
    await server.sendRaw(Buffer.alloc(16 * 1024 * 1024 + 10, 0x61));
    const err = await closed;
    expect(err).toBeInstanceOf(MonitorProtocolError);
    const pending = await p;
    expect(pending).toBeInstanceOf(MonitorClosedError);
    expect(pending.cause).toBe(err);
  });

  it('refuses arguments JSON cannot encode at once, with nothing sent and nothing pending', async () => {
    const { server, mon } = await setup();
    const cyclic: Record<string, unknown> = { name: 'x' };
    cyclic.self = cyclic;
    const cases: [string, Record<string, unknown>, RegExp][] = [
      ['object-add', { size: 1n }, /BigInt/],
      ['blockdev-add', cyclic, /circular/i],
      [
        'migrate',
        {
          toJSON() {
            throw new Error('boom');
          },
        },
        /boom/,
      ],
    ];
    for (const [command, args, cause] of cases) {
      const err = await rejectionOf(mon.execute(command, args, { timeoutMs: 0 }));
      expect(err).toBeInstanceOf(QmpArgumentsError);
      expect(err.command).toBe(command);
      expect(err.message).toMatch(
        new RegExp(`^QMP command '${command}' not sent to .*: its arguments cannot be encoded as JSON`),
      );
      expect(err.message).toMatch(cause);
      expect(mon.pendingCount).toBe(0);
    }
    // The connection is unaffected: the refused command holds no place in the reply order.
    expect(await mon.execute('query-status', { ok: 'line\nbreak' })).toEqual({
      status: 'running',
      running: true,
    });
    expect(server.received.map((c) => c.execute)).toEqual(['qmp_capabilities', 'query-status']);
    expect(server.received[1]).toEqual({
      execute: 'query-status',
      arguments: { ok: 'line\nbreak' },
    });
  });

  // 4 MiB is twenty times a UNIX socket's buffer: the write must wait for drain. The
  // limits are hang checks only: a loaded machine parses JSON slowly (32 MiB took over
  // 20 s beside CPU burners).
  it('sends a 4 MiB argument through the socket (backpressure) and stays in order', async () => {
    const { mon } = await setup({
      handlers: {
        big: (c) => ({ return: String(c.arguments?.blob).length }),
        small: () => ({ return: 'ok' }),
      },
    });
    const blob = 'b'.repeat(4 * 1024 * 1024);
    const [len, ok] = await Promise.all([
      mon.execute('big', { blob }, { timeoutMs: 110_000 }),
      mon.execute('small', undefined, { timeoutMs: 110_000 }),
    ]);
    expect(len).toBe(blob.length);
    expect(ok).toBe('ok');
  }, 120_000);
});

describe('QmpMonitor over an in-memory stream', () => {
  it('waits for drain before the next write', async () => {
    const [client, server] = createStreamPair({ highWaterMark: 1024, writeDelayMs: 2 });
    const writes: boolean[] = [];
    const orig = client.write.bind(client);
    client.write = ((chunk: never, ...rest: never[]) => {
      writes.push(client.writableNeedDrain);
      return orig(chunk, ...rest);
    }) as typeof client.write;
    const input = new QmpInputSplitter();
    server.on('data', (d: Buffer) => {
      for (const m of input.push(d)) {
        if (m.kind !== 'value') throw new Error(`unparsable: ${m.text}`);
        const msg = m.value as { id: unknown; arguments?: { n?: number } };
        server.write(`${JSON.stringify({ return: msg.arguments?.n ?? {}, id: msg.id })}\r\n`);
      }
    });
    server.write(
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 7, "major": 1}, "package": ""}, "capabilities": []}}\r\n',
    );
    const mon = await QmpMonitor.fromStream(client, { description: 'memory' });
    expect(mon.version).toEqual({ major: 1, minor: 7, micro: 0 });
    const pad = 'p'.repeat(4096);
    const results = await Promise.all(Array.from({ length: 20 }, (_, n) => mon.execute('x', { n, pad })));
    expect(results).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(writes.length).toBe(21);
    expect(writes.every((needDrain) => needDrain === false)).toBe(true);
    await mon.close();
  });

  it('describes the stream in messages', async () => {
    const [client, server] = createStreamPair();
    server.write(
      '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 0, "major": 6}}, "capabilities": []}}\n',
    );
    server.on('data', (d: Buffer) => {
      const msg = JSON.parse(d.toString());
      if (msg.execute === 'qmp_capabilities') server.write('{"return": {}}\n');
    });
    const mon = await QmpMonitor.fromStream(client, { description: 'vm1 monitor', timeoutMs: 30 });
    await expect(mon.execute('query-status')).rejects.toThrow(/'query-status' on vm1 monitor/);
    server.destroy();
    await new Promise((r) => mon.on('close', r));
    await expect(mon.execute('x')).rejects.toThrow(/vm1 monitor is closed/);
  });
});

describe('QmpMonitor debug logging', () => {
  it('builds no debug line when the logger says debug is off (pino isLevelEnabled), and logs when it is on', async () => {
    const quiet = { debug: vi.fn(), warn: vi.fn(), isLevelEnabled: vi.fn(() => false) };
    const { mon } = await setup({}, { logger: quiet });
    await mon.execute('query-status');
    expect(quiet.isLevelEnabled).toHaveBeenCalledWith('debug');
    expect(quiet.debug).not.toHaveBeenCalled();

    const lines: Record<string, unknown>[] = [];
    const loud = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const { mon: mon2 } = await setup({}, { logger: loud });
    await mon2.execute('query-status');
    expect(lines.some((l) => l.msg === 'QMP send query-status')).toBe(true);
    loud.level = 'info';
    lines.length = 0;
    await mon2.execute('query-status');
    expect(lines).toEqual([]);
  });

  it('a logger without isLevelEnabled gets every debug line', async () => {
    const log = logger();
    const { mon } = await setup({}, { logger: log });
    await mon.execute('query-status');
    expect(log.debug).toHaveBeenCalledWith(
      expect.objectContaining({ command: { execute: 'query-status' } }),
      'QMP send query-status',
    );
  });
});
