/**
 * Records the source side of real live migrations as transcripts, over QMP and HMP:
 *
 *   npx tsx scripts/record-transcripts.ts               # the host's QEMU (or $QEMU)
 *   npx tsx scripts/record-transcripts.ts --all         # every release of the QEMU matrix
 *   QEMU_RELEASES=5.2,11.1 npx tsx scripts/record-transcripts.ts --all
 *   npx tsx scripts/record-transcripts.ts /path/to/qemu-system-x86_64 …
 *
 * Each writes `test/fixtures/transcripts/qemu-<version>-{qmp,hmp}-live.json`, which the
 * unit tests replay with `TranscriptMonitor`. Re-run it (with `--all` after
 * `bash scripts/qemu-matrix.sh`) when the migration code changes what it sends.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { HmpMonitor } from '../src/monitor/hmp.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import type { Monitor } from '../src/monitor/types.js';
import { formatVersion } from '../src/qemu/version.js';
import { freePort, QemuVm } from '../src/testing/qemu-vm.js';
import { RecordingMonitor } from '../src/testing/transcript.js';
import { qemuReleases } from '../test/support/qemu-releases.js';

/** What a fixture replays: the scenario and the conversation. */
export interface TranscriptScenario {
  hvparams: Record<string, unknown>;
  target: string;
  live: boolean;
  outcome: 'completed' | 'failed';
}

async function record(binary: string, protocol: 'qmp' | 'hmp', dir: string): Promise<void> {
  const port = await freePort();
  const src = await QemuVm.start({ name: `rec-${protocol}-src`, dir, binary, memoryMiB: 64 });
  const dst = await QemuVm.start({
    name: `rec-${protocol}-dst`,
    dir,
    binary,
    memoryMiB: 64,
    incoming: `tcp:127.0.0.1:${port}`,
  });
  try {
    const inner: Monitor =
      protocol === 'qmp'
        ? await QmpMonitor.connect({ path: src.qmpPath })
        : await HmpMonitor.connect({ path: src.hmpPath! });
    const recorder = new RecordingMonitor(
      inner,
      `source side of a live migration with xbzrle over ${protocol.toUpperCase()}`,
      `recorded from qemu-system-x86_64 ${formatVersion(inner.version)} (${src.accel.toUpperCase()}, -m 64) by scripts/record-transcripts.ts`,
    );
    const scenario: TranscriptScenario = {
      hvparams: {
        migration_port: 8102,
        migration_bandwidth: 64,
        migration_downtime: 100,
        migration_caps: 'xbzrle',
      },
      target: '127.0.0.1',
      live: true,
      outcome: 'completed',
    };
    const dstHv = new KVMHypervisor({ monitor: () => QmpMonitor.connect({ path: dst.qmpPath }) });
    const srcHv = new KVMHypervisor({ monitor: () => recorder });
    // The real port differs per run; the transcript shows the scenario's one.
    const instance = { name: 'rec', hvparams: { ...scenario.hvparams, migration_port: port } };
    await dstHv.acceptInstance(instance);
    await srcHv.migrateInstance(instance, scenario.target, scenario.live);
    await srcHv.waitForMigration(instance, { pollIntervalMs: 200 });
    await srcHv.finalizeMigrationSource(instance, true);
    await dstHv.finalizeMigrationDst(instance, true);
    await Promise.all([srcHv.close(), dstHv.close()]);
    const text = JSON.stringify({ scenario, transcript: recorder.transcript }, null, 1).replaceAll(
      `127.0.0.1:${port}`,
      '127.0.0.1:8102',
    );
    const file = `test/fixtures/transcripts/qemu-${recorder.transcript.qemu}-${protocol}-live.json`;
    writeFileSync(file, `${text}\n`);
    console.log(`wrote ${file} (${recorder.transcript.exchanges.length} exchanges)`);
  } finally {
    await Promise.all([src.kill(), dst.kill()]);
  }
}

const args = process.argv.slice(2);
const binaries = args.includes('--all')
  ? qemuReleases().map((r) => r.binary)
  : args.length > 0
    ? args
    : [process.env.QEMU || 'qemu-system-x86_64'];
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-rec-'));
try {
  for (const binary of binaries) {
    await record(binary, 'qmp', dir);
    await record(binary, 'hmp', dir);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
