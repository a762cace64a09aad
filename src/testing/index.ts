/**
 * Test helpers for users of kvm-hypervisor: `kvm-hypervisor/testing`.
 *
 * * {@link createFakeMigrationPair}: a linked source and destination fake QEMU on a
 *   {@link FakeClock} the test controls, served to the real `QmpMonitor` / `HmpMonitor`
 *   over in-memory streams: run `KVMHypervisor` against it, with faults (freeze, lost
 *   monitor, refused commands, failures with QEMU's reason). See docs/monitor.md.
 * * {@link FakeQemu}: the QEMU state machine behind it; {@link FakeQemuHost} serves one over
 *   QMP or HMP ({@link serveQmp}, {@link serveHmp} for any stream).
 * * {@link MockMonitor}: an in-memory `Monitor` over a `FakeQemu`, without a wire protocol,
 *   with scripted failures and replies.
 * * {@link FakeQmpServer}: a scripted QMP server on a UNIX socket, for socket-level tests.
 * * {@link QmpInputSplitter}: splits a client's QMP input into commands as QEMU does (no
 *   newline needed), for a test server of your own.
 * * {@link QemuVm}: starts and stops real local `qemu-system-x86_64` processes (TCG).
 * * {@link generateTestPki}: a throwaway CA and node certificates (QEMU's x509 layout) for
 *   TLS migration tests, made with `openssl`.
 * * {@link buildGuestImage}: a tiny Multiboot guest that dirties memory at a chosen rate,
 *   so integration tests can migrate a VM with real work.
 *
 * Which fake QEMU to use when: testing code that drives migrations (`KVMHypervisor`,
 * `runMigration`, a cluster manager's sequence): {@link createFakeMigrationPair}. Code
 * that takes a `Monitor` and needs no wire protocol: {@link MockMonitor}. A QMP client's
 * socket handling (greeting, split writes, lost replies, dropped connections):
 * {@link FakeQmpServer}. The exact commands one QEMU release gets, replayed from a
 * recording: {@link TranscriptMonitor}. Real QEMU: {@link QemuVm}.
 * @packageDocumentation
 */

// The monitors' base class (QmpMonitor, HmpMonitor and MockMonitor extend it), for a
// Monitor of your own; the declarations of both entries share it.
export { MonitorEmitter } from '../monitor/events.js';
export {
  createFakeMigrationPair,
  FakeClock,
  type FakeConnectOptions,
  type FakeDestinationOnFailure,
  type FakeEndOptions,
  type FakeIncoming,
  FakeMigration,
  FakeMigrationPair,
  type FakeMigrationPairOptions,
  type FakeMigrationProgress,
  FakeMonitorFaults,
  FakeQemu,
  type FakeQemuEvent,
  FakeQemuHost,
  type FakeQemuHostOptions,
  type FakeQemuOptions,
  type FakeQmpCall,
  type FakeQmpErrorReply,
  type FakeRunState,
  type FakeServerHooks,
  serveHmp,
  serveQmp,
} from './fake-qemu/index.js';
export {
  type FakeQmpCommand,
  type FakeQmpHandler,
  type FakeQmpReply,
  FakeQmpServer,
  type FakeQmpServerOptions,
} from './fake-qmp-server.js';
export {
  buildGuestImage,
  GUEST_STATUS_ADDRESS,
  type GuestImageOptions,
  type GuestStatus,
  guestMemoryMiBFor,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from './guest/image.js';
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
export {
  type FindQemuOptions,
  findQemuBinary,
  freePort,
  QEMU_BINARY_CANDIDATES,
  type QemuExit,
  QemuVm,
  type QemuVmOptions,
} from './qemu-vm.js';
export { type QmpInput, QmpInputSplitter } from './qmp-input.js';
export { createStreamPair, type StreamPairOptions } from './stream-pair.js';
export {
  generateTestPki,
  OPENSSL_INSTALL_HINT,
  type TestPki,
  type TestPkiNode,
  type TestPkiOptions,
} from './test-pki.js';
export {
  RecordingMonitor,
  type Transcript,
  type TranscriptExchange,
  TranscriptMismatchError,
  TranscriptMonitor,
  type TranscriptReply,
  type TranscriptSend,
} from './transcript.js';
