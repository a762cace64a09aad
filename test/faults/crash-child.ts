/**
 * The control plane the crash matrix kills (test/faults/crash-recovery.test.ts): one
 * process that drives a migration between two library-started "nodes" (two run
 * directories) with a `KVMHypervisor` per node, over QMP or HMP, and stops at a phase:
 *
 * 1. `accepted`: the destination QEMU started from the source's runtime and listening;
 *    `migrate` not yet called.
 * 2. `settings`: bandwidth, downtime and capabilities set on the source; the `migrate`
 *    command is swallowed by a monitor wrapper, so it never reaches QEMU.
 * 3. `active`: pre-copy under way (RAM being sent) while `waitForMigration` runs.
 * 4. `completed`: `waitForMigration` resolved; neither end finalized.
 * 5. `dst-finalized`: the destination finalized (the VM runs there); the source not.
 *
 * At its phase it prints `@@<marker> <json>` on stdout and hangs until the parent
 * SIGKILLs it. Every earlier marker is printed too, so the parent can tell how far a
 * child got. Errors are printed as `@@error <json>` and exit with code 3.
 *
 * Run as `node --import tsx test/faults/crash-child.ts '<json CrashChildConfig>'`: one
 * process, so SIGKILL ends the control plane and nothing else (the `tsx` command would
 * run the script in a second node process).
 */
import { pathToFileURL } from 'node:url';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { readInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { Instance } from '../../src/migration/types.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor } from '../../src/monitor/types.js';
import type { MigrationTlsOptions } from '../../src/tls/config.js';

/** The phases, in the order a migration passes them. */
const CRASH_PHASES = ['accepted', 'settings', 'active', 'completed', 'dst-finalized'] as const;
/** One of {@link CRASH_PHASES}. */
export type CrashPhase = (typeof CRASH_PHASES)[number];

/** What the parent passes (JSON, first argument). */
export interface CrashChildConfig {
  phase: CrashPhase;
  protocol: 'qmp' | 'hmp';
  name: string;
  /** Run directories of the source and destination nodes. */
  srcDir: string;
  dstDir: string;
  hvparams: Record<string, unknown>;
  accel: 'tcg' | 'kvm';
  /** Address the destination listens on and the source migrates to. */
  target: string;
  /** `waitForMigration`'s deadline (ms). */
  waitMs: number;
  /** Migrate over TLS: each node's `tls` option. */
  tls?: { src: MigrationTlsOptions; dst: MigrationTlsOptions };
}

const mark = (marker: string, data: Record<string, unknown> = {}): void => {
  process.stdout.write(`@@${marker} ${JSON.stringify(data)}\n`);
};

/** Never settles; a timer keeps the event loop (and so the process) alive. */
const hang = (): Promise<never> => {
  setInterval(() => {}, 60_000);
  return new Promise<never>(() => {});
};

/** A monitor that forwards everything except `migrate`, which it swallows after printing `@@settings`. */
function swallowMigrate(m: Monitor): Monitor {
  return new Proxy(m, {
    get(target, prop) {
      if (prop === 'execute') {
        return (command: string, args?: Record<string, unknown>) => {
          if (command !== 'migrate') return target.execute(command, args);
          mark('settings', { command, args });
          return hang();
        };
      }
      if (prop === 'humanCommand') {
        return (line: string) => {
          if (!/^migrate\s/.test(line.trim())) return target.humanCommand(line);
          mark('settings', { line });
          return hang();
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** The monitor factory of a node: the instance's QMP or HMP socket, as its state file names it. */
function opener(
  dir: string,
  protocol: CrashChildConfig['protocol'],
  wrap?: (m: Monitor) => Monitor,
): (name: string) => Promise<Monitor> {
  return async (name) => {
    const st = readInstanceState(instancePaths(runLayout(dir), name));
    if (!st) throw new Error(`no state file for '${name}' in ${dir}`);
    const m: Monitor =
      protocol === 'qmp'
        ? await QmpMonitor.connect({ path: st.qmp }, { timeoutMs: 10_000 })
        : await HmpMonitor.connect({ path: st.hmp }, { timeoutMs: 10_000 });
    return wrap ? wrap(m) : m;
  };
}

async function main(cfg: CrashChildConfig): Promise<void> {
  const stopAt = CRASH_PHASES.indexOf(cfg.phase);
  if (stopAt < 0) throw new Error(`unknown phase '${cfg.phase}'`);
  const reached = async (phase: CrashPhase, data: Record<string, unknown> = {}) => {
    mark(phase, data);
    if (CRASH_PHASES.indexOf(phase) >= stopAt) await hang();
  };
  const srcHv = new KVMHypervisor({
    instanceDir: cfg.srcDir,
    accel: cfg.accel,
    monitor: opener(cfg.srcDir, cfg.protocol, cfg.phase === 'settings' ? swallowMigrate : undefined),
    ...(cfg.tls ? { tls: cfg.tls.src, migrationGuard: false } : {}),
  });
  const dstHv = new KVMHypervisor({
    instanceDir: cfg.dstDir,
    accel: cfg.accel,
    monitor: opener(cfg.dstDir, cfg.protocol),
    ...(cfg.tls ? { tls: cfg.tls.dst, migrationGuard: false } : {}),
  });
  const inst: Instance = { name: cfg.name, hvparams: cfg.hvparams };

  await dstHv.acceptInstance(inst, srcHv.getMigrationInfo(cfg.name), cfg.target);
  const dstState = readInstanceState(instancePaths(runLayout(cfg.dstDir), cfg.name));
  await reached('accepted', { dstPid: dstState?.pid });

  await srcHv.migrateInstance(inst, cfg.target);
  mark('migrating');

  let sawActive = false;
  const result = await srcHv.waitForMigration(inst, {
    timeoutMs: cfg.waitMs,
    pollIntervalMs: 100,
    onProgress: (p) => {
      if (sawActive || p.status !== 'active' || (p.transferredBytes ?? 0) < 256 * 1024) return;
      sawActive = true;
      mark('active', { transferredBytes: p.transferredBytes });
      // The parent kills this process now; until then the wait goes on as it would.
    },
  });
  if (cfg.phase === 'active') {
    // The migration completed before the parent killed this process: say so, and exit
    // with a code the parent reports (the case needs a migration that lasts).
    mark('error', { message: 'the migration completed before the kill (phase active)' });
    process.exit(4);
  }
  await reached('completed', { totalTimeMs: result.totalTimeMs });

  const outcome = await dstHv.finalizeMigrationDst(inst, true);
  await reached('dst-finalized', { action: outcome.action });
}

// The test file imports the phases from here: only run as a script.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(JSON.parse(process.argv[2] ?? '{}') as CrashChildConfig).catch((e: unknown) => {
    mark('error', { message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
    process.exit(3);
  });
}
