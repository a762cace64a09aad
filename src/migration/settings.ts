/**
 * The migration settings a migration changes, in one place: read and snapshotted before it
 * starts ({@link readParameters}, {@link sourceSnapshot}, {@link destinationSnapshot}) and
 * put back after it ends, success or failure ({@link restoreSettings},
 * {@link clearCapabilities}), as libvirt does: bandwidth, downtime, post-copy bandwidth
 * and every capability we turned on or off. The command builders are pure; the parsers
 * are in parameters.ts; the journal stores a snapshot on disk (journal.ts: `snapshotOf`).
 */
import type { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { UnrecognizedOutputError } from '../errors.js';
import { findCapability } from '../qemu/capabilities.js';
import { isDeadline, isMonitorGone, type VmChannel } from './channel.js';
import {
  capabilityCommands,
  describeCommand,
  dialectFor,
  type MigrationDialect,
  type MigrationParameterValues,
  type MonitorCommand,
  resolveCapabilities,
} from './dialect.js';
import {
  PARAMETER_KEYS,
  parametersReadable,
  parseInfoMigrateParameters,
  parseQueryMigrateParameters,
} from './parameters.js';

/** What a migration changed and what it was before. */
export interface SettingsSnapshot {
  /** Parameters before the migration; undefined when this QEMU cannot report them (before 2.8). */
  parameters?: MigrationParameterValues;
  /** Capability states before the migration, for those we changed. */
  capabilities: [name: string, on: boolean][];
}

/** The command that reads the parameters in `dialect`, or undefined where they cannot be read. */
function readParametersCommand(dialect: MigrationDialect): MonitorCommand | undefined {
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
      for (const [wire, key] of PARAMETER_KEYS) if (p[key] !== undefined) args[wire] = p[key];
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

/** Reads bandwidth/downtime before the migration; undefined (logged) where they cannot be read. */
export async function readParameters(
  ch: VmChannel,
  deadline: Deadline,
): Promise<MigrationParameterValues | undefined> {
  const { version, protocol } = ch.monitor;
  const dialect = dialectFor(protocol, version);
  const cmd = readParametersCommand(dialect);
  if (!cmd || !parametersReadable(version)) return undefined;
  let raw: unknown;
  try {
    raw = await ch.send(cmd, deadline);
  } catch (e) {
    if (isMonitorGone(e, ch.monitor) || isDeadline(e)) throw e;
    ch.log.warn({ err: errorText(e) }, 'cannot read the migration parameters; they will not be restored');
    return undefined;
  }
  try {
    return protocol === 'qmp'
      ? parseQueryMigrateParameters(raw, version)
      : parseInfoMigrateParameters(String(raw), version);
  } catch (e) {
    if (!(e instanceof UnrecognizedOutputError)) throw e;
    ch.log.warn({ err: errorText(e) }, 'cannot read the migration parameters; they will not be restored');
    return undefined;
  }
}

/**
 * The source's snapshot: the previous state of each capability the set-up changes
 * (`states`: what goes out; `wanted`: the states it sets), and the parameters read before.
 */
export function sourceSnapshot(
  states: readonly (readonly [string, boolean])[],
  listed: ReadonlyMap<string, boolean> | undefined,
  wanted: ReadonlyMap<string, boolean>,
  parameters: MigrationParameterValues | undefined,
): SettingsSnapshot {
  return {
    // 'events' only makes QEMU report migration states; once on it stays on (as libvirt
    // leaves it), so later set-ups need not send it. Without QEMU's list the previous state
    // is unknown; clearing is the documented fallback.
    capabilities: states
      .filter(([name]) => name !== 'events')
      .map(([name]) => [name, listed?.get(name) ?? false] as [string, boolean])
      .filter(([name, before]) => wanted.get(name) !== before),
    ...(parameters ? { parameters } : {}),
  };
}

/** The destination's snapshot: each capability it turns on that was not on before. */
export function destinationSnapshot(
  wire: readonly string[],
  listed: ReadonlyMap<string, boolean> | undefined,
): SettingsSnapshot {
  return {
    capabilities: wire.filter((n) => listed?.get(n) !== true).map((n) => [n, false]),
  };
}

/**
 * Puts back the parameters and capabilities of the snapshot, each command on its own (one
 * failing does not skip the next). Returns the problems, which are also logged.
 */
export async function restoreSettings(
  ch: VmChannel,
  snapshot: SettingsSnapshot,
  deadline: Deadline,
): Promise<string[]> {
  const problems: string[] = [];
  const dialect = dialectFor(ch.monitor.protocol, ch.monitor.version);
  for (const cmd of restoreCommands(dialect, snapshot)) {
    try {
      await ch.send(cmd, deadline);
    } catch (e) {
      const text = `restoring '${describeCommand(cmd)}' failed: ${errorText(e)}`;
      ch.log.error({ err: errorText(e) }, text);
      problems.push(text);
    }
  }
  return problems;
}

/** Turns off the capabilities among `requested` that are on (any spelling). */
export async function clearCapabilities(
  ch: VmChannel,
  requested: readonly string[],
  deadline: Deadline,
): Promise<string[]> {
  if (requested.length === 0) return [];
  const listed = await ch.listCapabilities(deadline);
  const names = new Set(requested.map((n) => findCapability(n)?.name ?? n));
  const off: string[] = [];
  if (listed) {
    for (const [name, on] of listed) if (on && names.has(findCapability(name)?.name ?? name)) off.push(name);
  } else {
    off.push(...resolveCapabilities(requested, ch.monitor.version, undefined, ch.instance));
  }
  for (const cmd of capabilityCommands(
    ch.monitor.protocol,
    off.map((n) => [n, false] as const),
  )) {
    await ch.must(cmd, 'clearing migration capabilities', deadline);
  }
  return off;
}
