/**
 * Records what the feature probe gets from each QEMU release of the test matrix into
 * test/fixtures/qemu-features/<release>.json, so argv golden files never depend on the
 * machine that runs the tests.
 *
 *   npx tsx scripts/record-qemu-features.ts            every release found (QEMU_RELEASES filters)
 *
 * Matrix binaries are wrappers that run a Debian rootfs's QEMU through its own loader; their
 * QEMU would load the host's (incompatible) modules, so QEMU_MODULE_DIR points at the
 * rootfs's module folder (an empty folder when it has none).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { recordQemuProbe } from '../src/instance/features.js';
import { qemuReleases } from '../test/support/qemu-releases.js';

const OUT = fileURLToPath(new URL('../test/fixtures/qemu-features/', import.meta.url));

function moduleDirFor(binary: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(binary, 'utf8');
  } catch {
    return undefined;
  }
  const rootfs = /"(\/[^"]*\/rootfs\/[^/"]+)\//.exec(text)?.[1];
  if (!rootfs) return undefined;
  const dir = join(rootfs, 'usr/lib/x86_64-linux-gnu/qemu');
  return existsSync(dir) ? dir : mkdtempSync(join(tmpdir(), 'no-qemu-modules-'));
}

mkdirSync(OUT, { recursive: true });
for (const release of qemuReleases()) {
  const moduleDir = moduleDirFor(release.binary);
  const env = moduleDir ? { ...process.env, QEMU_MODULE_DIR: moduleDir } : process.env;
  const replies = await recordQemuProbe(release.binary, { env, timeoutMs: 60_000 });
  const file = join(OUT, `${release.release}.json`);
  // One reply per line: diffs between recordings stay readable, the file stays compact.
  const lines = Object.entries(replies).map(
    ([key, value]) => `  ${JSON.stringify(key)}: ${JSON.stringify(value)}`,
  );
  const head = `{"release": ${JSON.stringify(release.release)}, "version": ${JSON.stringify(release.version)}, "replies": {\n`;
  writeFileSync(file, `${head}${lines.join(',\n')}\n}}\n`);
  console.log(`${release.release}: ${file}`);
}
