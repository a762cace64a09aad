/**
 * The migration settings a migration changes, snapshotted before it starts and restored
 * after it ends (success or failure), as libvirt does: bandwidth, downtime, post-copy
 * bandwidth and every capability we turned on or off. Parsing is pure; the commands are
 * returned, not sent.
 */
import { UnrecognizedOutputError } from '../errors.js';
import type { QemuVersion } from '../qemu/version.js';
import { versionAtLeast } from '../qemu/version.js';
import { capabilityCommands, type MigrationDialect, type MonitorCommand } from './dialect.js';

/** Parameter values as QEMU reported them before the migration. */
export interface MigrationParameterValues {
  /** `max-bandwidth`, bytes/s. */
  maxBandwidth?: number;
  /** `downtime-limit`, ms. */
  downtimeLimit?: number;
  /** `max-postcopy-bandwidth`, bytes/s (QEMU 3.0+). */
  maxPostcopyBandwidth?: number;
}

/** What a migration changed and what it was before. */
export interface SettingsSnapshot {
  /** Parameters before the migration; undefined when this QEMU cannot report them (before 2.8). */
  parameters?: MigrationParameterValues;
  /** Capability states before the migration, for those we changed. */
  capabilities: [name: string, on: boolean][];
}

const KEYS = [
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
  for (const [wire, key] of KEYS) {
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
  for (const [wire, key] of KEYS) {
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

/** The command that reads the parameters in `dialect`, or undefined where they cannot be read. */
export function readParametersCommand(dialect: MigrationDialect): MonitorCommand | undefined {
  if (dialect === 'qmp') return { kind: 'qmp', execute: 'query-migrate-parameters' };
  if (dialect === 'hmp') return { kind: 'hmp', line: 'info migrate_parameters' };
  return undefined;
}

/** Commands that put the parameters and capabilities of `snapshot` back. */
export function restoreCommands(dialect: MigrationDialect, snapshot: SettingsSnapshot): MonitorCommand[] {
  const cmds: MonitorCommand[] = [];
  const p = snapshot.parameters;
  if (p && (dialect === 'qmp' || dialect === 'hmp')) {
    if (dialect === 'qmp') {
      const args: Record<string, number> = {};
      for (const [wire, key] of KEYS) if (p[key] !== undefined) args[wire] = p[key];
      if (Object.keys(args).length > 0)
        cmds.push({ kind: 'qmp', execute: 'migrate-set-parameters', arguments: args });
    } else {
      // Explicit byte suffix: a bare HMP max-bandwidth number means MiB/s.
      if (p.maxBandwidth !== undefined)
        cmds.push({ kind: 'hmp', line: `migrate_set_parameter max-bandwidth ${p.maxBandwidth}B` });
      if (p.downtimeLimit !== undefined)
        cmds.push({ kind: 'hmp', line: `migrate_set_parameter downtime-limit ${p.downtimeLimit}` });
      if (p.maxPostcopyBandwidth !== undefined)
        cmds.push({
          kind: 'hmp',
          line: `migrate_set_parameter max-postcopy-bandwidth ${p.maxPostcopyBandwidth}B`,
        });
    }
  }
  cmds.push(...capabilityCommands(dialect.startsWith('qmp') ? 'qmp' : 'hmp', snapshot.capabilities));
  return cmds;
}
