/**
 * The seed's HMP sequence (Ganeti's `migrate_set_speed`, `migrate_set_downtime`,
 * `migrate_set_capability … on`, `migrate -d`) on the real QEMUs that still have those
 * commands (< 6.0: 5.2 in the matrix), as the `hmp-legacy` dialect writes it. QEMU's own
 * parameters, read over QMP, prove each command took effect; then the migration completes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import {
  capabilityCommands,
  describeCommand,
  dialectFor,
  migrateCommand,
  parameterCommands,
} from '../../src/migration/dialect.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { versionAtLeast } from '../../src/qemu/version.js';
import { expectedHmp } from '../support/qemu-expectations.js';
import { describeEachRelease, releaseCases, versionOf } from '../support/real-qemu.js';
import { type Cleanup, capabilityStates, cleanUp, runState, startPair } from './real-pair.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-legacy-'));
const cleanup: Cleanup = { vms: [], closers: [] };
afterEach(() => cleanUp(cleanup));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

const legacyReleases = releaseCases().filter((r) => expectedHmp(versionOf(r)).hasLegacySpeedCommands);

describeEachRelease('the seed’s legacy HMP sequence', legacyReleases, (rel) => {
  const version = versionOf(rel);

  it('sets speed, downtime and capabilities, migrates with -d, and completes', async () => {
    const { src, srcObs, dstObs, port } = await startPair(
      { dir, name: `legacy-${rel.release}`, src: { release: rel }, dst: { release: rel }, protocol: 'hmp' },
      cleanup,
    );
    const uri = `tcp:127.0.0.1:${port}`;
    const commands = [
      ...parameterCommands('hmp-legacy', version, { bandwidthMiBps: 100, downtimeMs: 40 }),
      ...capabilityCommands('hmp', [
        ['xbzrle', true],
        ['auto-converge', true],
      ]),
      migrateCommand('hmp', uri),
    ];
    expect(commands.map(describeCommand)).toEqual([
      'migrate_set_speed 100m',
      'migrate_set_downtime 40ms',
      'migrate_set_capability xbzrle on',
      'migrate_set_capability auto-converge on',
      `migrate -d ${uri}`,
    ]);
    const hmp = await HmpMonitor.connect({ path: src.hmpPath! });
    cleanup.closers.push(() => hmp.close());
    // Every command is accepted silently, and QEMU holds what it was told.
    for (const line of commands.map(describeCommand).slice(0, -1)) expect(await hmp.command(line)).toBe('');
    const params = await srcObs.execute<Record<string, number>>('query-migrate-parameters');
    expect(params['max-bandwidth']).toBe(100 * MiB);
    expect(params['downtime-limit']).toBe(40);
    expect(await capabilityStates(srcObs)).toMatchObject({ xbzrle: true, 'auto-converge': true });

    expect(await hmp.command(`migrate -d ${uri}`)).toBe('');
    const deadline = Date.now() + 30_000;
    let st: { status?: string } = {};
    while (Date.now() < deadline) {
      st = await srcObs.execute<{ status?: string }>('query-migrate');
      if (st.status === 'completed' || st.status === 'failed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(st.status).toBe('completed');
    expect(await runState(srcObs)).toBe('postmigrate');
    const deadlineDst = Date.now() + 10_000;
    while ((await runState(dstObs)) !== 'running' && Date.now() < deadlineDst) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await runState(dstObs)).toBe('running');
  });

  it('is not what the library picks on this release: migrate_set_parameter exists from 2.8', () => {
    // Reported, not changed: the modern commands also cap the post-copy bandwidth (>= 3.0).
    expect(versionAtLeast(version, 2, 8)).toBe(true);
    expect(dialectFor('hmp', version)).toBe('hmp');
  });
});
