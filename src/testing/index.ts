/**
 * Test helpers for users of kvm-hypervisor: `kvm-hypervisor/testing`.
 *
 * * {@link MockMonitor}: an in-memory `Monitor` that answers like a given QEMU version.
 * * {@link FakeQmpServer}: a scripted QMP server on a UNIX socket, for socket-level tests.
 * * {@link QemuVm}: starts and stops real local `qemu-system-x86_64` processes (TCG).
 * * {@link buildGuestImage}: a tiny Multiboot guest that dirties memory at a chosen rate,
 *   so integration tests can migrate a VM with real work.
 * @packageDocumentation
 */

export {
  buildGuestImage,
  GUEST_STATUS_ADDRESS,
  type GuestImageOptions,
  type GuestStatus,
  guestMemoryMiBFor,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../guest/image.js';
export { findQemuBinary, freePort, type QemuExit, QemuVm, type QemuVmOptions } from '../qemu/process.js';
export * from './fake-qmp-server.js';
export * from './mock-monitor.js';
export {
  MOCK_PARAMS,
  type MockParamInfo,
  type MockParamKind,
  paramsForVersion,
  parseHmpSize,
} from './mock-params.js';
export * from './stream-pair.js';
export {
  RecordingMonitor,
  type Transcript,
  type TranscriptExchange,
  TranscriptMismatchError,
  TranscriptMonitor,
  type TranscriptReply,
  type TranscriptSend,
} from './transcript.js';
