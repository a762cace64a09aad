/**
 * Out-of-band commands on the wire: `exec-oob` with an id, replies matched by id (they
 * overtake in-band replies), in-band order kept around them, their own timeouts, and
 * the typed refusal where `oob` was not negotiated.
 */
import { describe, expect, it } from 'vitest';
import {
  MonitorClosedError,
  MonitorTimeoutError,
  OutOfBandUnavailableError,
  QmpError,
} from '../../src/errors.js';
import { QmpMonitor, type QmpMonitorOptions } from '../../src/monitor/qmp.js';
import { createStreamPair, QmpInputSplitter } from '../../src/testing/index.js';
import { rejectionOf } from './helpers.js';

type Received = { execute?: string; 'exec-oob'?: string; id?: unknown; arguments?: unknown };

/**
 * A QMP peer on an in-memory stream: answers `qmp_capabilities`, records every byte and
 * every command, and leaves the other replies to the test (`send`).
 */
async function peer(
  version: [number, number, number],
  capabilities: string[],
  options: QmpMonitorOptions = {},
) {
  const [client, server] = createStreamPair();
  const raw: Buffer[] = [];
  const received: Received[] = [];
  const input = new QmpInputSplitter();
  const logged: string[] = [];
  server.on('data', (d: Buffer) => {
    raw.push(d);
    for (const m of input.push(d)) {
      if (m.kind !== 'value') continue;
      const cmd = m.value as Received;
      if (cmd.execute === 'qmp_capabilities') server.write('{"return": {}}\r\n');
      else received.push(cmd);
    }
  });
  const [major, minor, micro] = version;
  server.write(
    `${JSON.stringify({ QMP: { version: { qemu: { major, minor, micro }, package: '' }, capabilities } })}\r\n`,
  );
  const logger = {
    debug: () => {},
    info: () => {},
    warn: (_o: unknown, msg?: string) => {
      logged.push(msg ?? '');
    },
    error: () => {},
  };
  const mon = await QmpMonitor.fromStream(client, { description: 'wire', logger, ...options });
  const send = (line: string) => server.write(`${line}\r\n`);
  const nextCommand = async (): Promise<Received> => {
    for (let i = 0; i < 200 && received.length === 0; i++) await new Promise((r) => setImmediate(r));
    const c = received.shift();
    if (!c) throw new Error('the client sent nothing');
    return c;
  };
  return { mon, send, nextCommand, logged, wire: () => Buffer.concat(raw).toString() };
}

