/**
 * What the real-QEMU tests are parameterised by: each QEMU release from
 * {@link qemuReleases} and each accelerator this machine offers (TCG always, KVM where
 * `/dev/kvm` opens read-write). `KVMHV_ACCEL=tcg` or `=kvm` keeps one accelerator.
 */
import { describe, it } from 'vitest';
import { type Accelerator, kvmUsable } from '../../src/qemu/accel.js';
import { parseVersion, type QemuVersion } from '../../src/qemu/version.js';
import type { QemuVmOptions } from '../../src/testing/qemu-vm.js';
import { type QemuRelease, qemuReleases } from './qemu-releases.js';

/** A QEMU accelerator the tests run guests under. */
export type Accel = Accelerator;

/** The accelerators to run under: `tcg`, plus `kvm` where usable; `KVMHV_ACCEL=tcg|kvm` keeps one. */
export function accelerators(): Accel[] {
  const all: Accel[] = kvmUsable() ? ['tcg', 'kvm'] : ['tcg'];
  const only = process.env.KVMHV_ACCEL?.trim();
  return only === 'tcg' || only === 'kvm' ? all.filter((a) => a === only) : all;
}

/**
 * The monitor protocols the migration tests use under `accel`: both under TCG; only QMP
 * under KVM. The protocol code does not depend on the accelerator, and under nested KVM
 * (CI's machines) SeaBIOS needs about 10 s to boot each guest, which over HMP too would
 * double the longest part of the suite.
 */
export function migrationProtocols(accel: Accel): ('qmp' | 'hmp')[] {
  return accel === 'kvm' ? ['qmp'] : ['qmp', 'hmp'];
}

/** The version a release's `--version` printed, as the library's {@link QemuVersion}. */
export function versionOf(release: QemuRelease): QemuVersion {
  const v = parseVersion(release.version);
  if (!v) throw new Error(`QEMU release ${release.release}: unreadable version '${release.version}'`);
  return v;
}

/** The {@link QemuVm.start} options that select a release and an accelerator. */
export function vmOptions(
  release: QemuRelease,
  accel: Accel = 'tcg',
): Pick<QemuVmOptions, 'binary' | 'accel'> {
  return { binary: release.binary, accel };
}

/** One (release, accelerator) combination, with a label for test titles. */
export interface ReleaseCase extends QemuRelease {
  accel: Accel;
  /** E.g. `QEMU 5.2.0 (bullseye, tcg)`. */
  label: string;
}

/** Every release under every accelerator in `accels` (default: TCG only). */
export function releaseCases(accels: readonly Accel[] = ['tcg']): ReleaseCase[] {
  return qemuReleases().flatMap((r) =>
    accels.map((accel) => ({ ...r, accel, label: `QEMU ${r.version} (${r.suite}, ${accel})` })),
  );
}

const NO_QEMU =
  'no QEMU release found: install qemu-system-x86 (bash scripts/setup.sh), set QEMU=…, or run scripts/qemu-matrix.sh';

/**
 * `describe.each` over `cases`, titled `<title> on <label>`; where there is no release at
 * all, one skipped suite that says why (vitest fails a file without any suite).
 */
export function describeEachRelease(
  title: string,
  cases: readonly ReleaseCase[],
  body: (c: ReleaseCase) => void,
): void {
  if (cases.length === 0) {
    describe.skip(`${title}: ${NO_QEMU}`, () => {
      it('needs a QEMU release', () => {});
    });
    return;
  }
  describe.each(cases.map((c) => [c.label, c] as const))(`${title} on %s`, (_label, c) => body(c));
}
