import { describe, expect, it, vi } from 'vitest';
import { KVMHypervisor } from '../../src/kvm.js';
import { changesOnly, progressChanged } from '../../src/migration/progress-fields.js';
import type { MigrationProgress } from '../../src/migration/types.js';
import { MockMonitor } from '../../src/testing/index.js';

describe('onProgress only on change', () => {
  it('progressChanged ignores total-time and raw, sees every other field', () => {
    const a: MigrationProgress = { status: 'active', transferredBytes: 10, totalTimeMs: 100, raw: { x: 1 } };
    expect(progressChanged(undefined, a)).toBe(true);
    expect(progressChanged(a, { ...a, totalTimeMs: 200, raw: { x: 2 } })).toBe(false);
    expect(progressChanged(a, { ...a, transferredBytes: 11 })).toBe(true);
    expect(progressChanged(a, { ...a, pass: 2 })).toBe(true);
    expect(progressChanged(a, { ...a, status: 'postcopy-active' })).toBe(true);
    expect(progressChanged(a, { ...a, errorDesc: 'x' })).toBe(true);
  });

  it('changesOnly drops repeats and always passes a completed snapshot on', () => {
    const seen: MigrationProgress[] = [];
    const report = changesOnly((p) => seen.push(p));
    const active: MigrationProgress = { status: 'active', transferredBytes: 1 };
    const done: MigrationProgress = { status: 'completed', transferredBytes: 2 };
    report?.(active);
    report?.({ ...active, totalTimeMs: 5 });
    report?.({ ...active, transferredBytes: 2 });
    report?.(done);
    report?.({ ...done });
    expect(seen.map((p) => [p.status, p.transferredBytes])).toEqual([
      ['active', 1],
      ['active', 2],
      ['completed', 2],
      ['completed', 2],
    ]);
    expect(changesOnly(undefined)).toBeUndefined();
  });

  it('waitForMigration reports a migration polled many times unchanged once per change', async () => {
    const mock = new MockMonitor({ version: '7.2.0' });
    const hv = new KVMHypervisor({ monitor: () => mock });
    const instance = { name: 'web1' };
    try {
      await hv.migrateInstance(instance, '10.0.0.9');
      const seen: MigrationProgress[] = [];
      const waiting = hv.waitForMigration(instance, {
        pollIntervalMs: 2,
        timeoutMs: 60_000,
        onProgress: (p) => seen.push(p),
      });
      await vi.waitFor(() => expect(mock.migration.polls).toBeGreaterThanOrEqual(5), { timeout: 20_000 });
      mock.migration.advance({ transferred: 1_000_000, remaining: 2_000_000 });
      const polled = mock.migration.polls;
      await vi.waitFor(() => expect(mock.migration.polls).toBeGreaterThanOrEqual(polled + 5), {
        timeout: 20_000,
      });
      mock.completeMigration();
      const result = await waiting;
      expect(result.status).toBe('completed');
      expect(mock.migration.polls).toBeGreaterThanOrEqual(10);
      // At least 10 polls, but only the distinct snapshots (setup and/or the first active
      // one, the advanced one, the completed one) were reported.
      expect(seen.length).toBeLessThanOrEqual(4);
      for (let i = 1; i < seen.length; i++)
        expect(progressChanged(seen[i - 1], seen[i] as MigrationProgress)).toBe(true);
      expect(seen.map((p) => [p.status, p.transferredBytes])).toContainEqual(['active', 1_000_000]);
      expect(seen.at(-1)).toMatchObject({ status: 'completed', transferredBytes: 3_000_000 });
    } finally {
      await hv.close();
    }
  });
});
