/** A QEMU version as the QMP greeting reports it. */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

/** Compares two versions: negative if `a < b`, 0 if equal, positive if `a > b`. */
export function compareVersions(a: QemuVersion, b: QemuVersion): number {
  return a.major - b.major || a.minor - b.minor || a.micro - b.micro;
}

/** True when `v` is at least `major.minor[.micro]`. */
export function versionAtLeast(v: QemuVersion, major: number, minor = 0, micro = 0): boolean {
  return compareVersions(v, { major, minor, micro }) >= 0;
}

/** Formats a version as `7.2.22`. */
export function formatVersion(v: QemuVersion): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}

/**
 * Parses the first `N.N[.N]` found in `text` (a `--version` line, an HMP `info version`
 * answer or a bare `1.7.0`). Returns `undefined` when there is none.
 */
export function parseVersion(text: string): QemuVersion | undefined {
  // No trailing \b: `info version` prints `7.2.22Debian 1:7.2+dfsg…` with no space.
  const m = /(?<![\d.])(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (!m) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), micro: m[3] === undefined ? 0 : Number(m[3]) };
}
