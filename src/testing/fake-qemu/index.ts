/**
 * The fake QEMU of `kvm-hypervisor/testing`: one state machine ({@link FakeQemu}) served
 * over QMP and HMP to the real monitor clients, and a linked migration pair on a fake
 * clock ({@link createFakeMigrationPair}).
 */
export { FakeClock } from './clock.js';
export { FakeMonitorFaults, type FakeQmpErrorReply } from './faults.js';
export { runHmpCommand } from './hmp-commands.js';

export { serveHmp } from './hmp-server.js';
export { type FakeConnectOptions, FakeQemuHost, type FakeQemuHostOptions } from './host.js';
export { FakeQemu, type FakeQemuEvent, type FakeQemuOptions, type FakeRunState } from './machine.js';
export { type FakeIncoming, FakeMigration, type FakeMigrationProgress } from './migration-state.js';
export {
  createFakeMigrationPair,
  type FakeDestinationOnFailure,
  type FakeEndOptions,
  FakeMigrationPair,
  type FakeMigrationPairOptions,
} from './pair.js';
export { type FakeQmpCall, queryMigrate, runQmpCommand } from './qmp-commands.js';
export { type FakeServerHooks, serveQmp } from './qmp-server.js';
