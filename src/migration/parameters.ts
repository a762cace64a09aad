/**
 * QEMU's migration parameters as it reports them (`query-migrate-parameters`, HMP
 * `info migrate_parameters`): which releases report them, and the parsers (pure). What
 * a migration does with them (snapshot and restore) is in settings.ts.
 */
import { UnrecognizedOutputError } from '../errors.js';
import type { QemuVersion } from '../qemu/version.js';
import { versionAtLeast } from '../qemu/version.js';
import type { MigrationParameterValues } from './dialect.js';

export type { MigrationParameterValues } from './dialect.js';

/** QMP parameter names and their {@link MigrationParameterValues} keys. */
export const PARAMETER_KEYS = [
  ['max-bandwidth', 'maxBandwidth'],
  ['downtime-limit', 'downtimeLimit'],
  ['max-postcopy-bandwidth', 'maxPostcopyBandwidth'],
] as const;

/** Whether this QEMU reports bandwidth and downtime as migration parameters (2.8+). */
export function parametersReadable(version: QemuVersion): boolean {
  return versionAtLeast(version, 2, 8);
}

/** Reads the three values from a QMP `query-migrate-parameters` reply; throws on a reply it cannot read. */
export function parseQueryMigrateParameters(reply: unknown, version: QemuVersion): MigrationParameterValues {
  const r = reply as Record<string, unknown> | null;
  const out: MigrationParameterValues = {};
  if (!r || typeof r !== 'object' || Array.isArray(r)) {
    throw new UnrecognizedOutputError('query-migrate-parameters', JSON.stringify(reply), 'reply');
  }
  for (const [wire, key] of PARAMETER_KEYS) {
    const v = r[wire];
    if (v === undefined) {
      if (wire === 'max-postcopy-bandwidth' && !versionAtLeast(version, 3, 0)) continue;
      throw new UnrecognizedOutputError(
        'query-migrate-parameters',
        JSON.stringify(reply),
        `reply (no '${wire}')`,
      );
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw new UnrecognizedOutputError('query-migrate-parameters', JSON.stringify(reply), `'${wire}' value`);
    }
    out[key] = v;
  }
  return out;
}

/**
 * Reads the three values from HMP `info migrate_parameters`: one `key: value` per line
 * (`max-bandwidth: 134217728 bytes/second`, `downtime-limit: 300 ms`) since QEMU 2.10,
 * one line `parameters: … max-bandwidth: 33554432 bytes/second downtime-limit: 300
 * milliseconds` before. A missing or unreadable value throws, quoting the text.
 */
export function parseInfoMigrateParameters(text: string, version: QemuVersion): MigrationParameterValues {
  const out: MigrationParameterValues = {};
  for (const [wire, key] of PARAMETER_KEYS) {
    const at = new RegExp(
      `(?:^|\\s)${wire}:[ \\t]*([^\\s]*)(?:[ \\t]+(bytes/second|bytes|milliseconds|ms)\\b)?`,
      'm',
    ).exec(text);
    if (!at) {
      if (wire === 'max-postcopy-bandwidth' && !versionAtLeast(version, 3, 0)) continue;
      throw new UnrecognizedOutputError('info migrate_parameters', text, `output (no '${wire}')`);
    }
    const n = /^\d+$/.test(at[1]!) ? Number(at[1]) : Number.NaN;
    if (!Number.isSafeInteger(n)) {
      throw new UnrecognizedOutputError(
        'info migrate_parameters',
        text,
        `'${wire}' value ${JSON.stringify(at[1])} in output`,
      );
    }
    out[key] = n;
  }
  return out;
}
