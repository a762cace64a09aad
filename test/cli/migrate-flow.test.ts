/**
 * The source-side flow of `kvm-hv migrate` against a fake hypervisor: which calls happen
 * in which order on success, failure and abort, and how a result caught in QEMU's
 * "completed but no times yet" window is settled.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { InterruptedError } from '../../src/cli/errors.js';
import { migrateSource } from '../../src/cli/migrate-flow.js';
import { createProgressSink } from '../../src/cli/progress.js';
import { MigrationError } from '../../src/errors.js';
import type { KVMHypervisor } from '../../src/kvm.js';
import type {
  Instance,
  MigrationProgress,
  MigrationResult,
  WaitForMigrationOptions,
} from '../../src/migration/types.js';

const logger = pino({ level: 'silent' });
const instance: Instance = { name: 'vm1', hvparams: { migration_port: 4444 } };

function fakeHv(
  wait: (o: WaitForMigrationOptions) => Promise<MigrationResult>,
  statuses: MigrationProgress[] = [],
) {
  const calls: string[] = [];
  const hv = {
    async migrateInstance(i: Instance, target: string, live: boolean) {
      calls.push(`migrate ${i.name} ${target} ${live}`);
    },
    async waitForMigration(_i: Instance, o: WaitForMigrationOptions) {
      calls.push(`wait${o.timeoutMs === undefined ? '' : ` ${o.timeoutMs}`}`);
      return wait(o);
    },
    async finalizeMigrationSource(_i: Instance, success: boolean) {
      calls.push(`finalize ${success}`);
    },
    async getMigrationStatus() {
      calls.push('status');
      return statuses.shift() ?? { status: 'completed' };
    },
  };
  return { hv: hv as unknown as KVMHypervisor, calls };
}

const completed = (p: Partial<MigrationResult> = {}): MigrationResult => ({
  status: 'completed',
  totalTimeMs: 900,
  downtimeMs: 12,
  transferredBytes: 1000,
  final: { status: 'completed', totalTimeMs: 900 },
  ...p,
});

describe('migrateSource', () => {
  it('migrates, waits with progress and actions, then finalizes as a success', async () => {
    const seen: MigrationProgress[] = [];
    const notes: string[] = [];
    const sink = {
      ...createProgressSink('none'),
      update: (p: MigrationProgress) => seen.push(p),
      note: (t: string) => notes.push(t),
    };
    const { hv, calls } = fakeHv(async (o) => {
      o.onProgress?.({ status: 'active', pass: 1 });
      o.onAction?.({ kind: 'downtime', downtimeMs: 600, reason: 'stuck' });
      return completed();
    });
    const out = await migrateSource(hv, instance, '10.0.0.2', true, {
      sink,
      signal: new AbortController().signal,
      logger,
      timeoutMs: 5000,
    });
    expect(calls).toEqual(['migrate vm1 10.0.0.2 true', 'wait 5000', 'finalize true']);
    expect(out.result.totalTimeMs).toBe(900);
    expect(out.actions).toEqual([{ kind: 'downtime', downtimeMs: 600, reason: 'stuck' }]);
    expect(notes).toEqual(['convergence: downtime limit raised to 600 ms (stuck)']);
    expect(seen.map((p) => p.status)).toEqual(['active', 'completed']);
    expect(out.wallTimeMs).toBeGreaterThanOrEqual(0);
  });

  it('finalizes as a failure and rethrows when the migration fails', async () => {
    const { hv, calls } = fakeHv(async () => {
      throw new MigrationError("instance 'vm1': migration failed: Connection refused", { status: 'failed' });
    });
    await expect(
      migrateSource(hv, instance, 'h', false, {
        sink: createProgressSink('none'),
        signal: new AbortController().signal,
        logger,
      }),
    ).rejects.toThrow(/Connection refused/);
    expect(calls).toEqual(['migrate vm1 h false', 'wait', 'finalize false']);
  });

  it('turns an abort into InterruptedError after finalizing as a failure', async () => {
    const abort = new AbortController();
    const { hv, calls } = fakeHv(async (o) => {
      abort.abort();
      expect(o.signal?.aborted).toBe(true);
      throw new MigrationError("instance 'vm1': migration cancelled: cancelled by the caller");
    });
    const err = await migrateSource(hv, instance, 'h', true, {
      sink: createProgressSink('none'),
      signal: abort.signal,
      logger,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InterruptedError);
    expect(String((err as Error).message)).toMatch(/cancelled and the source VM keeps running/);
    expect(calls).toEqual(['migrate vm1 h true', 'wait', 'finalize false']);
  });

  it('does not start when already aborted', async () => {
    const abort = new AbortController();
    abort.abort();
    const { hv, calls } = fakeHv(async () => completed());
    await expect(
      migrateSource(hv, instance, 'h', true, {
        sink: createProgressSink('none'),
        signal: abort.signal,
        logger,
      }),
    ).rejects.toBeInstanceOf(InterruptedError);
    expect(calls).toEqual([]);
  });
});
