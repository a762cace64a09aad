/**
 * The migration journal: what one node needs to finish or undo a migration once the
 * process that started it is gone. Cluster managers call each step (accept, migrate,
 * status, finalize) from a new process, and a job can die between any two, so the
 * settings snapshot, the role and the phase live on disk, not in memory.
 *
 * One file per instance and role (`<dir>/<name>.<role>.migration`, JSON, format version
 * 1, mode 0600), written before each step that changes QEMU: to a temporary file, then
 * renamed over the journal, both done before the step sends anything, so a process that
 * dies at any point leaves the old or the new journal, never half of one (the kernel keeps
 * what was written when a process dies). The file and its folder are then fsynced on
 * Node's thread pool, off the set-up's path: fsync only matters if the host itself
 * crashes, and that takes the QEMU, whose settings the journal describes, with it (an
 * fsync in line cost 8 ms a set-up on this project's ext4 test machine under load, more
 * than the rest of the set-up). Removed once the migration is finalized. A damaged file or
 * an unknown format version is a {@link MigrationJournalError} quoting it, never ignored:
 * it may be all that says how to put a VM's settings back.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { Static } from 'typebox';
import * as Type from 'typebox/type';
import { Value } from 'typebox/value';
import { HypervisorError } from '../errors.js';
import type { KvmHvParams } from '../hvparams/index.js';
import type { VmChannel } from './channel.js';
import type { AcceptedMigration } from './destination.js';
import { dialectFor } from './dialect.js';
import { type MigrationSession, openSession } from './session.js';
import type { SettingsSnapshot } from './settings.js';
import type { StartedMigration } from './source.js';

/** Mode of a journal file: it names sockets, peers and certificate folders. */
export const JOURNAL_FILE_MODE = 0o600;

/** Which end of the migration a journal belongs to. */
export type MigrationRole = 'source' | 'destination';

/**
 * Where a journaled migration stands, as the last step that wrote it saw it (QEMU's own
 * state decides what recovery does; the phase tells the operator).
 * - `accepted`: destination; capabilities (and TLS objects) being set or set, listening
 *   or receiving.
 * - `migrating`: source; settings being changed, or `migrate` sent: QEMU may be migrating.
 * - `postcopy`: either end saw post-copy: the VM's memory is split between the two hosts.
 * - `completed`: QEMU reported the migration completed.
 */
export const JOURNAL_PHASES = ['accepted', 'migrating', 'postcopy', 'completed'] as const;

/** One of {@link JOURNAL_PHASES}. */
export type JournalPhase = (typeof JOURNAL_PHASES)[number];

const Phase = Type.Union([
  Type.Literal('accepted'),
  Type.Literal('migrating'),
  Type.Literal('postcopy'),
  Type.Literal('completed'),
]);
const NonNegative = Type.Integer({ minimum: 0 });

