/**
 * The real QEMU releases the suite runs against: the host's `qemu-system-x86_64` (or
 * `$QEMU`) plus whatever `scripts/qemu-matrix.sh` built (its `releases.json`).
 *
 * - `KVMHV_QEMU_MATRIX_DIR`: where the matrix lives (default `/var/cache/kvm-hypervisor/qemu-matrix`).
 * - `QEMU_RELEASES`: comma-separated release filter, e.g. `7.2` or `5.2,11.1` (default: all).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One QEMU binary the tests can start. */
export interface QemuRelease {
  /** Major.minor, e.g. `5.2`, `11.1`. */
  release: string;
  /** Full version as `--version` prints it, e.g. `5.2.0`. */
  version: string;
  /** Debian suite it came from, or `host`. */
  suite: string;
  /** Executable (a wrapper script for matrix releases). */
  binary: string;
}

export const MATRIX_DIR = process.env.KVMHV_QEMU_MATRIX_DIR || '/var/cache/kvm-hypervisor/qemu-matrix';

function versionOf(binary: string): string | undefined {
  try {
    const out = execFileSync(binary, ['--version'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return /version (\d+\.\d+(?:\.\d+)?)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

let cached: QemuRelease[] | undefined;

/** Every available release, oldest first, filtered by `QEMU_RELEASES`; the host's QEMU first among equals. */
export function qemuReleases(): QemuRelease[] {
  if (cached) return cached;
  const out: QemuRelease[] = [];
  const hostBinary = process.env.QEMU || 'qemu-system-x86_64';
  const hostVersion = versionOf(hostBinary);
  if (hostVersion) {
    out.push({
      release: hostVersion.split('.').slice(0, 2).join('.'),
      version: hostVersion,
      suite: 'host',
      binary: hostBinary,
    });
  }
  const manifest = join(MATRIX_DIR, 'releases.json');
  if (existsSync(manifest)) {
    for (const r of JSON.parse(readFileSync(manifest, 'utf8')) as QemuRelease[]) {
      if (out.some((o) => o.release === r.release)) continue;
      if (existsSync(r.binary)) out.push(r);
    }
  }
  const key = (r: QemuRelease) => r.release.split('.').map(Number) as [number, number];
  out.sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1]);
  const filter = process.env.QEMU_RELEASES?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  cached = filter?.length ? out.filter((r) => filter.includes(r.release)) : out;
  return cached;
}

/** The release whose major.minor starts with `prefix` (`'11'` finds 11.1), or undefined. */
export function qemuRelease(prefix: string): QemuRelease | undefined {
  return qemuReleases().find((r) => r.release === prefix || r.release.startsWith(`${prefix}.`));
}
