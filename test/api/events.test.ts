import { describe, expect, it } from 'vitest';
import { asKnownEvent, isMonitorEvent } from '../../src/monitor/event-types.js';
import { QmpParser } from '../../src/monitor/qmp-parser.js';
import type { MonitorEvent } from '../../src/monitor/types.js';
import { MockMonitor } from '../../src/testing/index.js';

/** The events in a QMP byte stream, as the client parses them. */
function eventsOf(wire: string): MonitorEvent[] {
  return new QmpParser().push(wire).flatMap((m) => (m.kind === 'event' ? [m.event] : []));
}

const ts = '"timestamp": {"seconds": 1700000000, "microseconds": 5}';

describe('typed event payloads', () => {
  it('narrows MIGRATION, MIGRATION_PASS, STOP, RESUME and SHUTDOWN read off the wire', () => {
    const evs = eventsOf(
      [
        `{"event": "MIGRATION", "data": {"status": "postcopy-active"}, ${ts}}`,
        `{"event": "MIGRATION_PASS", "data": {"pass": 3}, ${ts}}`,
        `{"event": "STOP", ${ts}}`,
        `{"event": "RESUME", ${ts}}`,
        `{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}, ${ts}}`,
        `{"event": "BLOCK_JOB_READY", "data": {"device": "d0"}, ${ts}}`,
        '',
      ].join('\r\n'),
    );
    const seen: string[] = [];
    for (const ev of evs) {
      const k = asKnownEvent(ev);
      switch (k?.event) {
        case 'MIGRATION':
          seen.push(`status ${k.data.status}`);
          break;
        case 'MIGRATION_PASS':
          seen.push(`pass ${k.data.pass + 0}`);
          break;
        case 'SHUTDOWN':
          seen.push(`shutdown guest=${k.data.guest} ${k.data.reason}`);
          break;
        case undefined:
          seen.push(`other ${ev.event}`);
          break;
        default:
          seen.push(k?.event ?? '');
      }
    }
    expect(seen).toEqual([
      'status postcopy-active',
      'pass 3',
      'STOP',
      'RESUME',
      'shutdown guest=true guest-shutdown',
      'other BLOCK_JOB_READY',
    ]);
  });

  it('a known name with a payload that does not fit is not typed (SHUTDOWN of QEMU < 4.0, bad status)', () => {
    const [oldShutdown, badMigration] = eventsOf(
      `{"event": "SHUTDOWN", ${ts}}\r\n{"event": "MIGRATION", "data": {"status": 7}, ${ts}}\r\n`,
    ) as [MonitorEvent, MonitorEvent];
    expect(isMonitorEvent(oldShutdown, 'SHUTDOWN')).toBe(false);
    expect(asKnownEvent(oldShutdown)).toBeUndefined();
    expect(isMonitorEvent(badMigration, 'MIGRATION')).toBe(false);
    expect(isMonitorEvent(badMigration, ['STOP', 'RESUME'])).toBe(false);
  });

  it('isMonitorEvent narrows what a monitor emits', async () => {
    const mock = new MockMonitor();
    const waiter = mock.waitForEvent('MIGRATION', {
      filter: (e) => isMonitorEvent(e, 'MIGRATION') && e.data.status === 'completed',
      timeoutMs: 10_000,
    });
    mock.emitEvent('MIGRATION', { status: 'active' });
    mock.emitEvent('MIGRATION', { status: 'completed' });
    const ev = await waiter.promise;
    expect(isMonitorEvent(ev, ['MIGRATION', 'MIGRATION_PASS'])).toBe(true);
    if (!isMonitorEvent(ev, 'MIGRATION')) throw new Error('not a MIGRATION event');
    const status: string = ev.data.status;
    expect(status).toBe('completed');
  });
});
