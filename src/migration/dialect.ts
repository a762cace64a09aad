/**
 * Migration dialects: which monitor commands set the bandwidth, the downtime and the
 * capabilities, and start a migration, for each protocol and QEMU version. Pure: the
 * functions here return commands; the controller sends them.
 *
 * | dialect      | bandwidth / downtime                                  | capabilities                        | start             |
 * |--------------|-------------------------------------------------------|-------------------------------------|-------------------|
 * | `hmp-legacy` | `migrate_set_speed <MiB>m`, `migrate_set_downtime <ms>ms` | `migrate_set_capability <c> on` each | `migrate -d <uri>` |
 * | `hmp`        | `migrate_set_parameter max-bandwidth <MiB>M`, `… downtime-limit <ms>` | the same                | `migrate -d <uri>` |
 * | `qmp-legacy` | `migrate_set_speed` (bytes/s), `migrate_set_downtime` (s) | one `migrate-set-capabilities`     | `migrate {uri}`   |
 * | `qmp`        | one `migrate-set-parameters` (bytes/s, ms)            | one `migrate-set-capabilities`      | `migrate {uri}`   |
 */
import { MigrationError } from '../errors.js';
import type { MonitorProtocol } from '../monitor/types.js';
import {
  capabilityAvailable,
  capabilityWireName,
  checkCapabilityCombination,
  findCapability,
  type MigrationCapabilityInfo,
} from '../qemu/capabilities.js';
import { formatVersion, type QemuVersion, versionAtLeast } from '../qemu/version.js';

/** Parameter values as QEMU reported them before the migration. */
export interface MigrationParameterValues {
  /** `max-bandwidth`, bytes/s. */
  maxBandwidth?: number;
  /** `downtime-limit`, ms. */
  downtimeLimit?: number;
  /** `max-postcopy-bandwidth`, bytes/s (QEMU 3.0+). */
  maxPostcopyBandwidth?: number;
}

/** The four command sets kvm-hypervisor speaks. */
export type MigrationDialect = 'hmp-legacy' | 'hmp' | 'qmp-legacy' | 'qmp';

/** One command to send: QMP (`execute` + `arguments`) or one HMP line. */
export type MonitorCommand =
  | { kind: 'qmp'; execute: string; arguments?: Record<string, unknown> }
  | { kind: 'hmp'; line: string };

const MiB = 1024 * 1024;

/** Picks the dialect: `migrate-set-parameters` / `migrate_set_parameter` exist from QEMU 2.8. */
export function dialectFor(protocol: MonitorProtocol, version: QemuVersion): MigrationDialect {
  const modern = versionAtLeast(version, 2, 8);
  if (protocol === 'hmp') return modern ? 'hmp' : 'hmp-legacy';
  return modern ? 'qmp' : 'qmp-legacy';
}

/** Human-readable form of a command, for logs and error messages. */
export function describeCommand(cmd: MonitorCommand): string {
  if (cmd.kind === 'hmp') return cmd.line;
  return cmd.arguments ? `${cmd.execute} ${JSON.stringify(cmd.arguments)}` : cmd.execute;
}

/**
 * Resolves requested capability names (any spelling) to the names this QEMU uses.
 * `available` is QEMU's own list (`query-migrate-capabilities` / `info
 * migrate_capabilities`) and decides when given; the catalogue explains why a name is
 * missing. Combinations this version refuses are rejected too. Throws `MigrationError`
 * naming the capability and the version; nothing has been sent to the VM at that point.
 */