/** The journal of one end of one migration (JSON, format version 1). */
const MigrationJournalSchema = Type.Object(
  {
    formatVersion: Type.Literal(1),
    instance: Type.String({ minLength: 1 }),
    role: Type.Union([Type.Literal('source'), Type.Literal('destination')]),
    phase: Phase,
    /** Source: the target host; destination: the address it listens on, when known. */
    peer: Type.Optional(Type.String()),
    /** The migration URI (`tcp:host:port`). */
    uri: Type.Optional(Type.String()),
    /** The migration hvparams the step used (bandwidth MiB/s, downtime ms, caps, port, mode). */
    hvparams: Type.Object(
      {
        migration_bandwidth: NonNegative,
        migration_downtime: NonNegative,
        migration_caps: Type.String(),
        migration_port: NonNegative,
        migration_mode: Type.String(),
      },
      { additionalProperties: false },
    ),
    /** Capabilities turned on, as this QEMU names them. */
    capabilities: Type.Array(Type.String()),
    /** What the settings were before the migration, for those it changed (capability: state before). */
    snapshot: Type.Object(
      {
        capabilities: Type.Record(Type.String(), Type.Boolean()),
        parameters: Type.Optional(
          Type.Object(
            {
              maxBandwidth: Type.Optional(NonNegative),
              downtimeLimit: Type.Optional(NonNegative),
              maxPostcopyBandwidth: Type.Optional(NonNegative),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
    /** TLS credentials (objects and `tls-*` parameters) were put in place. */
    tls: Type.Boolean(),
    /** Source: MIGRATION events were on. */
    eventsEnabled: Type.Boolean(),
    /** Source: `postcopy-ram` was on. */
    postcopy: Type.Boolean(),
    /** Live (true) or stop-and-copy. */
    live: Type.Boolean(),
    /** Source: the VM ran before the migration. */
    wasRunning: Type.Boolean(),
    /** Source: the VM was stopped by us for a non-live migration. */
    stoppedByUs: Type.Boolean(),
    /** Source: the downtime limit asked for (ms). */
    downtimeMs: NonNegative,
    /** Epoch ms: when the step that created the journal started. */
    startedAt: NonNegative,
    /** Epoch ms of the last write. */
    updatedAt: NonNegative,
    /** The process that last wrote it (for the operator: which job it was). */
    writerPid: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);

/** The journal of one end of one migration. */
export type MigrationJournalEntry = Static<typeof MigrationJournalSchema>;

/** A journal file that cannot be read, is damaged, or has a format this version does not know. */
export class MigrationJournalError extends HypervisorError {
  override name = 'MigrationJournalError';
  /** The journal file. */
  readonly path: string;
  constructor(path: string, message: string, cause?: unknown) {
    super(`migration journal ${path}: ${message}`, cause === undefined ? undefined : { cause });
    this.path = path;
  }
}

/** Parses a journal's text. @throws MigrationJournalError quoting the text when it is not a version-1 journal. */
export function parseMigrationJournal(text: string, path: string): MigrationJournalEntry {
  const shown = JSON.stringify(text.length > 2000 ? `${text.slice(0, 2000)}…` : text);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new MigrationJournalError(
      path,
      `damaged (not JSON): ${shown}; move it away only after checking the VM's migration settings by hand`,
    );
  }
  const version = (value as { formatVersion?: unknown } | null)?.formatVersion;
  if (version !== 1) {
    throw new MigrationJournalError(
      path,
      `format version ${JSON.stringify(version)} is not one this library reads (1): ${shown}`,
    );
  }
  if (!Value.Check(MigrationJournalSchema, value)) {
    const first = Value.Errors(MigrationJournalSchema, value)[0];
    const where = first ? ` (${first.instancePath || '/'} ${first.message})` : '';
    throw new MigrationJournalError(path, `damaged${where}: ${shown}`);
  }
  return value;
}

/** Writes `text` to `path` atomically: a temporary file (mode 0600), renamed over `path`. */
function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: JOURNAL_FILE_MODE });
  renameSync(tmp, path);
}

/** fsyncs `path` and then its folder (so that the rename is on disk too). */
async function flush(path: string, dir: string): Promise<void> {
  for (const p of [path, dir]) {
    const handle = await open(p, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }
}

/** The journals of one folder (a node's run directory `conf/`, or a `stateDir`). */
export class MigrationJournal {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The file of `name`'s journal for `role`. */
  path(name: string, role: MigrationRole): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) || name.length > 200) {
      throw new HypervisorError(`instance name '${name}' is not usable as a file name`);
    }
    return join(this.dir, `${name}.${role}.migration`);
  }

  /** The journal, or undefined when there is none. @throws MigrationJournalError when it is unreadable or damaged. */
  read(name: string, role: MigrationRole): MigrationJournalEntry | undefined {
    const path = this.path(name, role);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new MigrationJournalError(path, `cannot be read: ${(e as Error).message}`, e);
    }
    return parseMigrationJournal(text, path);
  }

  /**
   * Writes the journal atomically (mode 0600), creating the folder if needed; it is in
   * place when this returns. Call {@link flush} to have it fsynced as well.
   */
  write(entry: MigrationJournalEntry): void {
    const path = this.path(entry.instance, entry.role);
    const text = `${JSON.stringify({ ...entry, updatedAt: Date.now(), writerPid: process.pid }, null, 2)}\n`;
    try {
      try {
        writeAtomically(path, text);
      } catch (e) {
        // The folder is created on first use only (no mkdir on every set-up).
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
        mkdirSync(this.dir, { recursive: true, mode: 0o700 });
        writeAtomically(path, text);
      }
    } catch (e) {
      rmSync(`${path}.tmp-${process.pid}`, { force: true });
      throw new MigrationJournalError(path, `cannot be written: ${(e as Error).message}`, e);
    }
  }

  /**
   * fsyncs the journal and its folder on Node's thread pool. Never rejects: a journal that
   * is gone (finalized meanwhile) or a failed fsync only loses durability across a host
   * crash, which the QEMU it describes does not survive either.
   */
  async flush(name: string, role: MigrationRole): Promise<void> {
    await flush(this.path(name, role), this.dir).catch(() => {});
  }

  /** Moves the journal to `phase` (written only when the phase changes); no journal: nothing. */
  advance(name: string, role: MigrationRole, phase: JournalPhase): void {
    const entry = this.read(name, role);
    if (entry && entry.phase !== phase) {
      this.write({ ...entry, phase });
      void this.flush(name, role);
    }
  }

  /** Removes the journal (a missing one is fine). */
  remove(name: string, role: MigrationRole): void {
    rmSync(this.path(name, role), { force: true });
  }
}

