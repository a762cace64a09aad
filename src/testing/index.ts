/**
 * Test helpers for users of kvm-hypervisor: `kvm-hypervisor/testing`.
 *
 * * {@link MockMonitor}: an in-memory `Monitor` that answers like a given QEMU version.
 * * {@link FakeQmpServer}: a scripted QMP server on a UNIX socket, for socket-level tests.
 * @packageDocumentation
 */

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
