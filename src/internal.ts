/**
 * Every name of the library, for the project's own tests, benchmarks and scripts. Not a
 * package entry point: users import `kvm-hypervisor` (src/index.ts), whose short list is
 * picked from these and checked by `npm run package:check`.
 * @internal
 */

// Errors: every one extends HypervisorError.
export {
  type FinalizeOutcome,
  HmpError,
  HvParamError,
  type HvParamProblem,
  HypervisorError,
  InstanceSpecError,
  type InstanceSpecProblem,
  MigrationError,
  type MigrationErrorDetails,
  type MigrationRecovery,
  MonitorClosedError,
  MonitorError,
  MonitorProtocolError,
  type MonitorProtocolErrorReason,
  MonitorTimeoutError,
  OutOfBandUnavailableError,
  PostcopyStalledError,
  QmpArgumentsError,
  QmpError,
  TlsConfigError,
  UnrecognizedOutputError,
} from './errors.js';
export type { MigrationGuardOptions } from './guard/guard.js';
// hvparams: Ganeti's table, its checks and the values it allows.
export {
  ASSESSMENT_RULES,
  type AssessmentRule,
  assessHvParams,
  BOOT_ORDERS,
  type CoerceOptions,
  CPU_PINNING_ALL,
  CPU_PINNING_SEP,
  type CpuMaskEntry,
  CpuMaskError,
  CROSS_PARAMETER_RULES,
  type CrossParameterRule,
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  coerceHvParams,
  DEFAULT_MIGRATION_BANDWIDTH,
  DEFAULT_PASSWD_FILE,
  DISK_AIO_TYPES,
  DISK_CACHE_TYPES,
  DISK_DISCARD_TYPES,
  DISK_TYPES,
  defaultHvParams,
  fillHvParamDefaults,
  findHvParameter,
  GLOBAL_HV_PARAMETERS,
  HV_PARAMETER_NAMES,
  HV_PARAMETERS,
  type HvParamDefinition,
  type HvParameterName,
  type HvParamsSpec,
  type HvParamType,
  hvParamsJsonSchema,
  hvParamsNodeProblems,
  hvParamsSyntaxProblems,
  JSON_SCHEMA_DIALECT,
  KVM_FLAG_VALUES,
  type KvmHvParams,
  type KvmHvParamsInput,
  KvmHvParamsSchema,
  MAX_CPU_MASK_TOTAL,
  MAX_CPU_NUMBER,
  MAX_VIRTIO_NET_QUEUES,
  MIGRATION_CAPS_SEP,
  MIGRATION_MODES,
  MOUSE_TYPES,
  migrationCapsProblems,
  NIC_TYPES,
  NODE_PARAMETER_RULES,
  type NodeCheck,
  type NodeParameterRule,
  OPENSSL_CIPHERS,
  parseCpuMask,
  parseHvParams,
  parseMigrationCaps,
  parseMultiCpuMask,
  parseUnit,
  QEMU_PCI_SLOTS,
  REBOOT_BEHAVIORS,
  REQUIRED_HV_PARAMETERS,
  SCSI_CONTROLLER_TYPES,
  SECURITY_MODELS,
  SPICE_ADDITIONAL_PARAMETERS,
  SPICE_IP_VERSIONS,
  SPICE_LOSSLESS_IMAGE_COMPRESSIONS,
  SPICE_LOSSY_IMAGE_COMPRESSIONS,
  SPICE_VIDEO_STREAM_DETECTIONS,
  type SyntaxCheck,
  UnitParseError,
  VALID_SERIAL_SPEEDS,
  type ValidationContext,
  validateHvParams,
} from './hvparams/index.js';
// Instance life cycle (start, stop, reboot, info, migration of library-started instances).
export type { AcceptInstanceStartOptions } from './instance/accept.js';
// Consoles, node information and node verification (Ganeti's GetInstanceConsole, GetNodeInfo, Verify).
export {
  type ConsoleContext,
  describeConsole,
  type InstanceConsole,
  instanceConsole,
  type MessageConsole,
  type SerialConsole,
  SOCAT_CONSOLE_STDIO,
  type SpiceConsole,
  VNC_BASE_PORT,
  type VncConsole,
} from './instance/console.js';
export * from './instance/index.js';
export {
  DEFAULT_START_TIMEOUT_MS,
  type InstanceInfo,
  type InstanceStateName,
  type StartInstanceOptions,
} from './instance/lifecycle.js';
export {
  awaitShutdownRecord,
  type DownState,
  downState,
  parseShutdownRecord,
  readShutdownRecord,
  SHUTDOWN_WATCHER_SOURCE,
  type ShutdownRecord,
  ShutdownRecordSchema,
  shutdownWatchArgs,
  startShutdownWatcher,
  WATCHER_GRACE_MS,
} from './instance/shutdown.js';
export type { StopInstanceOptions, StopOutcome } from './instance/stop.js';
export {
  checkTapFeatures,
  IFF_MULTI_QUEUE,
  IFF_TAP,
  IFF_VNET_HDR,
  parseTunFlags,
  readTapFlags,
  type TapFlags,
  tapProblems,
  tunDeviceUsable,
} from './instance/tap.js';
export type { KVMHypervisorOptions } from './kvm.js';
export { DEFAULT_RUN_DIR, DEFAULT_STEP_TIMEOUT_MS, KVMHypervisor } from './kvm.js';
export type { LoggerLike, LogMethod, MonitorLogger } from './logger.js';
// Migration: options, results, statuses and the fail-safe sequence.
export {
  type ConvergencePolicyOptions,
  completionTimeoutMs,
  DEFAULT_CONVERGENCE,
  QEMU_MAX_DOWNTIME_MS,
} from './migration/convergence.js';
export {
  JOURNAL_FILE_MODE,
  JOURNAL_PHASES,
  type JournalPhase,
  type MigrationJournalEntry,
  MigrationJournalError,
  type MigrationRole,
} from './migration/journal.js';
export {
  DEFAULT_RECOVER_TIMEOUT_MS,
  type MigrationRecoveryReport,
  type PairRecoveryReport,
  type RecoverMigrationOptions,
  type RecoveryEnd,
  type RecoveryPair,
  type RecoveryVmPlace,
  recoverMigrationPair,
} from './migration/recover.js';
export {
  type MigrationEnd,
  type RunMigrationOptions,
  type RunMigrationResult,
  runMigration,
} from './migration/run.js';
export { isPostcopy } from './migration/safety.js';
export {
  ACTIVE_STATUSES,
  parseInfoMigrate,
  parseQueryMigrate,
  TERMINAL_STATUSES,
} from './migration/status.js';
export type {
  AcceptInstanceOptions,
  ConvergenceAction,
  FinalizeMigrationDstOptions,
  FinalizeMigrationSourceOptions,
  IncomingMigrationResult,
  Instance,
  MigrationProgress,
  MigrationResult,
  MigrationStepOptions,
  WaitForIncomingOptions,
  WaitForMigrationOptions,
} from './migration/types.js';
// Monitor clients, their parsers (no I/O) and the typed events.
export {
  asKnownEvent,
  isMonitorEvent,
  type KnownEventName,
  type KnownMonitorEvent,
  type MigrationStatus,
  type MonitorEventPayloads,
  type TypedMonitorEvent,
} from './monitor/event-types.js';
export {
  type HmpCommandOptions,
  HmpMonitor,
  type HmpMonitorOptions,
  parseInfoVersion,
} from './monitor/hmp.js';
export {
  detectHmpError,
  type HmpFrame,
  HmpParser,
  type HmpParserOptions,
  parseHmpBanner,
  stripAnsi,
} from './monitor/hmp-parser.js';
export {
  type ExecuteOptions,
  QMP_IN_BAND_QUEUE_LIMIT,
  type QmpCommand,
  QmpMonitor,
  type QmpMonitorOptions,
} from './monitor/qmp.js';
export {
  DEFAULT_MAX_LINE_BYTES,
  MIN_MAX_LINE_BYTES,
  type QmpGreeting,
  type QmpMessage,
  QmpParser,
  type QmpParserOptions,
} from './monitor/qmp-parser.js';
export {
  type ConnectTransportOptions,
  connectTransport,
  describeAddress,
  type MonitorStream,
} from './monitor/transport.js';
export type {
  EventWaiter,
  Monitor,
  MonitorAddress,
  MonitorEvent,
  MonitorProtocol,
  OutOfBandOptions,
  WaitForEventOptions,
} from './monitor/types.js';
export type { MonitorFactory } from './monitor-pool/pool.js';
export {
  type CpuInfo,
  type MemInfo,
  type NodeInfo,
  type NodeInfoSources,
  type NodeInstanceMemory,
  parseCpuinfo,
  parseMeminfo,
  parseQemuVersionOutput,
  parseSysfsList,
  parseVmRssKiB,
  readNodeInfo,
} from './node/info.js';
export {
  findExecutable,
  type NodeVerification,
  type NodeVerifyCheck,
  type VerifyNodeOptions,
  verifyNode,
} from './node/verify.js';
// QEMU: versions, migration capabilities by version, accelerators.
export {
  type Accelerator,
  type AcceleratorChoice,
  acceleratorFromInfoKvm,
  acceleratorFromQueryKvm,
  kvmUsable,
  queryAccelerator,
  resolveAccelerator,
} from './qemu/accel.js';
export {
  CAPABILITY_RULES,
  type CapabilityRule,
  type CapabilityScope,
  type CapabilityViolation,
  canonicalCapabilityName,
  capabilitiesForVersion,
  capabilityAvailable,
  capabilityDeprecated,
  capabilityWireName,
  checkCapabilityCombination,
  findCapability,
  KNOWN_CAPABILITY_NAMES,
  MIGRATION_CAPABILITIES,
  type MigrationCapabilityInfo,
} from './qemu/capabilities.js';
export {
  compareVersions,
  formatVersion,
  parseVersion,
  type QemuVersion,
  versionAtLeast,
} from './qemu/version.js';
// Migration over TLS: the node's certificate configuration and its checks.
export {
  checkTlsFiles,
  checkTlsOptions,
  type MigrationTlsOptions,
  TLS_FILES,
  type TlsEndpoint,
  tlsOptionProblems,
} from './tls/config.js';
export { certificateDn } from './tls/dn.js';
