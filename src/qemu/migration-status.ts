/**
 * QEMU's migration status words, and the status of a QMP `query-migrate` reply. Below
 * both `migration/` (which parses the whole reply, src/migration/status.ts) and
 * `instance/` (which refuses to stop a QEMU whose migration is running).
 */
import { UnrecognizedOutputError } from '../errors.js';

/** Statuses after which QEMU does nothing more for this migration. */
export const TERMINAL_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

/** Statuses in which the migration is still running (known ones; unknown ones count too). */
export const ACTIVE_STATUSES: ReadonlySet<string> = new Set([
  'setup',
  'active',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
  'postcopy-recover-setup',
  'postcopy-device',
  'pre-switchover',
  'device',
  'cancelling',
  'wait-unplug',
  'colo',
  'failing',
]);

/**
 * The status word of a QMP `query-migrate` return value: `none` when it has no `status`
 * (no migration yet).
 * @throws UnrecognizedOutputError when the reply is not an object, or has a `status`
 *   that is not a string.
 */
export function queryMigrateStatus(reply: unknown): string {
  if (!reply || typeof reply !== 'object' || Array.isArray(reply)) {
    throw new UnrecognizedOutputError('query-migrate', JSON.stringify(reply) ?? String(reply), 'reply');
  }
  const r = reply as Record<string, unknown>;
  if (r.status !== undefined && typeof r.status !== 'string') {
    throw new UnrecognizedOutputError('query-migrate', JSON.stringify(reply), 'status');
  }
  return typeof r.status === 'string' ? r.status : 'none';
}
