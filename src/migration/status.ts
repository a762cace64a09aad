/**
 * Pure parsing of migration status: QMP `query-migrate` replies and HMP `info migrate`
 * text become one {@link MigrationProgress} shape. Unknown status words and members are
 * passed through, so a newer QEMU's new states do not break the parser; output whose
 * shape is not recognised at all is an {@link UnrecognizedOutputError} quoting it, never a
 * default value.
 */
import { UnrecognizedOutputError } from '../errors.js';
import { queryMigrateStatus } from '../qemu/migration-status.js';
import { finishProgress, firstPassDone, speedBytesPerSec } from './progress-fields.js';
import type { MigrationProgress } from './types.js';

export { ACTIVE_STATUSES, TERMINAL_STATUSES } from '../qemu/migration-status.js';
export { parseHumanSize, parseInfoMigrate } from './info-migrate.js';

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * Maps a QMP `query-migrate` return value to {@link MigrationProgress}. A reply without
 * `status` (no migration yet) gives status `none`.
 * @throws UnrecognizedOutputError when the reply is not an object, or has a `status`
 *   that is not a string.
 */
export function parseQueryMigrate(reply: unknown): MigrationProgress {
  const status = queryMigrateStatus(reply);
  const r = reply as Record<string, unknown>;
  const ram = (r.ram && typeof r.ram === 'object' ? r.ram : {}) as Record<string, unknown>;
  const pageSize = num(ram['page-size']) ?? 4096;
  const p: MigrationProgress = { status, raw: r };
  p.transferredBytes = num(ram.transferred);
  p.remainingBytes = num(ram.remaining);
  p.totalBytes = num(ram.total);
  p.speedBytesPerSec = speedBytesPerSec(num(ram.mbps), num(ram['pages-per-second']), pageSize);
  const dirty = num(ram['dirty-pages-rate']);
  p.dirtyRateBytesPerSec = dirty === undefined ? undefined : dirty * pageSize;
  // QEMU 11 reports INT64_MAX ("no bandwidth measured yet") between passes: not an estimate.
  const expected = num(r['expected-downtime']);
  p.expectedDowntimeMs = expected !== undefined && Number.isSafeInteger(expected) ? expected : undefined;
  p.downtimeMs = num(r.downtime);
  p.totalTimeMs = num(r['total-time']);
  p.pass = num(ram['dirty-sync-count']);
  p.firstPassDone = firstPassDone(num(ram.normal), num(ram.duplicate), pageSize, p.totalBytes);
  p.throttlePercent = num(r['cpu-throttle-percentage']);
  if (typeof r['error-desc'] === 'string') p.errorDesc = r['error-desc'];
  return finishProgress(p);
}

/** Parses HMP `info migrate_capabilities` (`xbzrle: off` per line, or one line `xbzrle: off zero-blocks: on`). */
export function parseInfoMigrateCapabilities(text: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of text.matchAll(/([a-z][a-z0-9-]*):\s*(on|off)\b/gi))
    out.set(m[1]!, m[2]!.toLowerCase() === 'on');
  return out;
}

/**
 * Parses HMP `info status` into QMP's `status` word: `VM status: running`,
 * `VM status: paused (postmigrate)`, `VM status: paused` (plain pause), with QEMU ≤ 2.x's
 * ` (single step mode)` note ignored.
 * @throws UnrecognizedOutputError when no such line is there.
 */
export function parseInfoStatus(text: string): { running: boolean; status: string } {
  const m = /^\s*VM status:\s*(running|paused)((?:\s*\([^()]*\))*)\s*$/im.exec(text);
  if (!m) throw new UnrecognizedOutputError('info status', text);
  const running = m[1]!.toLowerCase() === 'running';
  const notes = [...m[2]!.matchAll(/\(([^()]*)\)/g)].map((n) => n[1]!.trim().toLowerCase());
  const runState = notes.filter((n) => /^[a-z][a-z0-9_-]*$/.test(n)).at(-1);
  return { running, status: running ? 'running' : (runState ?? 'paused') };
}
