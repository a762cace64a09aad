/**
 * The read-only queries of the migration engine as data: for each query, the command and
 * the pure parser of its answer in each protocol. `VmChannel` runs them; nothing here does
 * I/O, so every parser is tested on recorded replies and text.
 */
import { UnrecognizedOutputError } from '../errors.js';
import type { MonitorProtocol } from '../monitor/types.js';
import type { MonitorCommand } from './dialect.js';
import {
  parseInfoMigrate,
  parseInfoMigrateCapabilities,
  parseInfoStatus,
  parseQueryMigrate,
} from './status.js';
import type { MigrationProgress } from './types.js';

/** The VM run state as QMP names it (`running`, `paused`, `inmigrate`, `postmigrate`, …). */
export interface VmRunState {
  running: boolean;
  status: string;
}

/** One protocol's half of a query: what to send and how to read the answer. */
interface QueryForm<T> {
  command: MonitorCommand;
  /** Reads QMP's `return` value or HMP's text; unreadable input throws `UnrecognizedOutputError`. */
  parse(answer: unknown): T;
}

/** A read-only query in both protocols. */
export type Query<T> = Record<MonitorProtocol, QueryForm<T>>;

function parseQueryStatus(reply: unknown): VmRunState {
  const o = reply as { running?: unknown; status?: unknown } | null;
  if (!o || typeof o !== 'object' || typeof o.status !== 'string' || typeof o.running !== 'boolean') {
    throw new UnrecognizedOutputError('query-status', JSON.stringify(reply), 'reply');
  }
  return { running: o.running, status: o.status };
}

function parseQueryMigrateCapabilities(reply: unknown): Map<string, boolean> {
  if (!Array.isArray(reply)) {
    throw new UnrecognizedOutputError('query-migrate-capabilities', JSON.stringify(reply), 'reply');
  }
  return new Map(
    reply.map((c: { capability?: unknown; state?: unknown }) => {
      if (typeof c?.capability !== 'string') {
        throw new UnrecognizedOutputError('query-migrate-capabilities', JSON.stringify(reply), 'reply');
      }
      return [c.capability, c.state === true] as [string, boolean];
    }),
  );
}

const text = (answer: unknown): string => String(answer);

/** The VM run state. */
export const RUN_STATE_QUERY: Query<VmRunState> = {
  qmp: { command: { kind: 'qmp', execute: 'query-status' }, parse: parseQueryStatus },
  hmp: { command: { kind: 'hmp', line: 'info status' }, parse: (a) => parseInfoStatus(text(a)) },
};

/** One snapshot of the outgoing (or incoming) migration. */
export const MIGRATION_STATUS_QUERY: Query<MigrationProgress> = {
  qmp: { command: { kind: 'qmp', execute: 'query-migrate' }, parse: parseQueryMigrate },
  hmp: { command: { kind: 'hmp', line: 'info migrate' }, parse: (a) => parseInfoMigrate(text(a)) },
};

/**
 * The capability list with current states. HMP's empty answer (a QEMU too old to list
 * them) parses to an empty map; the channel turns that into "cannot list".
 */
export const CAPABILITIES_QUERY: Query<Map<string, boolean>> = {
  qmp: {
    command: { kind: 'qmp', execute: 'query-migrate-capabilities' },
    parse: parseQueryMigrateCapabilities,
  },
  hmp: {
    command: { kind: 'hmp', line: 'info migrate_capabilities' },
    parse: (a) => parseInfoMigrateCapabilities(text(a)),
  },
};
