/**
 * Pure parsing of migration status: QMP `query-migrate` replies and HMP `info migrate`
 * text become one {@link MigrationProgress} shape. Unknown statuses and members are
 * passed through, never rejected, so a newer QEMU cannot break the parser.
 */
import type { MigrationProgress } from './types.js';

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

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function withPercent(p: MigrationProgress): MigrationProgress {
  if (p.status === 'completed') p.percent = 100;
  else if (p.remainingBytes !== undefined && p.totalBytes) {
    // Like Nova: the share of guest RAM not left to send. `transferred / total` (Ganeti)
    // climbs past 100 % as soon as pages are sent twice (Ganeti issue #950).
    p.percent = Math.min(100, Math.max(0, (100 * (p.totalBytes - p.remainingBytes)) / p.totalBytes));
  } else if (p.transferredBytes !== undefined && p.totalBytes) {
    p.percent = Math.min(100, (100 * p.transferredBytes) / p.totalBytes);
  }
  return p;
}

/**
 * Maps a QMP `query-migrate` return value to {@link MigrationProgress}. A reply without
 * `status` (no migration yet) gives status `none`.
 */
export function parseQueryMigrate(reply: unknown): MigrationProgress {
  const r = (reply && typeof reply === 'object' ? reply : {}) as Record<string, unknown>;
  const ram = (r.ram && typeof r.ram === 'object' ? r.ram : {}) as Record<string, unknown>;
  const pageSize = num(ram['page-size']) ?? 4096;
  const p: MigrationProgress = { status: typeof r.status === 'string' ? r.status : 'none', raw: r };
  p.transferredBytes = num(ram.transferred);
  p.remainingBytes = num(ram.remaining);
  p.totalBytes = num(ram.total);
  const pps = num(ram['pages-per-second']);
  const mbps = num(ram.mbps);
  // mbps (decimal megabits) is what went over the wire; pages-per-second also counts
  // zero pages, which cost almost nothing to send, so it is only the fallback.
  p.speedBytesPerSec = mbps !== undefined ? (mbps * 1e6) / 8 : pps !== undefined ? pps * pageSize : undefined;
  const dirty = num(ram['dirty-pages-rate']);
  p.dirtyRateBytesPerSec = dirty === undefined ? undefined : dirty * pageSize;
  p.expectedDowntimeMs = num(r['expected-downtime']);
  p.downtimeMs = num(r.downtime);
  p.totalTimeMs = num(r['total-time']);
  p.pass = num(ram['dirty-sync-count']);
  p.throttlePercent = num(r['cpu-throttle-percentage']);
  if (typeof r['error-desc'] === 'string') p.errorDesc = r['error-desc'];
  return withPercent(dropUndefined(p));
}

function dropUndefined(p: MigrationProgress): MigrationProgress {
  for (const k of Object.keys(p) as (keyof MigrationProgress)[]) if (p[k] === undefined) delete p[k];
  return p;
}

const UNIT: Record<string, number> = {
  bytes: 1,
  kbytes: 1024,
  mbytes: 1024 * 1024,
  gbytes: 1024 * 1024 * 1024,
};

/**
 * Parses HMP `info migrate` text (QEMU 1.7 → today). Empty text (no migration yet) gives
 * status `none`. Sizes printed in kbytes are turned into bytes.
 */
export function parseInfoMigrate(text: string): MigrationProgress {
  const fields = new Map<string, string>();
  let status = 'none';
  let errorDesc: string | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const st = /^Migration status:\s*([\w-]+)(?:\s*\((.*)\))?\s*$/i.exec(line);
    if (st) {
      status = st[1]!.toLowerCase();
      if (st[2]) errorDesc = st[2];
      continue;
    }
    const kv = /^([a-z][a-z0-9 _-]*):\s*(.+)$/i.exec(line);
    if (kv) fields.set(kv[1]!.toLowerCase(), kv[2]!.trim());
  }
  const size = (key: string): number | undefined => {
    const m = /^(\d+)\s*(bytes|kbytes|mbytes|gbytes)?/.exec(fields.get(key) ?? '');
    return m ? Number(m[1]) * (UNIT[m[2] ?? 'bytes'] ?? 1) : undefined;
  };
  const plain = (key: string): number | undefined => {
    const m = /^([\d.]+)/.exec(fields.get(key) ?? '');
    return m ? Number(m[1]) : undefined;
  };
  const pageSize = size('page size') ?? 4096;
  const p: MigrationProgress = { status };
  p.transferredBytes = size('transferred ram');
  p.remainingBytes = size('remaining ram');
  p.totalBytes = size('total ram');
  const pps = plain('pages-per-second');
  const mbps = plain('throughput');
  p.speedBytesPerSec = mbps !== undefined ? (mbps * 1e6) / 8 : pps !== undefined ? pps * pageSize : undefined;
  const dirty = plain('dirty pages rate');
  p.dirtyRateBytesPerSec = dirty === undefined ? undefined : dirty * pageSize;
  p.expectedDowntimeMs = plain('expected downtime');
  p.downtimeMs = plain('downtime');
  p.totalTimeMs = plain('total time');
  p.pass = plain('dirty sync count');
  p.throttlePercent = plain('cpu throttle percentage');
  if (errorDesc !== undefined) p.errorDesc = errorDesc;
  return withPercent(dropUndefined(p));
}

/** Parses HMP `info migrate_capabilities` (`xbzrle: off` per line, or one line `xbzrle: off zero-blocks: on`). */
export function parseInfoMigrateCapabilities(text: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of text.matchAll(/([a-z][a-z0-9-]*):\s*(on|off)\b/gi))
    out.set(m[1]!, m[2]!.toLowerCase() === 'on');
  return out;
}

/** Parses HMP `info status` (`VM status: paused (postmigrate)`) into QMP's `status` word. */
export function parseInfoStatus(text: string): { running: boolean; status: string } {
  const m = /VM status:\s*(\w+)(?:\s*\(([\w-]+)\))?/i.exec(text);
  if (!m) return { running: false, status: 'unknown' };
  const running = m[1]!.toLowerCase() === 'running';
  return { running, status: m[2]?.toLowerCase() ?? (running ? 'running' : 'paused') };
}