/** A settings snapshot as the journal stores it (capabilities as a name → state map). */
function journaledSnapshot(snapshot: SettingsSnapshot): MigrationJournalEntry['snapshot'] {
  return {
    capabilities: Object.fromEntries(snapshot.capabilities),
    ...(snapshot.parameters ? { parameters: { ...snapshot.parameters } } : {}),
  };
}

/** The settings snapshot a journal holds, as the restore commands take it. */
function snapshotOf(entry: MigrationJournalEntry): SettingsSnapshot {
  return {
    capabilities: Object.entries(entry.snapshot.capabilities),
    ...(entry.snapshot.parameters ? { parameters: { ...entry.snapshot.parameters } } : {}),
  };
}

/** The migration hvparams a journal records. */
function journaledHvParams(p: KvmHvParams): MigrationJournalEntry['hvparams'] {
  return {
    migration_bandwidth: p.migration_bandwidth,
    migration_downtime: p.migration_downtime,
    migration_caps: p.migration_caps,
    migration_port: p.migration_port,
    migration_mode: p.migration_mode,
  };
}

/** The source's journal for a session about to change the VM (one write: `migrating`). */
export function sourceJournalEntry(
  session: MigrationSession,
  hvparams: KvmHvParams,
  target: string,
  tls: boolean,
): MigrationJournalEntry {
  return {
    formatVersion: 1,
    instance: session.instance,
    role: 'source',
    phase: 'migrating',
    peer: target,
    uri: session.uri,
    hvparams: journaledHvParams(hvparams),
    capabilities: [...session.capabilities],
    snapshot: journaledSnapshot(session.snapshot),
    tls,
    eventsEnabled: session.eventsEnabled,
    postcopy: session.postcopy,
    live: session.live,
    wasRunning: session.wasRunning,
    // Written before `stop` is sent: what the set-up will do, so that a crash right after
    // it still resumes the VM (a VM that ran before is resumed either way).
    stoppedByUs: !session.live && session.wasRunning,
    downtimeMs: session.downtimeMs,
    startedAt: session.startedAt,
    updatedAt: Date.now(),
    writerPid: process.pid,
  };
}

/** The destination's journal, written before `accept` changes the first capability. */
export function destinationJournalEntry(
  name: string,
  accepted: AcceptedMigration,
  hvparams: KvmHvParams,
  options: { tls: boolean; live: boolean; listen?: string | undefined; uri?: string | undefined },
): MigrationJournalEntry {
  const now = Date.now();
  return {
    formatVersion: 1,
    instance: name,
    role: 'destination',
    phase: 'accepted',
    ...(options.listen === undefined ? {} : { peer: options.listen }),
    ...(options.uri === undefined ? {} : { uri: options.uri }),
    hvparams: journaledHvParams(hvparams),
    capabilities: [...accepted.capabilities],
    snapshot: journaledSnapshot(accepted.snapshot),
    tls: options.tls,
    eventsEnabled: false,
    postcopy: false,
    live: options.live,
    wasRunning: false,
    stoppedByUs: false,
    downtimeMs: hvparams.migration_downtime,
    startedAt: now,
    updatedAt: now,
    writerPid: process.pid,
  };
}

/** What a source's finalize needs, read back from its journal. */
export function startedFromJournal(entry: MigrationJournalEntry): StartedMigration {
  return {
    snapshot: snapshotOf(entry),
    tls: entry.tls,
    wasRunning: entry.wasRunning,
    stoppedByUs: entry.stoppedByUs,
  };
}

/** What a destination's finalize needs, read back from its journal. */
export function acceptedFromJournal(entry: MigrationJournalEntry): AcceptedMigration {
  return { capabilities: [...entry.capabilities], snapshot: snapshotOf(entry), tls: entry.tls };
}

/** Re-creates the session an earlier process started, on a new monitor channel. */
export function sessionFromJournal(entry: MigrationJournalEntry, ch: VmChannel): MigrationSession {
  return openSession(
    {
      instance: entry.instance,
      channel: ch,
      dialect: dialectFor(ch.monitor.protocol, ch.monitor.version),
      capabilities: [...entry.capabilities],
      // Events are only listened to when this monitor is QMP (the journal's may have been another).
      eventsEnabled: entry.eventsEnabled && ch.monitor.protocol === 'qmp',
      postcopy: entry.postcopy,
      live: entry.live,
      wasRunning: entry.wasRunning,
      snapshot: snapshotOf(entry),
      downtimeMs: entry.downtimeMs,
      uri: entry.uri ?? '',
    },
    { startedAt: entry.startedAt, stoppedByUs: entry.stoppedByUs, migrateSent: true, tls: entry.tls },
  );
}
