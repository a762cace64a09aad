/**
 * Fault matrix, part 5: `info migrate` in a layout the parser does not know. The rule: an
 * unreadable status is an error quoting the text, never `none`, and never resumes the
 * source. Checked with a proxy that rewrites the status line of the host QEMU's HMP output
 * into a layout no parser has seen, and on the real QEMU 11.x layout (from the release
 * matrix; skipped with the reason when the matrix has no 11.x).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MigrationError, UnrecognizedOutputError } from '../../src/errors.js';
import { runMigration } from '../../src/internal.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { MATRIX_DIR, qemuRelease } from '../support/qemu-releases.js';
import {
  expectRunsExactlyOnce,
  fullText,
  hasCause,
  RUN_MS,
  rejectsIn,
  resolvesIn,
  runDeadline,
  runState,
  STEP_MS,
  settles,
  useFaultLab,
} from './harness.js';
import { MonitorProxy } from './proxies.js';

const lab = useFaultLab('layout');

describe('info migrate in a layout the parser has never seen', () => {
  it('is an error quoting the text, and the source is never resumed; the VM runs once', async () => {
    let proxy: MonitorProxy | undefined;
    const p = await lab.pair({
      protocol: 'hmp',
      guest: 'idle',
      hvparams: { migration_bandwidth: 32 },
      srcMonitor: () => HmpMonitor.connect({ path: proxy!.path }, { timeoutMs: 10_000 }),
    });
    // Only the status line of a started migration is rewritten, so set-up still works.
    proxy = await MonitorProxy.start(join(lab.dir, `${p.inst.name}.proxy`), p.src.hmpPath!, (text) =>
      text.replace(/(?:Migration status|Status):(\s*)([a-z-]+)/g, 'Zustand:$1unbekannt-$2'),
    );
    lab.defer(() => proxy!.kill());
    const err = await rejectsIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
      }),
      runDeadline(RUN_MS),
    );
    expect(err).toBeInstanceOf(MigrationError);
    expect(hasCause(err, UnrecognizedOutputError) || /unrecognised/i.test(fullText(err)), fullText(err)).toBe(
      true,
    );
    expect(fullText(err)).toContain('Zustand');
    const src = err.recovery?.source;
    if (src && !('error' in src)) expect(src.action).not.toMatch(/resumed/);
    // QEMU completed the migration (the destination runs) or the recovery stopped it
    // before the end (the live source never stopped): one copy either way.
    const where = await expectRunsExactlyOnce(p);
    if (where === 'dst') expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
  });
});

const r11 = qemuRelease('11');
const skip11 = r11 ? '' : ` (skipped: no QEMU 11.x in ${MATRIX_DIR}; build it with scripts/qemu-matrix.sh)`;

describe.skipIf(!r11)(`QEMU ${r11?.version ?? '11.x'} over HMP${skip11}`, () => {
  it('migrates live with the 11.x info migrate layout and runs once, on the destination', async () => {
    const p = await lab.pair({
      protocol: 'hmp',
      guest: 'idle',
      hvparams: { migration_bandwidth: 32 },
      srcBinary: r11!.binary,
      dstBinary: r11!.binary,
    });
    const run = await settles(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: true,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
      }),
      runDeadline(RUN_MS),
    );
    // Whatever the parser makes of 11.x, the VM must end up in exactly one place…
    const where = await expectRunsExactlyOnce(p);
    // …and with the layout supported, that is a normal, completed migration.
    expect(run.ok, run.ok ? '' : fullText(run.error)).toBe(true);
    expect(where).toBe('dst');
    expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
  });

  it('a non-live 11.x migration over HMP completes and the paused source stays paused', async () => {
    const p = await lab.pair({
      protocol: 'hmp',
      hvparams: { migration_bandwidth: 32 },
      srcBinary: r11!.binary,
      dstBinary: r11!.binary,
    });
    await resolvesIn(
      'runMigration',
      runMigration({
        source: { hypervisor: p.srcHv, instance: p.inst },
        destination: { hypervisor: p.dstHv, instance: p.inst },
        target: p.target,
        live: false,
        timeoutMs: RUN_MS,
        stepTimeoutMs: STEP_MS,
        pollIntervalMs: 100,
      }),
      runDeadline(RUN_MS),
    );
    expect(await runState(p.src, p.srcObs)).toBe('postmigrate');
    expect(await expectRunsExactlyOnce(p)).toBe('dst');
  });
});
