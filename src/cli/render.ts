/**
 * Pure rendering of what `kvm-hv` shows: sizes, rates and durations, the progress line,
 * the migration summary and the status report, and their `--json` shapes. Nothing here
 * writes to a stream, so every line the user sees is unit-tested.
 */
import type { ConvergenceAction, MigrationProgress, MigrationResult } from '../migration/types.js';

const KiB = 1024;
const MiB = KiB * 1024;
const GiB = MiB * 1024;

/** `1536` → `1.5 KiB`, `0` → `0 B`; binary units, one decimal from KiB on. */
export function formatBytes(bytes: number | undefined): string {
  if (bytes === undefined || !Number.isFinite(bytes)) return '?';
  const abs = Math.abs(bytes);
  if (abs < KiB) return `${Math.round(bytes)} B`;
  if (abs < MiB) return `${(bytes / KiB).toFixed(1)} KiB`;
  if (abs < GiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  return `${(bytes / GiB).toFixed(2)} GiB`;
}

/** Bytes per second as `12.3 MiB/s`. */
export function formatRate(bytesPerSec: number | undefined): string {
  if (bytesPerSec === undefined || !Number.isFinite(bytesPerSec)) return '?';
  return `${formatBytes(bytesPerSec)}/s`;
}

/** Milliseconds as `850 ms`, `4.2 s` or `2 min 05 s`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms)) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** A bar of `width` cells for `percent` (0–100), with eighth-cell precision. */
export function renderBar(percent: number | undefined, width = 24): string {
  const p = Math.max(0, Math.min(100, percent ?? 0));
  const eighths = Math.round((p / 100) * width * 8);
  const full = Math.floor(eighths / 8);
  const partial = eighths % 8;
  const partials = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
  const body = '█'.repeat(full) + (full < width ? partials[partial]! : '');
  return body + '░'.repeat(Math.max(0, width - [...body].length));
}

/**
 * How far the current pass is, in percent: `1 − remaining/total` (what virt-manager shows
 * as memory remaining), 100 once completed, else the library's `transferred/total`.
 * Unlike `transferred/total`, it does not stick at 100% after the first pass.
 */
export function progressPercent(p: MigrationProgress): number | undefined {
  if (p.status === 'completed') return 100;
  if (p.remainingBytes !== undefined && p.totalBytes) {
    return Math.max(0, Math.min(100, 100 * (1 - p.remainingBytes / p.totalBytes)));
  }
  return p.percent;
}

/**
 * One progress line, e.g.
 * `[██████░░░░]  42% │ 54.0 MiB sent/128.0 MiB │ 31.2 MiB/s │ dirty 12.0 MiB/s │ downtime ~300 ms │ pass 3`.
 * Fields QEMU did not report are left out; the throttle appears once auto-converge acts.
 */
export function renderProgressLine(p: MigrationProgress, barWidth = 24): string {
  const parts: string[] = [];
  const percent = progressPercent(p);
  const pct = percent === undefined ? '  ?%' : `${Math.floor(percent).toString().padStart(3)}%`;
  parts.push(`[${renderBar(percent, barWidth)}] ${pct}`);
  if (p.status !== 'active') parts.push(p.status);
  if (p.transferredBytes !== undefined || p.totalBytes !== undefined) {
    parts.push(`${formatBytes(p.transferredBytes)} sent/${formatBytes(p.totalBytes)}`);
  }
  if (p.speedBytesPerSec !== undefined) parts.push(formatRate(p.speedBytesPerSec));
  if (p.dirtyRateBytesPerSec !== undefined) parts.push(`dirty ${formatRate(p.dirtyRateBytesPerSec)}`);
  if (p.expectedDowntimeMs !== undefined) parts.push(`downtime ~${formatDuration(p.expectedDowntimeMs)}`);
  if (p.pass !== undefined) parts.push(`pass ${p.pass}`);
  if (p.throttlePercent) parts.push(`throttle ${p.throttlePercent}%`);
  return parts.join(' │ ');
}

/** The `--json` document of a finished migration (and the values the summary shows). */
export interface MigrationSummaryJson {
  instance: string;
  status: 'completed';
  /** Wall-clock time of the whole command step, ms (includes setup and finalization). */
  wallTimeMs: number;
  /** QEMU's total migration time, ms. */
  totalTimeMs: number | null;
  /** Downtime QEMU measured, ms. */
  downtimeMs: number | null;
  /** Bytes sent. */
  transferredBytes: number | null;
  /** Guest RAM, bytes. */
  totalBytes: number | null;
  /** Average speed, bytes/s. */
  averageSpeedBytesPerSec: number | null;
  /** Dirty-bitmap passes. */
  passes: number | null;
  /** Highest vCPU throttle auto-converge applied, percent. */
  maxThrottlePercent: number | null;
}

const orNull = (v: number | undefined) => (v === undefined ? null : v);

/** Builds the JSON summary from a result; `maxThrottlePercent` comes from the progress seen. */
export function summaryJson(
  instance: string,
  result: MigrationResult,
  wallTimeMs: number,
  maxThrottlePercent?: number,
): MigrationSummaryJson {
  const avg =
    result.averageSpeedBytesPerSec ??
    (result.transferredBytes !== undefined && result.totalTimeMs
      ? (result.transferredBytes * 1000) / result.totalTimeMs
      : undefined);
  return {
    instance,
    status: 'completed',
    wallTimeMs: Math.round(wallTimeMs),
    totalTimeMs: orNull(result.totalTimeMs),
    downtimeMs: orNull(result.downtimeMs),
    transferredBytes: orNull(result.transferredBytes),
    totalBytes: orNull(result.totalBytes),
    averageSpeedBytesPerSec: avg === undefined ? null : Math.round(avg),
    passes: orNull(result.final.pass),
    maxThrottlePercent: maxThrottlePercent ? maxThrottlePercent : null,
  };
}

/** Aligned `label: value` lines. */
export function renderTable(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  return rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n');
}

const orUnknown = (v: number | null, f: (n: number) => string) => (v === null ? 'unknown' : f(v));

/** The human summary printed after a completed migration. */
export function renderSummary(s: MigrationSummaryJson): string {
  const rows: [string, string][] = [
    ['migration', `completed (instance ${s.instance})`],
    ['total time', orUnknown(s.totalTimeMs, formatDuration)],
    ['downtime', orUnknown(s.downtimeMs, formatDuration)],
    ['bytes sent', orUnknown(s.transferredBytes, (b) => `${formatBytes(b)} (${b} bytes)`)],
    ['guest RAM', orUnknown(s.totalBytes, formatBytes)],
    ['average speed', orUnknown(s.averageSpeedBytesPerSec, formatRate)],
  ];
  if (s.passes !== null) rows.push(['passes', String(s.passes)]);
  if (s.maxThrottlePercent !== null) rows.push(['max CPU throttle', `${s.maxThrottlePercent}%`]);
  return renderTable(rows);
}

/** The `--json` document of `kvm-hv status`: the progress without QEMU's raw reply. */
export function statusJson(instance: string, p: MigrationProgress): Record<string, unknown> {
  const { raw: _raw, ...rest } = p;
  return { instance, ...rest };
}

/** The human report of `kvm-hv status`. */
export function renderStatus(instance: string, p: MigrationProgress): string {
  const rows: [string, string][] = [
    ['instance', instance],
    ['status', p.status === 'none' ? 'none (no migration has run)' : p.status],
  ];
  if (p.transferredBytes !== undefined || p.totalBytes !== undefined) {
    const pct = p.percent === undefined ? '' : ` (${p.percent.toFixed(1)}%)`;
    rows.push(['transferred', `${formatBytes(p.transferredBytes)} of ${formatBytes(p.totalBytes)}${pct}`]);
  }
  if (p.remainingBytes !== undefined) rows.push(['remaining', formatBytes(p.remainingBytes)]);
  if (p.speedBytesPerSec !== undefined) rows.push(['speed', formatRate(p.speedBytesPerSec)]);
  if (p.dirtyRateBytesPerSec !== undefined) rows.push(['dirty rate', formatRate(p.dirtyRateBytesPerSec)]);
  if (p.expectedDowntimeMs !== undefined)
    rows.push(['expected downtime', formatDuration(p.expectedDowntimeMs)]);
  if (p.downtimeMs !== undefined) rows.push(['downtime', formatDuration(p.downtimeMs)]);
  if (p.totalTimeMs !== undefined) rows.push(['total time', formatDuration(p.totalTimeMs)]);
  if (p.pass !== undefined) rows.push(['pass', String(p.pass)]);
  if (p.throttlePercent !== undefined) rows.push(['CPU throttle', `${p.throttlePercent}%`]);
  if (p.errorDesc !== undefined) rows.push(['error', p.errorDesc]);
  return renderTable(rows);
}

/** A convergence action as one line for the terminal and the logs. */
export function describeAction(a: ConvergenceAction): string {
  switch (a.kind) {
    case 'downtime':
      return `convergence: downtime limit raised to ${formatDuration(a.downtimeMs)} (${a.reason})`;
    case 'postcopy':
      return `convergence: switched to post-copy (${a.reason})`;
  }
}

/**
 * Shows a parameter value in the `params` listing: numbers and booleans as they are,
 * `null` as `null`, strings bare unless empty or with spaces/quotes (then JSON-quoted).
 */
export function displayParamValue(v: unknown): string {
  if (typeof v === 'string') return v === '' || /[\s"'\\]/.test(v) ? JSON.stringify(v) : v;
  if (v === null || v === undefined) return 'null';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/**
 * The `params` listing: one `key  value` line per parameter, sorted, with `*` before the
 * keys set on the command line.
 */
export function renderParams(filled: Record<string, unknown>, given: ReadonlySet<string>): string {
  const keys = Object.keys(filled).sort();
  const width = Math.max(...keys.map((k) => k.length));
  return keys
    .map((k) => `${given.has(k) ? '*' : ' '} ${k.padEnd(width)}  ${displayParamValue(filled[k])}`)
    .join('\n');
}
