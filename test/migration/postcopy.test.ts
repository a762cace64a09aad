/**
 * The post-copy recovery steps (pause, accept a recovery, resume) against the linked fake
 * pair, over QMP and HMP, on the releases whose behaviour was measured (5.2, 7.2, 10.0,
 * 11.1): the recovery that completes, the refusals that name the state, the no-ops, a
 * destination whose main loop is stuck, and deadlines that hold.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Deadline } from '../../src/core/deadline.js';
import { MigrationError } from '../../src/errors.js';
import { silentLogger } from '../../src/logger.js';
import { VmChannel } from '../../src/migration/channel.js';
import {
  acceptPostcopyRecovery,
  pausePostcopy,
  postcopyPauseStatuses,
  resumePostcopy,
} from '../../src/migration/postcopy.js';
import type { Monitor, MonitorProtocol } from '../../src/monitor/types.js';
import {
  createFakeMigrationPair,
  type FakeConnectOptions,
  type FakeQemuHost,
} from '../../src/testing/index.js';

const opened: Monitor[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((m) => m.close()));
});

const soon = () => Deadline.after(5000);
/** Lets the fake's deferred transitions run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};
/** The commands of the recovery and the migration start, as the fake received them. */
const steps = (received: string[]) =>
  received.filter(
    (c) =>
      /^(migrate|migrate-pause|migrate-recover|migrate_pause|migrate_recover)$|^migrate[ _]/.test(c) &&
      !/^migrate[_-](set|start)/.test(c),
  );

async function channel(
  host: FakeQemuHost,
  name: string,
  options: FakeConnectOptions = {},
): Promise<VmChannel> {
  const m = await host.connect(options);
  opened.push(m);
  return new VmChannel(name, m, silentLogger);
}

/** A pair in post-copy: `postcopy-ram` on both ends, migrating, switched to post-copy. */
async function inPostcopy(protocol: MonitorProtocol, version: string, connect: FakeConnectOptions = {}) {
  // Time moves only when the test says so: the migration cannot complete behind its back.
  const pair = createFakeMigrationPair({ protocol, version, advancePerQueryMs: 0 });
  const src = await channel(pair.source, 'vm1', connect);
  const dst = await channel(pair.destination, 'vm1', connect);
  for (const ch of [src, dst]) {
    await ch.send(
      protocol === 'qmp'
        ? {
            kind: 'qmp',
            execute: 'migrate-set-capabilities',
            arguments: {
              capabilities: [
                { capability: 'postcopy-ram', state: true },
                { capability: 'events', state: true },
              ],
            },
          }
        : { kind: 'hmp', line: 'migrate_set_capability postcopy-ram on' },
    );
  }
  await src.send(
    protocol === 'qmp'
      ? { kind: 'qmp', execute: 'migrate', arguments: { uri: 'tcp:10.0.0.2:8102' } }
      : { kind: 'hmp', line: 'migrate -d tcp:10.0.0.2:8102' },
  );
  pair.clock.advance(100);
  expect(pair.source.qemu.migration.status).toBe('active');
  return { pair, src, dst };
}

async function startPostcopy(src: VmChannel, protocol: MonitorProtocol) {
  await src.send(
    protocol === 'qmp'
      ? { kind: 'qmp', execute: 'migrate-start-postcopy' }
      : { kind: 'hmp', line: 'migrate_start_postcopy' },
  );
}

async function rejection(p: Promise<unknown>): Promise<MigrationError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MigrationError);
    return e as MigrationError;
  }
  throw new Error('expected a MigrationError');
}

const releases = ['5.2.0', '7.2.22', '10.0.13', '11.1.3'] as const;
const cases = releases.flatMap((version) =>
  (['qmp', 'hmp'] as const).map((protocol) => ({ protocol, version })),
);

