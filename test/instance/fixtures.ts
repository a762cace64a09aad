/**
 * Features of the matrix releases from recorded probe replies (test/fixtures/qemu-features),
 * with a fixed binary path so that golden argv files do not depend on the machine.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { featuresFromProbe, type QemuFeatures, type QemuProbeReplies } from '../../src/instance/features.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';

const DIR = fileURLToPath(new URL('../fixtures/qemu-features/', import.meta.url));

/** argv[0] of every golden file. */
const FIXTURE_BINARY = '/usr/bin/qemu-system-x86_64';

/** Releases with a recorded probe, oldest first (`5.2`, `7.2`, `10.0`, `11.1`). */
export const RECORDED_RELEASES: string[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .map((f) => f.slice(0, -'.json'.length))
  .sort((a, b) => {
    const [am, an] = a.split('.').map(Number) as [number, number];
    const [bm, bn] = b.split('.').map(Number) as [number, number];
    return am - bm || an - bn;
  });

/** The raw recorded replies of `release`. */
export function recordedReplies(release: string): QemuProbeReplies {
  return (JSON.parse(readFileSync(`${DIR}${release}.json`, 'utf8')) as { replies: QemuProbeReplies }).replies;
}

/** The features of `release` as the probe would report them for {@link FIXTURE_BINARY}. */
export function recordedFeatures(release: string): QemuFeatures {
  return featuresFromProbe(FIXTURE_BINARY, recordedReplies(release));
}

/** Paths under Ganeti's default layout, for golden files. */
export const FIXTURE_PATHS = (name: string) => instancePaths(runLayout(), name);