export function resolveCapabilities(
  requested: readonly string[],
  version: QemuVersion,
  available: ReadonlyMap<string, boolean> | undefined,
  instance?: string,
): string[] {
  const ver = formatVersion(version);
  const wire: string[] = [];
  const problems: string[] = [];
  for (const name of requested) {
    const info = findCapability(name);
    if (!info) {
      problems.push(`capability '${name}' is not a QEMU migration capability`);
      continue;
    }
    const candidates = [capabilityWireName(info, version), info.name, info.renamedFrom?.name].filter(
      (n): n is string => n !== undefined,
    );
    if (available) {
      const hit = candidates.find((n) => available.has(n));
      if (hit) wire.push(hit);
      else problems.push(`capability '${name}' is not supported by QEMU ${ver}${why(info, version, true)}`);
      continue;
    }
    if (!capabilityAvailable(info, version)) {
      problems.push(`capability '${name}' is not supported by QEMU ${ver}${why(info, version, false)}`);
      continue;
    }
    wire.push(capabilityWireName(info, version));
  }
  for (const v of checkCapabilityCombination(requested, version)) problems.push(v.message);
  if (problems.length > 0) {
    throw new MigrationError(
      `cannot migrate${instance ? ` instance '${instance}'` : ''}: ${problems.join('; ')}`,
      {
        instance,
      },
    );
  }
  return wire;
}

function why(info: MigrationCapabilityInfo, version: QemuVersion, listed: boolean): string {
  if (versionAtLeast(version, info.since.major, info.since.minor, info.since.micro) === false) {
    return ` (added in QEMU ${formatVersion(info.since)})`;
  }
  if (info.removedIn && versionAtLeast(version, info.removedIn.major, info.removedIn.minor)) {
    return ` (removed in QEMU ${formatVersion(info.removedIn)})`;
  }
  return listed ? ' (this QEMU build does not list it)' : '';
}

/** Settings for {@link parameterCommands}. */
export interface MigrationParameterSettings {
  /** `migration_bandwidth`, MiB/s. */
  bandwidthMiBps: number;
  /** `migration_downtime`, ms. */
  downtimeMs: number;
  /**
   * Whether the migration may switch to post-copy (default true). Without `postcopy-ram`
   * there is no post-copy phase, so `max-postcopy-bandwidth` is left alone.
   */
  postcopy?: boolean;
  /**
   * The values QEMU reported just before (`query-migrate-parameters`): a value already in
   * place is not sent again. Undefined sends every value.
   */
  current?: MigrationParameterValues;
}

/**
 * Commands that set the bandwidth and the downtime in `dialect` (and, from QEMU 3.0, the
 * post-copy bandwidth when `postcopy`), leaving out what `current` says is already set:
 * QEMU reads monitor input a byte per main-loop turn, so a value not sent is time saved.
 */
export function parameterCommands(
  dialect: MigrationDialect,
  version: QemuVersion,
  s: MigrationParameterSettings,
): MonitorCommand[] {
  const bytes = s.bandwidthMiBps * MiB;
  const postcopy = s.postcopy !== false && versionAtLeast(version, 3, 0);
  const cur = s.current;
  const wanted: [wire: string, value: number, hmp: string][] = [];
  if (cur?.maxBandwidth !== bytes) wanted.push(['max-bandwidth', bytes, `${s.bandwidthMiBps}M`]);
  if (cur?.downtimeLimit !== s.downtimeMs) wanted.push(['downtime-limit', s.downtimeMs, `${s.downtimeMs}`]);
  // Ganeti PR #1539: an unlimited post-copy phase can starve DRBD; cap it the same way.
  if (postcopy && cur?.maxPostcopyBandwidth !== bytes) {
    wanted.push(['max-postcopy-bandwidth', bytes, `${s.bandwidthMiBps}M`]);
  }
  switch (dialect) {
    case 'qmp':
      return wanted.length === 0
        ? []
        : [
            {
              kind: 'qmp',
              execute: 'migrate-set-parameters',
              arguments: Object.fromEntries(wanted.map(([wire, value]) => [wire, value])),
            },
          ];
    case 'hmp':
      // An explicit suffix: a bare HMP max-bandwidth number means MiB/s, QMP's means bytes/s.
      return wanted.map(([wire, , text]) => ({ kind: 'hmp', line: `migrate_set_parameter ${wire} ${text}` }));
    case 'qmp-legacy':
      return [
        { kind: 'qmp', execute: 'migrate_set_speed', arguments: { value: bytes } },
        { kind: 'qmp', execute: 'migrate_set_downtime', arguments: { value: s.downtimeMs / 1000 } },
      ];
    case 'hmp-legacy':
      return [
        { kind: 'hmp', line: `migrate_set_speed ${s.bandwidthMiBps}m` },
        { kind: 'hmp', line: `migrate_set_downtime ${s.downtimeMs}ms` },
      ];
  }
}

