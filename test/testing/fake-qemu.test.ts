/**
 * The fake QEMU on its own (the state machine), and served to the real QMP and HMP
 * clients over in-memory streams, for QEMU versions whose dialects and layouts differ.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  HmpError,
  MonitorClosedError,
  MonitorError,
  MonitorTimeoutError,
  QmpError,
} from '../../src/errors.js';
import { parseInfoMigrate, parseQueryMigrate } from '../../src/migration/status.js';
import type { HmpMonitor } from '../../src/monitor/hmp.js';
import type { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor, MonitorEvent } from '../../src/monitor/types.js';
import { qemuSizeToStr } from '../../src/testing/fake-qemu/hmp-render.js';
import { queryMigrate, runHmpCommand, runQmpCommand } from '../../src/testing/fake-qemu/index.js';
import { FakeQemu, FakeQemuHost } from '../../src/testing/index.js';

const MiB = 2 ** 20;
const flush = () => new Promise<void>((r) => setImmediate(r));

describe('FakeQemu state machine', () => {
  it('migrates in passes on its clock: setup → active → switch-over (STOP) → completed, source postmigrate', () => {
    const q = new FakeQemu({ version: '7.2.22', ramBytes: 64 * MiB, capabilities: { events: true } });
    const events: MonitorEvent[] = [];
    q.onEvent((ev) => events.push(ev));
    q.bandwidth = 16 * MiB;
    q.downtimeMs = 100;
    q.dirtyRateBytesPerSec = 4 * MiB;
    expect(q.startMigration('tcp:10.0.0.2:8102')).toBeUndefined();
    expect(q.migration.status).toBe('setup');
    expect(q.tick(1000)).toBe(false);
    expect(q.migration.status).toBe('active');
    expect(q.migration.transferred).toBe(16 * MiB);
    expect(q.migration.remaining).toBe(48 * MiB);
    q.tick(3000); // first pass done (64 MiB sent), 16 MiB dirtied meanwhile: pass 2
    expect(q.migration.passes).toBe(2);
    expect(q.migration.remaining).toBe(16 * MiB);
    let ticks = 0;
    while (q.migration.status === 'active' && ticks++ < 20) q.tick(1000);
    expect(q.migration.status).toBe('completed');
    expect(q.runState).toBe('postmigrate');
    expect(q.migration.downtime).toBeLessThanOrEqual(100);
    const names = events.map((e) => e.event);
    expect(names.indexOf('STOP')).toBeLessThan(names.lastIndexOf('MIGRATION'));
    expect(events.filter((e) => e.event === 'MIGRATION').map((e) => e.data.status)).toEqual([
      'setup',
      'active',
      'completed',
    ]);
    expect(events.filter((e) => e.event === 'MIGRATION_PASS').length).toBe(q.migration.passes);
  });

  it('sends MIGRATION events only with the events capability, and refuses what QEMU refuses', () => {
    const q = new FakeQemu({ version: '5.2.0' });
    const events: string[] = [];
    q.onEvent((ev) => events.push(ev.event));
    expect(q.startMigration('nonsense')).toBe("Parameter 'uri' expects a valid migration protocol");
    q.startMigration('tcp:h:1');
    expect(q.startMigration('tcp:h:1')).toBe("There's a migration process in progress");
    expect(q.setCapabilities([{ capability: 'xbzrle', state: true }])).toBe(
      "There's a migration process in progress",
    );
    q.cancelMigration();
    expect(q.migration.status).toBe('cancelling');
    expect(events).toEqual([]);
  });

  it('a destination waits (inmigrate) and refuses to migrate out; quit sends SHUTDOWN with its reason and exits', () => {
    const q = new FakeQemu({ version: '7.2.22', incoming: 'tcp:0.0.0.0:8102' });
    expect(q.runState).toBe('inmigrate');
    expect(q.startMigration('tcp:h:1')).toBe('Guest is waiting for an incoming migration');
    const events: MonitorEvent[] = [];
    let exited = 0;
    q.onEvent((ev) => events.push(ev));
    q.onExit(() => exited++);
    q.quit();
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ['SHUTDOWN', { guest: false, reason: 'host-qmp-quit' }],
    ]);
    expect(q.hasExited).toBe(true);
    expect(q.runState).toBe('shutdown');
    expect(exited).toBe(1);
  });

  it('post-copy: the source stops at once and the rest is sent on the clock until completed', () => {
    const q = new FakeQemu({ version: '7.2.22', ramBytes: 64 * MiB, capabilities: { 'postcopy-ram': true } });
    q.bandwidth = 16 * MiB;
    q.dirtyRateBytesPerSec = 64 * MiB; // would never converge in precopy
    q.startMigration('tcp:h:1');
    q.tick(1000);
    expect(q.startPostcopy()).toBeUndefined();
    expect(q.runState).toBe('finish-migrate');
    expect(q.migration.status).toBe('postcopy-active');
    let ticks = 0;
    while (q.migration.status === 'postcopy-active' && ticks++ < 20) q.tick(1000);
    expect(q.migration.status).toBe('completed');
    expect(q.runState).toBe('postmigrate');
    expect(new FakeQemu().startPostcopy()).toMatch(/Enable postcopy/);
  });

  it('-incoming defer waits for migrate-incoming (QMP) / migrate_incoming (HMP)', () => {
    for (const protocol of ['qmp', 'hmp'] as const) {
      const q = new FakeQemu({ version: '7.2.22', incoming: 'defer' });
      expect(queryMigrate(q)).toEqual({});
      if (protocol === 'qmp')
        runQmpCommand(q, { execute: 'migrate-incoming', arguments: { uri: 'tcp:0.0.0.0:8102' } });
      else expect(runHmpCommand(q, 'migrate_incoming tcp:0.0.0.0:8102')).toBe('');
      expect(queryMigrate(q)).toMatchObject({ status: 'setup' });
      expect(() =>
        runQmpCommand(q, { execute: 'migrate-incoming', arguments: { uri: 'tcp:0.0.0.0:1' } }),
      ).toThrow(/already been started/);
    }
    expect(runHmpCommand(new FakeQemu(), 'migrate_incoming tcp:0.0.0.0:1')).toMatch(
      /-incoming' was not specified/,
    );
  });

  it("prints sizes like QEMU's size_to_str", () => {
    expect(qemuSizeToStr(0)).toBe('0 B');
    expect(qemuSizeToStr(4096)).toBe('4 KiB');
    expect(qemuSizeToStr(131592 * 1024)).toBe('129 MiB');
    expect(qemuSizeToStr(13.2 * MiB)).toBe('13.2 MiB');
    expect(qemuSizeToStr(1000 * MiB)).toBe('0.977 GiB');
  });
});

describe.each(['2.8.0', '5.2.0', '7.2.22', '11.1.3'])('real clients against a fake QEMU %s', (version) => {
  const open: Monitor[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((m) => m.close()));
  });
  const connect = async (host: FakeQemuHost, timeoutMs?: number) => {
    const m = await host.connect(timeoutMs === undefined ? {} : { timeoutMs });
    open.push(m);
    return m;
  };

  it('QMP and HMP report the same migration, through the strict parsers', async () => {
    const qmpHost = new FakeQemuHost({ version, protocol: 'qmp' });
    const qmp = (await connect(qmpHost)) as QmpMonitor;
    expect(qmp.version).toEqual(qmpHost.qemu.version);
    // One QEMU state machine; an HMP host around the same version and settings.
    const hmpHost = new FakeQemuHost({ version, protocol: 'hmp' });
    const hmp = (await connect(hmpHost)) as HmpMonitor;
    expect(hmp.version).toEqual(hmpHost.qemu.version);
    for (const host of [qmpHost, hmpHost]) {
      host.qemu.bandwidth = 32 * MiB;
      host.qemu.startMigration('tcp:10.0.0.2:8102');
      host.qemu.tick(1500);
    }
    const viaQmp = parseQueryMigrate(await qmp.execute('query-migrate'));
    const viaHmp = parseInfoMigrate(await hmp.command('info migrate'));
    expect(viaQmp.status).toBe('active');
    expect(viaHmp.status).toBe('active');
    expect(viaHmp.transferredBytes).toBe(viaQmp.transferredBytes);
    expect(viaHmp.pass).toBe(viaQmp.pass);
    expect(Math.abs((viaHmp.totalBytes ?? 0) - (viaQmp.totalBytes ?? 0))).toBeLessThan(MiB);
    expect(await hmp.command('info status')).toBe('VM status: running\n');
    expect(await qmp.humanCommand('info status')).toBe('VM status: running\n');
  });

  it('QMP events reach the real client; quit closes the connection after its reply', async () => {
    const host = new FakeQemuHost({ version, capabilities: { events: true } });
    const qmp = (await connect(host)) as QmpMonitor;
    const seen: string[] = [];
    qmp.on('event', (ev) => seen.push(`${ev.event}${ev.data.status ? `:${ev.data.status}` : ''}`));
    const closed = new Promise<Error | undefined>((r) => qmp.on('close', r));
    await qmp.execute('migrate', { uri: 'tcp:10.0.0.2:8102' });
    await qmp.execute('stop');
    await expect(qmp.execute('quit')).resolves.toEqual({});
    expect(await closed).toBeInstanceOf(MonitorClosedError);
    expect(seen.slice(0, 2)).toEqual(['MIGRATION:setup', 'STOP']);
    expect(seen.at(-1)).toBe('SHUTDOWN');
    await expect(host.connect()).rejects.toThrow(/ECONNREFUSED/);
  });

  it('refused commands, a frozen QEMU and a lost connection reach the client as QEMU would cause them', async () => {
    for (const protocol of ['qmp', 'hmp'] as const) {
      const host = new FakeQemuHost({ version, protocol });
      host.refuse(
        protocol === 'qmp' ? 'migrate' : 'migrate',
        { class: 'GenericError', desc: 'nope' },
        { times: 1 },
      );
      const m = await connect(host, 200);
      const migrate = () =>
        protocol === 'qmp' ? m.execute('migrate', { uri: 'tcp:h:1' }) : m.humanCommand('migrate -d tcp:h:1');
      const refused = await migrate().catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(protocol === 'qmp' ? QmpError : HmpError);
      expect(String((refused as Error).message)).toMatch(/nope/);
      await expect(migrate()).resolves.toBeDefined();
      host.freeze();
      const frozen = await (protocol === 'qmp'
        ? m.execute('query-status')
        : m.humanCommand('info status')
      ).catch((e: unknown) => e);
      expect(frozen).toBeInstanceOf(MonitorTimeoutError);
      // A frozen QEMU does not greet a new client either; it does once it thaws.
      const late = host.connect({ greetingTimeoutMs: 100 });
      await expect(late).rejects.toBeInstanceOf(MonitorTimeoutError);
      host.thaw();
      const closed = new Promise((r) => m.on('close', r));
      host.dropConnections();
      await closed;
      expect(m.closed).toBe(true);
      // QEMU itself goes on: a new connection sees the migration.
      const again = await connect(host);
      const status =
        protocol === 'qmp'
          ? parseQueryMigrate(await again.execute('query-migrate')).status
          : parseInfoMigrate(await again.humanCommand('info migrate')).status;
      expect(status).toBe('active');
      await flush();
    }
  });

  it('a client that closes its monitor frees the connection on the QEMU side', async () => {
    for (const protocol of ['qmp', 'hmp'] as const) {
      const host = new FakeQemuHost({ version, protocol });
      const a = await host.connect();
      const b = await host.connect();
      expect(host.connectionCount).toBe(2);
      await a.close();
      await flush();
      expect(host.connectionCount).toBe(1);
      await b.close();
      await flush();
      expect(host.connectionCount).toBe(0);
    }
  });

  it('HMP has no events and QMP commands are refused over HMP, as with a real HMP socket', async () => {
    const host = new FakeQemuHost({ version, protocol: 'hmp' });
    const hmp = await connect(host);
    await expect(hmp.execute('query-status')).rejects.toBeInstanceOf(MonitorError);
    await expect(hmp.humanCommand('info bogus')).rejects.toBeInstanceOf(HmpError);
  });
});