describe.each(cases)('post-copy recovery steps ($protocol, QEMU $version)', ({ protocol, version }) => {
  it('pause both ends, accept on the destination, resume on the source: the migration completes', async () => {
    const { pair, src, dst } = await inPostcopy(protocol, version);
    await startPostcopy(src, protocol);
    expect(pair.destination.qemu.incoming?.status).toBe('postcopy-active');
    expect(pair.destination.qemu.runState).toBe('running');

    const paused = await pausePostcopy(src, soon());
    expect(paused).toEqual({ action: 'paused', status: 'postcopy-paused', outOfBand: protocol === 'qmp' });
    // One stream: the destination paused with it.
    expect(pair.destination.qemu.incoming?.status).toBe('postcopy-paused');
    expect(await pausePostcopy(dst, soon())).toEqual({
      action: 'already-paused',
      status: 'postcopy-paused',
      outOfBand: false,
    });
    // Paused, nothing moves.
    pair.clock.advance(60_000);
    expect(pair.source.qemu.migration.status).toBe('postcopy-paused');

    const uri = 'tcp:10.0.0.2:8200';
    expect(await acceptPostcopyRecovery(dst, uri, soon())).toEqual({
      action: 'listening',
      uri,
      status: 'postcopy-paused',
      outOfBand: protocol === 'qmp',
    });
    const resumed = await resumePostcopy(src, uri, soon());
    expect(resumed.action).toBe('resumed');
    expect(['postcopy-recover', 'postcopy-active']).toContain(resumed.status);
    await settle();
    expect(pair.source.qemu.migration.status).toBe('postcopy-active');
    expect(pair.destination.qemu.incoming?.status).toBe('postcopy-active');

    pair.clock.advance(10_000);
    expect(pair.source.qemu.migration.status).toBe('completed');
    expect(pair.destination.qemu.incoming?.status).toBe('completed');
    expect(pair.source.qemu.runState).toBe('postmigrate');
    expect(pair.destination.qemu.runState).toBe('running');
    expect(steps(pair.source.received)).toEqual(
      protocol === 'qmp'
        ? ['migrate', 'migrate-pause', 'migrate']
        : ['migrate -d tcp:10.0.0.2:8102', 'migrate_pause', `migrate -d -r ${uri}`],
    );
    expect(steps(pair.destination.received)).toEqual(
      protocol === 'qmp' ? ['migrate-pause', 'migrate-recover'] : ['migrate_pause', `migrate_recover ${uri}`],
    );
  });

  it('recovers after a connection reset (both ends paused by QEMU) and the destination paused first', async () => {
    const { pair, src, dst } = await inPostcopy(protocol, version);
    await startPostcopy(src, protocol);
    expect((await pausePostcopy(dst, soon())).action).toBe('paused');
    expect(pair.source.qemu.migration.status).toBe('postcopy-paused');
    expect((await pausePostcopy(src, soon())).action).toBe('already-paused');
    const uri = 'tcp:10.0.0.2:8201';
    await acceptPostcopyRecovery(dst, uri, soon());
    await resumePostcopy(src, uri, soon());
    await settle();
    pair.breakPostcopyStream();
    expect((await pausePostcopy(src, soon())).action).toBe('already-paused');
    expect((await acceptPostcopyRecovery(dst, uri, soon())).action).toBe('listening');
    expect((await resumePostcopy(src, uri, soon())).action).toBe('resumed');
    await settle();
    pair.clock.advance(10_000);
    expect(pair.source.qemu.migration.status).toBe('completed');
  });

  it('refuses to pause outside post-copy, naming the state and the states this release pauses in', async () => {
    const { src } = await inPostcopy(protocol, version);
    const err = await rejection(pausePostcopy(src, soon()));
    expect(err.status).toBe('active');
    const allowed =
      version.startsWith('5.') || version.startsWith('7.')
        ? "'postcopy-active'"
        : "'postcopy-active' or 'postcopy-recover'";
    expect(err.message).toBe(
      `instance 'vm1': cannot pause the post-copy migration: its status is 'active'; QEMU ${version} pauses only in ${allowed} (QEMU: migrate-pause is currently only supported during ${allowed.replace(/'/g, '')} state)`,
    );
  });

  it('refuses recovery and resume while post-copy runs, naming the state', async () => {
    const { src, dst } = await inPostcopy(protocol, version);
    await startPostcopy(src, protocol);
    const accept = await rejection(acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8200', soon()));
    expect(accept.status).toBe('postcopy-active');
    expect(accept.message).toBe(
      "instance 'vm1': cannot accept the post-copy recovery on tcp:10.0.0.2:8200: the incoming migration's status is 'postcopy-active'; QEMU accepts it only in 'postcopy-paused' (QEMU: Migrate recover can only be run when postcopy is paused.)",
    );
    const resume = await rejection(resumePostcopy(src, 'tcp:10.0.0.2:8200', soon()));
    expect(resume.status).toBe('postcopy-active');
    expect(resume.message).toBe(
      "instance 'vm1': cannot resume the post-copy migration to tcp:10.0.0.2:8200: its status is 'postcopy-active'; QEMU resumes only from 'postcopy-paused' (QEMU: Cannot resume if there is no paused migration)",
    );
  });

  it('says which end it was sent to when a step goes to the wrong one', async () => {
    const { src, dst } = await inPostcopy(protocol, version);
    await startPostcopy(src, protocol);
    await pausePostcopy(src, soon());
    const accept = await rejection(acceptPostcopyRecovery(src, 'tcp:10.0.0.2:8200', soon()));
    expect(accept.status).toBe('postcopy-paused');
    expect(accept.message).toContain(
      "and its run state 'finish-migrate' says this is the source (migrate-recover runs on the destination)",
    );
    const resume = await rejection(resumePostcopy(dst, 'tcp:10.0.0.2:8200', soon()));
    expect(resume.message).toContain(
      "and its run state 'running' says this is the destination (the resume runs on the source)",
    );
  });

  it('a resume nobody listens for leaves the source paused: an error at the deadline, nothing else done', async () => {
    const { pair, src } = await inPostcopy(protocol, version);
    await startPostcopy(src, protocol);
    await pausePostcopy(src, soon());
    const started = Date.now();
    const err = await rejection(resumePostcopy(src, 'tcp:10.0.0.2:9999', Deadline.after(300)));
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err.status).toBe('postcopy-paused');
    expect(err.message).toMatch(
      /^instance 'vm1': resumed the post-copy migration to tcp:10\.0\.0\.2:9999, but the source is still 'postcopy-paused'( \(Postcopy migration is paused by the user\))? after \d+\.\d s: it did not reach a destination listening there; both ends stay paused, the VM split between them$/,
    );
    expect(pair.source.qemu.migration.status).toBe('postcopy-paused');
    expect(pair.source.qemu.runState).toBe('finish-migrate');
    expect(pair.destination.qemu.runState).toBe('running');
  });

  it('refuses a URI an HMP line cannot carry before sending anything', async () => {
    const { pair, dst } = await inPostcopy(protocol, version);
    const before = pair.destination.received.length;
    const err = await rejection(acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8200 -x', soon()));
    expect(err.message).toBe(
      `instance 'vm1': cannot accept a post-copy recovery: "tcp:10.0.0.2:8200 -x" is not a migration URI (scheme:address, no spaces)`,
    );
    expect(pair.destination.received.length).toBe(before);
  });
});

describe('post-copy recovery steps: what varies by release', () => {
  it('QEMU 5.2 takes one migrate-recover: a second one is already-listening', async () => {
    const { src, dst } = await inPostcopy('qmp', '5.2.0');
    await startPostcopy(src, 'qmp');
    await pausePostcopy(src, soon());
    await acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8200', soon());
    expect(await acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8200', soon())).toMatchObject({
      action: 'already-listening',
      status: 'postcopy-paused',
    });
  });

  it('7.2+ take migrate-recover again; their original -incoming listener accepts a resume by itself', async () => {
    const { pair, src, dst } = await inPostcopy('qmp', '7.2.22');
    await startPostcopy(src, 'qmp');
    await pausePostcopy(src, soon());
    expect((await acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8200', soon())).action).toBe('listening');
    expect((await acceptPostcopyRecovery(dst, 'tcp:10.0.0.2:8201', soon())).action).toBe('listening');
    await resumePostcopy(src, 'tcp:10.0.0.2:8102', soon());
    await settle();
    pair.clock.advance(10_000);
    expect(pair.source.qemu.migration.status).toBe('completed');
  });

  it('10.0+ pause in postcopy-recover too; 7.2 refuses it there', () => {
    expect(postcopyPauseStatuses({ major: 7, minor: 2, micro: 22 })).toEqual(['postcopy-active']);
    expect(postcopyPauseStatuses({ major: 10, minor: 0, micro: 13 })).toEqual([
      'postcopy-active',
      'postcopy-recover',
    ]);
  });

  it('QEMU 10.0+ resume through postcopy-recover-setup, and keep the pause as error-desc', async () => {
    const { pair, src } = await inPostcopy('qmp', '11.1.3');
    const statuses: string[] = [];
    pair.source.qemu.onMigrationStatus((s) => statuses.push(s));
    await startPostcopy(src, 'qmp');
    await pausePostcopy(src, soon());
    expect(pair.source.qemu.migration.errorDesc).toBe('Postcopy migration is paused by the user');
    await resumePostcopy(src, 'tcp:10.0.0.2:8102', soon());
    await settle();
    expect(statuses).toEqual([
      'postcopy-active',
      'postcopy-paused',
      'postcopy-recover-setup',
      'postcopy-recover',
      'postcopy-active',
    ]);
  });
});

describe('post-copy pause in passing states', () => {
  it('asks again when refused in a state it pauses in (the status moved on meanwhile)', async () => {
    const { pair, src } = await inPostcopy('qmp', '11.1.3');
    await startPostcopy(src, 'qmp');
    pair.source.refuse(
      'migrate-pause',
      {
        class: 'GenericError',
        desc: 'migrate-pause is currently only supported during postcopy-active or postcopy-recover state',
      },
      { times: 1 },
    );
    expect(await pausePostcopy(src, soon())).toMatchObject({ action: 'paused', status: 'postcopy-paused' });
    expect(pair.source.received.filter((c) => c === 'migrate-pause')).toHaveLength(2);
  });

  it("gives up after three tries in 11.1's postcopy-device, naming it", async () => {
    const { pair, src } = await inPostcopy('qmp', '11.1.3');
    pair.source.qemu.migration.advance({ status: 'postcopy-device' });
    const err = await rejection(pausePostcopy(src, soon()));
    expect(err.status).toBe('postcopy-device');
    expect(err.message).toContain("its status is 'postcopy-device'; QEMU 11.1.3 pauses only in");
    expect(pair.source.received.filter((c) => c === 'migrate-pause')).toHaveLength(3);
  });
});

describe('post-copy recovery steps when QEMU does not answer', () => {
  it('pauses a destination whose main loop is stuck: migrate-pause goes out of band past it', async () => {
    const { pair, src, dst } = await inPostcopy('qmp', '7.2.22');
    await startPostcopy(src, 'qmp');
    pair.destination.faults.stickMainLoop();
    const started = Date.now();
    const r = await pausePostcopy(dst, Deadline.after(400));
    expect(Date.now() - started).toBeLessThan(3000);
    // The status could not be read in band; the pause itself was answered.
    expect(r).toEqual({ action: 'paused', status: undefined, outOfBand: true });
    expect(pair.destination.qemu.incoming?.status).toBe('postcopy-paused');
    expect(pair.source.qemu.migration.status).toBe('postcopy-paused');
    pair.destination.faults.unstickMainLoop();
  });

  it('without oob (or over HMP) a stuck main loop holds the pause: unresponsive at the deadline', async () => {
    for (const [protocol, connect] of [
      ['qmp', { outOfBand: false }],
      ['hmp', {}],
    ] as const) {
      const { pair, src, dst } = await inPostcopy(protocol, '7.2.22', connect);
      await startPostcopy(src, protocol);
      pair.destination.faults.stickMainLoop();
      const started = Date.now();
      const err = await rejection(pausePostcopy(dst, Deadline.after(300)));
      expect(Date.now() - started).toBeLessThan(3000);
      expect(err.unresponsive).toBe(true);
      expect(err.message).toMatch(
        /^instance 'vm1': pausing the post-copy migration failed: 'migrate[-_]pause': .*QEMU did not answer in time; it may still act on it\)$/,
      );
      expect(pair.destination.qemu.incoming?.status).toBe('postcopy-active');
      pair.destination.faults.unstickMainLoop();
    }
  });
});
