/**
 * Live migration: dialects, status parsing, the convergence policy and the engine that
 * `KVMHypervisor` uses.
 * @packageDocumentation
 */

export {
  ConvergencePolicy,
  type ConvergencePolicyOptions,
  completionTimeoutMs,
  DEFAULT_CONVERGENCE,
  QEMU_MAX_DOWNTIME_MS,
} from './convergence.js';
export {
  capabilityCommands,
  describeCommand,
  dialectFor,
  downtimeCommand,
  type MigrationDialect,
  type MonitorCommand,
  migrateCommand,
  migratePauseCommand,
  migrateRecoverCommand,
  migrateResumeCommand,
  parameterCommands,
  resolveCapabilities,
} from './dialect.js';
export {
  acceptPostcopyRecovery,
  POSTCOPY_CONFIRM_MS,
  POSTCOPY_RESUME_CONFIRM_MS,
  type PostcopyPauseResult,
  type PostcopyRecoveryResult,
  type PostcopyResumeResult,
  pausePostcopy,
  postcopyPauseStatuses,
  resumePostcopy,
} from './postcopy.js';
export { type MigrationEnd, type RunMigrationOptions, type RunMigrationResult, runMigration } from './run.js';
export { isPostcopy, type SourceObservation, type SourceVerdict, sourceVerdict } from './safety.js';
export {
  ACTIVE_STATUSES,
  parseHumanSize,
  parseInfoMigrate,
  parseInfoMigrateCapabilities,
  parseInfoStatus,
  parseQueryMigrate,
  TERMINAL_STATUSES,
} from './status.js';
export type * from './types.js';
export { migrationUri } from './uri.js';
