/**
 * What QmpMonitor puts on the wire: the `oob` negotiation, commands without id or trailing
 * newline, replies matched in order, and a connection given up after 1024 unanswered
 * commands.
 */
import { describe, expect, it } from 'vitest';
import { MonitorProtocolError } from '../../src/errors.js';
import { QmpMonitor, type QmpMonitorOptions } from '../../src/monitor/qmp.js';
import { createStreamPair, QmpInputSplitter } from '../../src/testing/index.js';

/** A QMP peer on an in-memory stream that records the raw bytes and answers as told. */
async function peer(
  version: [number, number, number],
  capabilities: string[],
  options: QmpMonitorOptions = {},
  answer: (cmd: { execute: string; id?: unknown }) => unknown = () => ({}),
) {
  const [client, server] = createStreamPair();
  const raw: Buffer[] = [];
  const input = new QmpInputSplitter();
  server.on('data', (d: Buffer) => {
    raw.push(d);
    for (const m of input.push(d)) {
      if (m.kind !== 'value') continue;
      const cmd = m.value as { execute: string; id?: unknown };
      const r = answer(cmd);
      if (r !== undefined) server.write(`${JSON.stringify({ return: r })}\r\n`);
    }
  });
  const [major, minor, micro] = version;
  server.write(
    `${JSON.stringify({ QMP: { version: { qemu: { major, minor, micro }, package: '' }, capabilities } })}\r\n`,
  );
  const mon = await QmpMonitor.fromStream(client, { description: 'wire', ...options });
  const send = (reply: unknown) => server.write(`${JSON.stringify(reply)}\r\n`);
  return { mon, send, wire: () => Buffer.concat(raw).toString() };
}

describe('QmpMonitor on the wire', () => {
  it('negotiates oob on QEMU 3.1+ when offered; commands carry no id and no newline', async () => {
    const { mon, wire } = await peer([7, 2, 22], ['oob']);
    expect(mon.outOfBand).toBe(true);
    await mon.execute('query-status');
    expect(wire()).toBe(
      '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}{"execute":"query-status"}',
    );
    await mon.close();
  });

  it('does not negotiate oob before 3.1, when not offered, or when turned off', async () => {
    for (const [version, caps, options] of [
      [[3, 0, 0], ['oob'], {}],
      [[7, 2, 0], [], {}],
      [[7, 2, 0], ['oob'], { outOfBand: false }],
    ] as const) {
      const { mon, wire } = await peer([...version], [...caps], options);
      expect(mon.outOfBand).toBe(false);
      expect(wire()).toBe('{"execute":"qmp_capabilities"}');
      await mon.close();
    }
  });

  it('ends each command with a newline for a peer that reads lines (newlineAfterCommand)', async () => {
    const { mon, wire } = await peer([7, 2, 0], [], { newlineAfterCommand: true });
    await mon.execute('query-status');
    expect(wire()).toBe('{"execute":"qmp_capabilities"}\n{"execute":"query-status"}\n');
    await mon.close();
  });

  it('a command that timed out keeps its place: its late reply is not taken for the next one', async () => {
    // Like QEMU running 'slow': nothing after it is answered before it.
    let frozen = false;
    const { mon, send } = await peer([7, 2, 0], [], {}, (cmd) => {
      if (cmd.execute === 'slow') frozen = true;
      return frozen ? undefined : {};
    });
    await expect(mon.execute('slow', undefined, { timeoutMs: 5 })).rejects.toThrow(/no reply within 5 ms/);
    expect(mon.pendingCount).toBe(0);
    const next = mon.execute('next');
    send({ return: 'late answer to slow' });
    send({ return: 'answer to next' });
    expect(await next).toBe('answer to next');
    await mon.close();
  });

  it('closes the connection once 1024 commands went unanswered after their timeouts', async () => {
    const { mon } = await peer([7, 2, 0], [], {}, (cmd) =>
      cmd.execute === 'qmp_capabilities' ? {} : undefined,
    );
    const closed = new Promise<unknown>((resolve) => mon.once('close', resolve));
    const results = await Promise.allSettled(
      Array.from({ length: 1024 }, () => mon.execute('never', undefined, { timeoutMs: 20 })),
    );
    expect(results.every((r) => r.status === 'rejected')).toBe(true);
    const err = await closed;
    expect(err).toBeInstanceOf(MonitorProtocolError);
    expect((err as MonitorProtocolError).reason).toBe('unanswered');
    expect(mon.closed).toBe(true);
    await expect(mon.execute('x')).rejects.toThrow(/closed/);
  });
});
