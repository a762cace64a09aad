/**
 * `kvm-hv demo`: a complete live migration between two local "nodes" (two run
 * directories). `startInstance` runs the dirty-memory guest (src/testing/guest/) from hvparams;
 * `acceptInstance` starts the destination QEMU from the source's runtime; the demo
 * migrates with a progress bar, verifies both ends and cleans up every process, socket
 * and temporary folder, also on Ctrl-C or error.
 *
 * The demo is the one production command built on the test kit (src/testing/: the guest
 * kernel builder, `findQemuBinary`, `freePort`, `generateTestPki` for `--tls`): it shows a
 * migration of a busy guest on one host, which is what the integration tests do. Nothing
 * else in the library imports src/testing/.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { HypervisorError } from '../errors.js';
import { instancePaths, runLayout } from '../instance/layout.js';
import { processAlive } from '../instance/process.js';
import type { InstanceSpec } from '../instance/spec.js';
import { readInstanceState } from '../instance/state.js';
import { KVMHypervisor } from '../kvm.js';
import type { Instance } from '../migration/types.js';
import type { Monitor } from '../monitor/types.js';
import {
  type Accelerator,
  type AcceleratorChoice,
  queryAccelerator,
  resolveAccelerator,
} from '../qemu/accel.js';
import {
  GUEST_STATUS_ADDRESS,
  type GuestStatus,
  guestMemoryMiBFor,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../testing/guest/index.js';
import { findQemuBinary, freePort } from '../testing/qemu-vm.js';
import { generateTestPki } from '../testing/test-pki.js';
import type { MigrationTlsOptions } from '../tls/config.js';
import { InterruptedError, UsageError } from './errors.js';
import { coercedHvParams } from './hvparams.js';
import { migrateSource } from './migrate-flow.js';
import { createProgressSink, progressModeFor } from './progress.js';
import { formatRate, renderSummary, renderTable, summaryJson } from './render.js';
import { onInterrupt } from './signals.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

/** Options of `kvm-hv demo`, after parsing. */
interface DemoOptions {
  /** Guest RAM, MiB. */
  memory: number;
  /** Size of the region the guest dirties, MiB. */
  dirty: number;
  /** Rate at which the guest dirties it, MiB/s (0 = as fast as it can). */
  rate: number;
  /** `migration_bandwidth`, MiB/s (0 = no limit). */
  bandwidth: number;
  /** `migration_caps`, `:`-separated (empty for none). */
  caps: string;
  /** `migration_downtime`, ms. */
  downtime: number;
  /** Give up after this many seconds. */
  timeout: number;
  /** Accelerator: `kvm`, `tcg` or `auto` (KVM when /dev/kvm opens read-write; default). */
  accel?: AcceleratorChoice;
  /** One JSON document on stdout. */
  json?: boolean;
  /** Migrate over TLS with throwaway certificates (needs `openssl`). */
  tls?: boolean;
}

const ACCEL_NAMES: Record<Accelerator, string> = { kvm: 'KVM', tcg: 'TCG' };

/** Default values of the demo options: converges in a few seconds on two TCG cores. */
const DEMO_DEFAULTS = {
  memory: 128,
  dirty: 32,
  rate: 64,
  bandwidth: 32,
  caps: 'auto-converge',
  downtime: 300,
  timeout: 120,
} as const;

/** The exact advice shown when QEMU is missing. */
const QEMU_INSTALL_HINT =
  'qemu-system-x86_64 not found: install it with `sudo apt-get install -y qemu-system-x86` ' +
  '(Debian/Ubuntu) or `sudo dnf install -y qemu-system-x86-core` (Fedora), run `bash scripts/setup.sh` ' +
  '(installs it when run as root), or set QEMU=/path/to/qemu-system-x86_64';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long the demo waits for the guest kernel to run (BIOS boot included). */
const GUEST_BOOT_TIMEOUT_MS = 60_000;

