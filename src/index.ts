/**
 * kvm-hypervisor: Ganeti's KVM hvparams as typed TypeScript, and QEMU live migration
 * over QMP/HMP that never loses a VM.
 * @packageDocumentation
 */
export * from './errors.js';
export * from './hvparams/index.js';
export { DEFAULT_RUN_DIR, DEFAULT_STEP_TIMEOUT_MS, KVMHypervisor } from './kvm.js';
export type { LoggerLike, LogMethod, MonitorLogger } from './logger.js';
export * from './migration/index.js';
export * from './monitor/index.js';
export type * from './monitor/types.js';
export * from './qemu/accel.js';
export * from './qemu/capabilities.js';
export * from './qemu/version.js';