describe('QmpMonitor.executeOutOfBand', () => {
  it('sends exec-oob with an id and no newline; in-band commands still carry none', async () => {
    const { mon, send, nextCommand, wire } = await peer([7, 2, 22], ['oob']);
    const oob = mon.executeOutOfBand('migrate-pause');
    const cmd = await nextCommand();
    expect(cmd).toEqual({ 'exec-oob': 'migrate-pause', id: 'kvmhv-oob-2' });
    send('{"return": {}, "id": "kvmhv-oob-2"}');
    expect(await oob).toEqual({});
    const withArgs = mon.executeOutOfBand('migrate-recover', { uri: 'tcp:10.0.0.2:8102' });
    await nextCommand();
    send('{"return": {}, "id": "kvmhv-oob-3"}');
    await withArgs;
    const inBand = mon.execute('query-status');
    await nextCommand();
    send('{"return": {"status": "running", "running": true}}');
    await inBand;
    expect(wire()).toBe(
      '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}' +
        '{"exec-oob":"migrate-pause","id":"kvmhv-oob-2"}' +
        '{"exec-oob":"migrate-recover","arguments":{"uri":"tcp:10.0.0.2:8102"},"id":"kvmhv-oob-3"}' +
        '{"execute":"query-status"}',
    );
    await mon.close();
  });

  it('takes the out-of-band reply ahead of in-band ones still owed, which keep their order', async () => {
    const { mon, send, nextCommand } = await peer([10, 0, 13], ['oob']);
    // QEMU's main loop is busy with `slow`; `query-migrate` waits behind it.
    const slow = mon.execute('slow');
    const queued = mon.execute('query-migrate');
    const pause = mon.executeOutOfBand('migrate-pause');
    await nextCommand();
    await nextCommand();
    const oob = await nextCommand();
    send(`{"return": {}, "id": ${JSON.stringify(oob.id)}}`);
    expect(await pause).toEqual({});
    expect(mon.pendingCount).toBe(2);
    expect(mon.unansweredInBand).toBe(2);
    send('{"return": "slow done"}');
    send('{"return": {"status": "postcopy-paused"}}');
    expect(await slow).toBe('slow done');
    expect(await queued).toEqual({ status: 'postcopy-paused' });
    await mon.close();
  });

  it("an error reply with the id rejects that command with QmpError, quoting QEMU's text", async () => {
    const { mon, send, nextCommand } = await peer([7, 2, 22], ['oob']);
    const p = mon.executeOutOfBand('query-status');
    const cmd = await nextCommand();
    send(
      `{"id": ${JSON.stringify(cmd.id)}, "error": {"class": "GenericError", "desc": "The command query-status does not support OOB"}}`,
    );
    const err = await rejectionOf(p);
    expect(err).toBeInstanceOf(QmpError);
    expect(err.desc).toBe('The command query-status does not support OOB');
    expect(err.command).toEqual({ execute: 'query-status' });
    await mon.close();
  });

  it('times out on its own deadline while in-band commands are stuck; its late reply is dropped', async () => {
    const { mon, send, nextCommand } = await peer([11, 1, 3], ['oob']);
    const stuck = mon.execute('stuck', undefined, { timeoutMs: 60_000 });
    const p = mon.executeOutOfBand('migrate-pause', undefined, { timeoutMs: 20 });
    await nextCommand();
    const oob = await nextCommand();
    const err = await rejectionOf(p);
    expect(err).toBeInstanceOf(MonitorTimeoutError);
    expect(err.message).toBe(
      "QMP command 'migrate-pause' on wire got no reply within 20 ms (sent out of band)",
    );
    expect(mon.pendingCount).toBe(1);
    // The late out-of-band reply is not taken for the in-band command.
    send(`{"return": {}, "id": ${JSON.stringify(oob.id)}}`);
    send('{"return": "unstuck"}');
    expect(await stuck).toBe('unstuck');
    await mon.close();
  });

  it('says when QEMU may not read it: a full in-band queue stops QEMU reading the socket', async () => {
    const { mon, logged } = await peer([7, 2, 22], ['oob']);
    const inBand = Array.from({ length: 8 }, () => mon.execute('query-migrate', undefined, { timeoutMs: 5 }));
    await Promise.allSettled(inBand);
    expect(mon.unansweredInBand).toBe(8);
    const err = await rejectionOf(mon.executeOutOfBand('migrate-pause', undefined, { timeoutMs: 5 }));
    expect(err.message).toBe(
      "QMP command 'migrate-pause' on wire got no reply within 5 ms (sent out of band behind 8 unanswered in-band commands: QEMU stops reading at 8)",
    );
    expect(logged).toContain(
      'out-of-band command sent while QEMU owes replies to a full in-band queue: it may not read it',
    );
    await mon.close();
  });

  it('a reply with an id this client never sent is dropped (logged), in-band matching unharmed', async () => {
    const { mon, send, nextCommand, logged } = await peer([7, 2, 22], ['oob']);
    const p = mon.execute('query-status');
    await nextCommand();
    send('{"return": {}, "id": "someone-else"}');
    send('{"return": {"status": "running"}}');
    expect(await p).toEqual({ status: 'running' });
    expect(logged).toContain('QMP reply with an id no command was sent with dropped');
    await mon.close();
  });

  it('rejects pending out-of-band commands with MonitorClosedError when the connection closes', async () => {
    const { mon, nextCommand } = await peer([7, 2, 22], ['oob']);
    const p = mon.executeOutOfBand('migrate-pause');
    await nextCommand();
    await mon.close();
    expect(await rejectionOf(p)).toBeInstanceOf(MonitorClosedError);
  });

  it('refuses with OutOfBandUnavailableError, nothing sent, where oob was not negotiated', async () => {
    for (const [version, caps, options, why] of [
      [[3, 0, 0], ['oob'], {}, 'QEMU before 3.1'],
      [[7, 2, 0], [], {}, 'the greeting does not offer it'],
      [[7, 2, 0], ['oob'], { outOfBand: false }, 'turned off with outOfBand: false'],
    ] as const) {
      const { mon, wire } = await peer([...version], [...caps], options);
      const err = await rejectionOf(mon.executeOutOfBand('migrate-pause'));
      expect(err).toBeInstanceOf(OutOfBandUnavailableError);
      expect(err.command).toBe('migrate-pause');
      expect(err.message).toBe(
        `QMP command 'migrate-pause' not sent to wire: out-of-band execution needs the 'oob' capability, which was not negotiated (${why})`,
      );
      expect(wire()).toBe('{"execute":"qmp_capabilities"}');
      await mon.close();
    }
  });

  it('runs in band instead where that is asked for (fallbackInBand)', async () => {
    const { mon, send, nextCommand, wire } = await peer([7, 2, 0], []);
    const p = mon.executeOutOfBand('migrate-pause', undefined, { fallbackInBand: true });
    expect(await nextCommand()).toEqual({ execute: 'migrate-pause' });
    send('{"return": {}}');
    expect(await p).toEqual({});
    expect(wire()).toBe('{"execute":"qmp_capabilities"}{"execute":"migrate-pause"}');
    await mon.close();
  });
});