/** The command that changes only the downtime of a running migration. */
export function downtimeCommand(dialect: MigrationDialect, downtimeMs: number): MonitorCommand {
  switch (dialect) {
    case 'qmp':
      return { kind: 'qmp', execute: 'migrate-set-parameters', arguments: { 'downtime-limit': downtimeMs } };
    case 'qmp-legacy':
      return { kind: 'qmp', execute: 'migrate_set_downtime', arguments: { value: downtimeMs / 1000 } };
    case 'hmp':
      return { kind: 'hmp', line: `migrate_set_parameter downtime-limit ${downtimeMs}` };
    case 'hmp-legacy':
      return { kind: 'hmp', line: `migrate_set_downtime ${downtimeMs}ms` };
  }
}

/**
 * Commands that set capabilities: QMP sends one `migrate-set-capabilities` (all or
 * nothing since QEMU 2.12), HMP one `migrate_set_capability` line each.
 */
export function capabilityCommands(
  protocol: MonitorProtocol,
  states: ReadonlyArray<readonly [name: string, on: boolean]>,
): MonitorCommand[] {
  if (states.length === 0) return [];
  if (protocol === 'qmp') {
    return [
      {
        kind: 'qmp',
        execute: 'migrate-set-capabilities',
        arguments: { capabilities: states.map(([capability, state]) => ({ capability, state })) },
      },
    ];
  }
  return states.map(([name, on]) => ({
    kind: 'hmp',
    line: `migrate_set_capability ${name} ${on ? 'on' : 'off'}`,
  }));
}

/** The command that starts the migration (asynchronous in every dialect). */
export function migrateCommand(protocol: MonitorProtocol, uri: string): MonitorCommand {
  return protocol === 'qmp'
    ? { kind: 'qmp', execute: 'migrate', arguments: { uri } }
    : { kind: 'hmp', line: `migrate -d ${uri}` };
}

/** A command without arguments in both protocols (`stop`, `cont`, `migrate_cancel`, …). */
export function simpleCommand(protocol: MonitorProtocol, qmpName: string, hmpLine = qmpName): MonitorCommand {
  return protocol === 'qmp' ? { kind: 'qmp', execute: qmpName } : { kind: 'hmp', line: hmpLine };
}

/**
 * `migrate-pause` (QMP, allowed out of band) / `migrate_pause` (HMP), QEMU 3.0+: breaks the
 * migration stream of a post-copy migration on this end, which goes to `postcopy-paused`.
 */
export function migratePauseCommand(protocol: MonitorProtocol): MonitorCommand {
  return simpleCommand(protocol, 'migrate-pause', 'migrate_pause');
}

/**
 * `migrate-recover {uri}` (QMP, allowed out of band) / `migrate_recover URI` (HMP), QEMU
 * 3.0+: a destination in `postcopy-paused` listens on `uri` for the source's resume.
 */
export function migrateRecoverCommand(protocol: MonitorProtocol, uri: string): MonitorCommand {
  return protocol === 'qmp'
    ? { kind: 'qmp', execute: 'migrate-recover', arguments: { uri } }
    : { kind: 'hmp', line: `migrate_recover ${uri}` };
}

/**
 * `migrate {uri, resume: true}` (QMP) / `migrate -d -r URI` (HMP), QEMU 3.0+: a source in
 * `postcopy-paused` reconnects to a destination that accepted the recovery. Asynchronous in
 * both, like {@link migrateCommand}.
 */
export function migrateResumeCommand(protocol: MonitorProtocol, uri: string): MonitorCommand {
  return protocol === 'qmp'
    ? { kind: 'qmp', execute: 'migrate', arguments: { uri, resume: true } }
    : { kind: 'hmp', line: `migrate -d -r ${uri}` };
}
