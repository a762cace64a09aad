/**
 * Test helpers for users of kvm-hypervisor: `kvm-hypervisor/testing`.
 *
 * * {@link MockMonitor}: an in-memory `Monitor` that answers like a given QEMU version.
 * * {@link FakeQmpServer}: a scripted QMP server on a UNIX socket, for socket-level tests.
 * * {@link QemuVm}: starts and stops real local `qemu-system-x86_64` processes (TCG).
 * * {@link generateTestPki}: a throwaway CA and node certificates (QEMU's x509 layout) for
 *   TLS migration tests, made with `openssl`.
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
// The monitors' base class (QmpMonitor, HmpMonitor and MockMonitor extend it), for a
// Monitor of your own; the declarations of both entries share it.
export { MonitorEmitter } from '../monitor/events.js';
export { findQemuBinary, freePort, type QemuExit, QemuVm, type QemuVmOptions } from '../qemu/process.js';
export {
  generateTestPki,
  OPENSSL_INSTALL_HINT,
  type TestPki,
  type TestPkiNode,
  type TestPkiOptions,
} from '../tls/certificates.js';
export {
  type FakeQmpCommand,
  type FakeQmpHandler,
  type FakeQmpReply,
  FakeQmpServer,
  type FakeQmpServerOptions,
} from './fake-qmp-server.js';
export {
  type MockCommandInfo,
  type MockFailure,
  type MockMatcher,
  // A type only: a MockMonitor makes its own (`monitor.migration`).
  type MockMigration,
  type MockMigrationProgress,
  MockMonitor,
  type MockMonitorOptions,
  type MockQmpCommand,
  type MockReply,
  type MockRunState,
  type MockSent,
} from './mock-monitor.js';
export {
  MOCK_PARAMS,
  type MockParamInfo,
  type MockParamKind,
  paramsForVersion,
  parseHmpSize,
} from './mock-params.js';
export { createStreamPair, type StreamPairOptions } from './stream-pair.js';
export {
  RecordingMonitor,
  type Transcript,
  type TranscriptExchange,
  TranscriptMismatchError,
  TranscriptMonitor,
  type TranscriptReply,
  type TranscriptSend,
} from './transcript.js';
