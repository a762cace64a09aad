/**
 * The read-only queries as data: each protocol's command and parser, tested on answers as
 * QEMU sends them, and on answers no parser may turn into a default value.
 */
import { describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import { CAPABILITIES_QUERY, MIGRATION_STATUS_QUERY, RUN_STATE_QUERY } from '../../src/migration/queries.js';

describe('read-only queries per protocol', () => {
  it('run state: query-status and info status read the same state', () => {
    expect(RUN_STATE_QUERY.qmp.command).toEqual({ kind: 'qmp', execute: 'query-status' });
    expect(RUN_STATE_QUERY.qmp.parse({ running: false, singlestep: false, status: 'postmigrate' })).toEqual({
      running: false,
      status: 'postmigrate',
    });
    expect(RUN_STATE_QUERY.hmp.command).toEqual({ kind: 'hmp', line: 'info status' });
    expect(RUN_STATE_QUERY.hmp.parse('VM status: paused (postmigrate)\r\n')).toEqual({
      running: false,
      status: 'postmigrate',
    });
  });

  it('migration status: both forms give a MigrationProgress', () => {
    expect(
      MIGRATION_STATUS_QUERY.qmp.parse({
        status: 'active',
        ram: { transferred: 10, remaining: 5, total: 20 },
      }),
    ).toMatchObject({ status: 'active', transferredBytes: 10, remainingBytes: 5, totalBytes: 20 });
    expect(MIGRATION_STATUS_QUERY.hmp.parse('Migration status: completed\r\n').status).toBe('completed');
  });

  it('capabilities: QMP list and HMP lines', () => {
    const qmp = CAPABILITIES_QUERY.qmp.parse([
      { capability: 'xbzrle', state: false },
      { capability: 'events', state: true },
    ]);
    expect([...qmp]).toEqual([
      ['xbzrle', false],
      ['events', true],
    ]);
    const hmp = CAPABILITIES_QUERY.hmp.parse('xbzrle: off\r\nevents: on\r\n');
    expect(hmp.get('events')).toBe(true);
    expect(hmp.get('xbzrle')).toBe(false);
  });

  it('answers no parser knows are errors quoting them, never defaults', () => {
    expect(() => RUN_STATE_QUERY.qmp.parse({ status: 'running' })).toThrow(UnrecognizedOutputError);
    expect(() => RUN_STATE_QUERY.qmp.parse(null)).toThrow(/null/);
    expect(() => RUN_STATE_QUERY.hmp.parse('VM is fine\r\n')).toThrow(/VM is fine/);
    expect(() => CAPABILITIES_QUERY.qmp.parse({ xbzrle: true })).toThrow(UnrecognizedOutputError);
    expect(() => CAPABILITIES_QUERY.qmp.parse([{ state: true }])).toThrow(UnrecognizedOutputError);
    expect(() => MIGRATION_STATUS_QUERY.hmp.parse('Migration is: who knows\r\n')).toThrow(
      UnrecognizedOutputError,
    );
  });
});