/** Reads the guest's status block through a monitor (`xp`). */
export async function readGuestStatus(monitor: Monitor): Promise<GuestStatus> {
  const text = await monitor.humanCommand(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`);
  return parseGuestStatus(parseXpWords(text));
}

/** Checks option combinations that commander cannot. Throws {@link UsageError}. */
function checkDemoOptions(o: DemoOptions): void {
  if (!Number.isInteger(o.memory) || o.memory < 16) {
    throw new UsageError(`--memory must be an integer >= 16 (MiB), got ${o.memory}`);
  }
  if (!Number.isInteger(o.dirty) || o.dirty < 1) {
    throw new UsageError(`--dirty must be an integer >= 1 (MiB), got ${o.dirty}`);
  }
  if (guestMemoryMiBFor(o.dirty) > o.memory) {
    throw new UsageError(
      `--dirty ${o.dirty} MiB does not fit in --memory ${o.memory} MiB: the guest needs at least ${guestMemoryMiBFor(o.dirty)} MiB`,
    );
  }
  if (!Number.isInteger(o.bandwidth))
    throw new UsageError(`--bandwidth must be an integer, got ${o.bandwidth}`);
  if (!Number.isInteger(o.downtime)) throw new UsageError(`--downtime must be an integer, got ${o.downtime}`);
  if (o.accel !== undefined && !['kvm', 'tcg', 'auto'].includes(o.accel)) {
    throw new UsageError(`--accel must be kvm, tcg or auto, got '${o.accel}'`);
  }
}

/** Everything the demo started, so that cleanup can undo exactly that. */
class DemoResources {
  readonly hypervisors: { hv: KVMHypervisor; root: string }[] = [];
  dir: string | undefined;

  async cleanup(logger: Logger): Promise<void> {
    for (const { hv, root } of this.hypervisors.splice(0)) {
      // Every instance either node still runs (the source after a failure, the destination).
      for (const name of hv.listInstances()) {
        await hv.stopInstance(name, { force: true, killTimeoutMs: 5000 }).catch((e: unknown) => {
          // Refused (a migration still runs): these VMs are the demo's own, kill them.
          logger.warn({ err: e, instance: name }, 'stop refused; killing the demo VM');
          const st = readInstanceState(instancePaths(runLayout(root), name));
          if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
        });
      }
      await hv.close().catch((e: unknown) => logger.debug({ err: e }, 'closing a hypervisor'));
    }
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }
}

/** An absolute path for `kvm_path`: a bare command name is looked up on the PATH. */
function absoluteBinary(binary: string): string {
  if (isAbsolute(binary)) return binary;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, binary);
    if (dir && existsSync(candidate)) return resolve(candidate);
  }
  throw new HypervisorError(QEMU_INSTALL_HINT);
}

/** Runs the demo; resolves when both ends are verified and everything is cleaned up. */
async function runDemo(o: DemoOptions, logger: Logger): Promise<void> {
  checkDemoOptions(o);
  const found = findQemuBinary();
  if (!found) throw new HypervisorError(QEMU_INSTALL_HINT);
  const binary = absoluteBinary(found);
  const human = !o.json;
  const step = (text: string) => {
    if (human) process.stderr.write(`• ${text}\n`);
    else logger.info(text);
  };
  const abort = new AbortController();
  const removeSignals = onInterrupt((signal) => {
    logger.warn({ signal }, 'interrupted: stopping the demo');
    abort.abort();
  });
  const checkAbort = () => {
    if (abort.signal.aborted)
      throw new InterruptedError('interrupted: demo stopped; both QEMU processes are killed');
  };
  const res = new DemoResources();
  const started = performance.now();
  try {
    res.dir = mkdtempSync(join(tmpdir(), 'kvm-hv-demo-'));
    const kernel = join(res.dir, 'guest.img');
    writeGuestImage(kernel, { dirtyMiB: o.dirty, rateMiBps: o.rate });
    const port = await freePort();
    const hvparams = coercedHvParams([]);
    Object.assign(hvparams, {
      kvm_path: binary,
      kernel_path: kernel,
      serial_console: false,
      migration_port: port,
      migration_bandwidth: o.bandwidth,
      migration_downtime: o.downtime,
      migration_caps: o.caps,
    });
    KVMHypervisor.checkParameterSyntax(KVMHypervisor.fillDefaults(hvparams));
    const instance: Instance = { name: 'demo', hvparams, memoryMiB: o.memory };
    const spec: InstanceSpec = {
      name: 'demo',
      uuid: randomUUID(),
      memory: { maxMiB: o.memory },
      vcpus: 1,
      disks: [],
      nics: [],
      hvparams,
    };

    const accel = resolveAccelerator(o.accel ?? 'auto');
    const tls = o.tls ? await demoTls(res.dir, step) : undefined;
    // Two run directories: two "nodes" on this host.
    const node = (n: string, nodeTls: MigrationTlsOptions | undefined) => {
      const root = join(res.dir as string, n);
      const hv = new KVMHypervisor({
        instanceDir: root,
        accel,
        logger,
        ...(nodeTls ? { tls: nodeTls } : {}),
      });
      res.hypervisors.push({ hv, root });
      return hv;
    };
    const hvSrc = node('node1', tls?.source);
    const hvDst = node('node2', tls?.destination);
    const rateText = o.rate === 0 ? 'as fast as it can' : `${o.rate} MiB/s`;
    step(
      `starting the source instance (${ACCEL_NAMES[accel]}, ${o.memory} MiB) with the guest dirtying ${o.dirty} MiB at ${rateText}`,
    );
    const info = await hvSrc.startInstance(spec, { signal: abort.signal });
    checkAbort();
    const srcMon = await hvSrc.monitorFor('demo');
    // QEMU got exactly one -accel; confirm that the guest really runs under it.
    const running = await queryAccelerator(srcMon);
    if (running !== accel) {
      throw new HypervisorError(
        `the source QEMU runs with ${ACCEL_NAMES[running]}, not ${ACCEL_NAMES[accel]}`,
      );
    }

    // Wait until the guest runs, then measure what it really dirties.
    // SeaBIOS needs ~0.2 s under TCG but 8-12 s under nested KVM (every port access is a
    // costly VM exit), so the limit is generous.
    const bootDeadline = Date.now() + GUEST_BOOT_TIMEOUT_MS;
    let before = await readGuestStatus(srcMon);
    while (!before.running || before.pagesWritten === 0) {
      checkAbort();
      if (Date.now() > bootDeadline) {
        throw new HypervisorError(`the demo guest did not start within ${GUEST_BOOT_TIMEOUT_MS / 1000} s`);
      }
      await sleep(50);
      before = await readGuestStatus(srcMon);
    }
    const t0 = performance.now();
    await sleep(500);
    const after = await readGuestStatus(srcMon);
    const measuredRate =
      (((after.pagesWritten - before.pagesWritten) >>> 0) * 4096 * 1000) / (performance.now() - t0);
    step(`guest running (pid ${info.pid}): dirtying ${formatRate(measuredRate)}`);
    checkAbort();

    step(
      `destination: starting QEMU from the source's runtime, -incoming defer, ${tls ? 'TLS credentials, then ' : ''}listening on 127.0.0.1:${port}`,
    );
    await hvDst.acceptInstance(instance, hvSrc.getMigrationInfo('demo'), '127.0.0.1', {
      signal: abort.signal,
    });
    checkAbort();
    const caps = o.caps === '' ? 'no capabilities' : `capabilities ${o.caps}`;
    const bw = o.bandwidth === 0 ? 'unlimited' : `${o.bandwidth} MiB/s`;
    step(
      `source: migrating live${tls ? ' over TLS' : ''} to 127.0.0.1:${port} (${caps}, bandwidth ${bw}, downtime ${o.downtime} ms)`,
    );
    const sink = createProgressSink(progressModeFor(!human));
    let outcome: Awaited<ReturnType<typeof migrateSource>>;
    try {
      outcome = await migrateSource(hvSrc, instance, '127.0.0.1', true, {
        timeoutMs: o.timeout * 1000,
        sink,
        signal: abort.signal,
        logger,
      });
    } catch (error) {
      if (error instanceof InterruptedError) checkAbort();
      throw error;
    } finally {
      sink.stop();
    }
    await hvDst.finalizeMigrationDst(instance, true);

    // Verify: the destination runs the guest; the source QEMU was stopped after success.
    const dstInfo = await hvDst.getInstanceInfo('demo');
    const dstMon = await hvDst.monitorFor('demo');
    const g1 = await readGuestStatus(dstMon);
    await sleep(300);
    const g2 = await readGuestStatus(dstMon);
    const guestAlive = g2.running && (g2.pagesWritten - g1.pagesWritten) >>> 0 > 0;
    const sourceGone = hvSrc.listInstances().length === 0;
    const verified = dstInfo.state === 'running' && sourceGone && guestAlive;
    const srcStatus = sourceGone ? 'stopped' : 'still running';
    const summary = summaryJson(instance.name, outcome.result, outcome.wallTimeMs, sink.maxThrottlePercent);
    const report = {
      ...summary,
      demoTimeMs: Math.round(performance.now() - started),
      accelerator: accel,
      guest: {
        memoryMiB: o.memory,
        dirtyMiB: o.dirty,
        rateMiBps: o.rate,
        measuredDirtyBytesPerSec: Math.round(measuredRate),
      },
      settings: { bandwidthMiBps: o.bandwidth, downtimeMs: o.downtime, caps: o.caps, tls: tls !== undefined },
      actions: outcome.actions,
      destination: { status: dstInfo.state, pid: dstInfo.pid, guestRunning: guestAlive },
      source: { status: srcStatus },
      verified,
    };
    if (o.json) printJson(report);
    else {
      print(renderSummary(summary));
      print(
        renderTable([
          [
            'destination',
            `${dstInfo.state} (pid ${dstInfo.pid})${guestAlive ? ', guest still dirtying memory' : ', guest NOT running'}`,
          ],
          ['source', `${srcStatus} after the migration`],
        ]),
      );
    }
    if (!verified) {
      throw new HypervisorError(
        `verification failed: destination ${dstInfo.state}${guestAlive ? '' : ' (guest not running)'}, source ${srcStatus} (expected running and stopped)`,
      );
    }
  } finally {
    removeSignals();
    step('cleaning up: stopping every QEMU the demo started, removing its run directories');
    await res.cleanup(logger);
  }
}

