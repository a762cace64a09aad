/**
 * Replays every monitor transcript in test/fixtures/transcripts: recorded from real QEMU
 * 5.2, 7.2, 10.0 and 11.1 (`scripts/record-transcripts.ts --all` on the QEMU matrix), and
 * written from the sources of QEMU 1.7, 2.4 and 2.8 for the dialects no current QEMU
 * speaks (their `origin` says so). Each replay asserts every command, in order, with its
 * arguments, and feeds the code that version's exact answers.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { Instance } from '../../src/migration/types.js';
import { type Transcript, TranscriptMismatchError, TranscriptMonitor } from '../../src/testing/index.js';

interface Fixture {
  scenario: {
    hvparams: Record<string, string | number | boolean>;
    target: string;
    live: boolean;
    outcome: 'completed' | 'failed';
    status?: string;
    reason?: string;
    expect?: { totalTimeMs: number; downtimeMs: number; transferredBytes: number };
  };
  transcript: Transcript;
}

const dir = join(import.meta.dirname, '..', 'fixtures', 'transcripts');
const fixtures = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => [f, JSON.parse(readFileSync(join(dir, f), 'utf8')) as Fixture] as const);

describe('monitor transcripts', () => {
  it('covers the old dialects and the real QEMU 5.2, 7.2, 10.0 and 11.1 over QMP and HMP', () => {
    const names = fixtures.map(([f]) => f);
    const real = ['5.2.0', '7.2.22', '10.0.13', '11.1.3'].flatMap((v) =>
      ['qmp', 'hmp'].map((p) => `qemu-${v}-${p}-live.json`),
    );
    expect(names).toEqual(
      expect.arrayContaining([
        'qemu-1.7.0-hmp-live.json',
        'qemu-1.7.0-qmp-live.json',
        'qemu-2.8.0-hmp-postcopy.json',
        ...real,
      ]),
    );
  });

  it('says where each transcript comes from: recorded from a real QEMU, or written from sources', () => {
    for (const [file, { transcript }] of fixtures) {
      expect(transcript.origin, file).toMatch(/^(recorded from qemu-system-x86_64 |written from QEMU )/);
    }
  });

  it.each(fixtures)('%s replays exactly', async (_file, { scenario, transcript }) => {
    const monitor = new TranscriptMonitor(transcript);
    const hv = new KVMHypervisor({ monitor: () => monitor });
    const instance: Instance = { name: 'vm', hvparams: scenario.hvparams };
    if (scenario.outcome === 'completed') {
      await hv.migrateInstance(instance, scenario.target, scenario.live);
      const result = await hv.waitForMigration(instance, { pollIntervalMs: 1 });
      if (scenario.expect) expect(result).toMatchObject(scenario.expect);
      await hv.finalizeMigrationSource(instance, true, scenario.live);
    } else {
      const err = await (async () => {
        await hv.migrateInstance(instance, scenario.target, scenario.live);
        await hv.waitForMigration(instance, { pollIntervalMs: 1 });
      })().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MigrationError);
      if (scenario.status) expect((err as MigrationError).status).toBe(scenario.status);
      if (scenario.reason) expect((err as MigrationError).message).toContain(scenario.reason);
      await hv.finalizeMigrationSource(instance, false, scenario.live);
    }
    monitor.assertComplete();
  });

  it('a replay fails loudly when the code sends something else', async () => {
    const [, fx] = fixtures.find(([f]) => f === 'qemu-1.7.0-hmp-live.json')!;
    const hv = new KVMHypervisor({ monitor: () => new TranscriptMonitor(fx.transcript) });
    const err = await hv
      .migrateInstance(
        { name: 'vm', hvparams: { ...fx.scenario.hvparams, migration_bandwidth: 64 } },
        fx.scenario.target,
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).cause).toBeInstanceOf(TranscriptMismatchError);
    expect(String((err as Error).message)).toContain(
      'expected "migrate_set_speed 32m", got "migrate_set_speed 64m"',
    );
  });
});