/**
 * Throwaway CA and node certificates for `demo --tls` (in the demo's temporary folder):
 * the destination accepts only the source's client certificate.
 */
async function demoTls(
  dir: string,
  step: (text: string) => void,
): Promise<{ source: MigrationTlsOptions; destination: MigrationTlsOptions }> {
  step('generating a throwaway CA and node certificates with openssl');
  const pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['demo-src', 'demo-dst'] });
  const src = pki.nodes['demo-src']!;
  const dst = pki.nodes['demo-dst']!;
  return { source: { dir: src.dir }, destination: { dir: dst.dir, allowedPeers: [src.clientDn] } };
}

/** Adds `kvm-hv demo` to the program. */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('live-migrate a busy guest between two local QEMU processes and show how it went')
    .option('--memory <MiB>', 'guest RAM', numberArg('--memory', { integer: true }), DEMO_DEFAULTS.memory)
    .option(
      '--dirty <MiB>',
      'memory the guest keeps dirtying',
      numberArg('--dirty', { integer: true }),
      DEMO_DEFAULTS.dirty,
    )
    .option(
      '--rate <MiBps>',
      'how fast the guest dirties it, 0 = flat out',
      numberArg('--rate', { allowZero: true }),
      DEMO_DEFAULTS.rate,
    )
    .option(
      '--bandwidth <MiBps>',
      'migration bandwidth limit, 0 = none',
      numberArg('--bandwidth', { allowZero: true, integer: true }),
      DEMO_DEFAULTS.bandwidth,
    )
    .option('--caps <list>', "migration capabilities, ':'-separated ('' for none)", DEMO_DEFAULTS.caps)
    .option(
      '--downtime <ms>',
      'maximum downtime',
      numberArg('--downtime', { allowZero: true, integer: true }),
      DEMO_DEFAULTS.downtime,
    )
    .option('--timeout <seconds>', 'give up after this long', numberArg('--timeout'), DEMO_DEFAULTS.timeout)
    .option(
      '--accel <kvm|tcg|auto>',
      'accelerator; auto = KVM when /dev/kvm opens read-write, else TCG',
      'auto',
    )
    .option('--tls', 'migrate over TLS with a throwaway CA and certificates (needs openssl)')
    .option('--json', 'print one JSON document on stdout (no progress bar)')
    .addHelpText(
      'after',
      '\nNeeds qemu-system-x86_64 (or $QEMU). Ctrl-C stops the demo and kills both VMs (exit 130).',
    )
    .action(async (opts: DemoOptions, cmd: Command) => {
      await runDemo(opts, loggerFor(cmd));
    });
}
