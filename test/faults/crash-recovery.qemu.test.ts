/**
 * Crash matrix (issue 18, item 8): the control plane of a migration dies (SIGKILL) at each
 * phase, and `kvm-hv recover` from fresh processes finishes or undoes the migration on
 * both nodes, on every QEMU release of the suite, with the library on QMP and on HMP.
 *
 * Two run directories play two nodes on one host. The source instance is started with
 * `startInstance` and migration hvparams QEMU does not have by default (bandwidth,
 * downtime, auto-converge and xbzrle; over TLS also the tls-* parameters), so "settings
 * restored" is a real check: its `query-migrate-parameters` and capabilities are recorded
 * before the migration. A child
 * process (crash-child.ts) runs the library on both nodes and is killed at its marker:
 *
 * | scenario        | killed                                                  | the VM must end on |
 * | --------------- | ------------------------------------------------------- | ------------------ |
 * | `accepted`      | destination started and listening, before `migrate`     | source             |
 * | `settings`      | settings set, `migrate` swallowed by the child          | source             |
 * | `active-cancel` | pre-copy running (1 MiB/s, busy guest: never converges) | source (cancelled) |
 * | `active-wait`   | pre-copy running (4 MiB/s, gentle guest: converges)     | destination        |
 * | `completed`     | completed, neither end finalized                        | destination        |
 * | `dst-finalized` | destination finalized, source not                       | destination        |
 * | `settings-tls`  | as `settings`, over TLS (QMP only)                      | source             |
 * | `completed-tls` | as `completed`, over TLS (QMP only)                     | destination        |
 *
 * Then the built CLI recovers each node (`recover NAME --run-dir DIR --json`): the
 * destination, then the source. In `active-cancel` first the destination with a short
 * deadline, which must leave the incoming migration alone, then the source with
 * `--active cancel`, then the destination; in `active-wait` the source first, which waits
 * for the migration QEMU carried on with. Then the source again with `--destination-runs`
 * when it reported `awaiting-destination` and the destination reported the VM `here`.
 * QEMU is observed from outside (its QMP socket, free once the child is dead; `/proc`):
 * exactly one copy runs and its guest makes progress, the survivor's migration settings
 * and capabilities are what they were before, no stray QEMU, file, journal or TLS object
 * is left, a second `recover` on each node is a no-op, and every call settled within its
 * deadline (+ a hang margin). `CRASH_MATRIX_OUT=file` appends one JSON line per case.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { processAlive } from '../../src/instance/process.js';
import { readInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import {
  GUEST_STATUS_ADDRESS,
  type GuestStatus,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';
import { BIN, ensureBuilt, ROOT } from '../cli/helpers.js';
import {
  type Accel,
  accelerators,
  describeEachRelease,
  migrationProtocols,
  type ReleaseCase,
  releaseCases,
} from '../support/real-qemu.js';
import type { CrashChildConfig, CrashPhase } from './crash-child.js';
import { HANG_MARGIN_MS } from './harness.js';

vi.setConfig({ testTimeout: 180_000, hookTimeout: 120_000 });

/**
 * TCG, as the fault matrix runs (under nested KVM SeaBIOS alone takes 8-12 s per guest);
 * `KVMHV_ACCEL=kvm` runs it under KVM (QMP only, as the migration tests do there).
 */
const ACCEL: Accel =
  process.env.KVMHV_ACCEL?.trim() === 'kvm' && accelerators().includes('kvm') ? 'kvm' : 'tcg';
const PROTOCOLS = migrationProtocols(ACCEL);

/** `--timeout` of each `recover` (s), and what a call may take beyond it before it counts as hung. */
const RECOVER_S = 20;
/** Node's start-up and the CLI's own set-up, on top of {@link HANG_MARGIN_MS}. */
const CLI_START_MS = 5000;
/** `--timeout` of the destination's first `recover` while the source still migrates (phase `active`). */
const SHORT_S = 3;
/** How long the parent waits for a child's marker. */
const MARKER_MS = 60_000;
const MiB = 1024 * 1024;

/** The parameters of `query-migrate-parameters` a migration changes and recovery must put back. */
const PARAMETER_KEYS = [
  'max-bandwidth',
  'downtime-limit',
  'max-postcopy-bandwidth',
  'tls-creds',
  'tls-hostname',
  'tls-authz',
] as const;

/** One row of the matrix: where the child dies, the migration it was running, and where the VM must end. */
interface Scenario {
  /** Test title and report key. */
  id: string;
  /** The child's marker at which it is killed. */
  kill: CrashPhase;
  /** `migration_bandwidth` (MiB/s). */
  bandwidth: number;
  /** The guest image. */
  guest: 'busy' | 'gentle';
  /** The node that runs the VM after recovery. */
  survivor: 'src' | 'dst';
  /** Migrate over TLS (QMP only: HMP cannot undo TLS on QEMU 10.1+). */
  tls?: boolean;
}

/**
 * The rows. `active-cancel`: 1 MiB/s for a guest dirtying 8 MiB/s never converges; the
 * source is recovered with `--active cancel`. `active-wait`: 4 MiB/s for a guest dirtying
 * 2 MiB/s converges on its own a few seconds after the kill; the source is recovered first,
 * with the default `--active wait` (from its journal), so the VM ends on the destination.
 */
const SCENARIOS: Scenario[] = [
  { id: 'accepted', kill: 'accepted', bandwidth: 48, guest: 'busy', survivor: 'src' },
  { id: 'settings', kill: 'settings', bandwidth: 48, guest: 'busy', survivor: 'src' },
  { id: 'active-cancel', kill: 'active', bandwidth: 1, guest: 'busy', survivor: 'src' },
  { id: 'active-wait', kill: 'active', bandwidth: 4, guest: 'gentle', survivor: 'dst' },
  { id: 'completed', kill: 'completed', bandwidth: 48, guest: 'busy', survivor: 'dst' },
  { id: 'dst-finalized', kill: 'dst-finalized', bandwidth: 48, guest: 'busy', survivor: 'dst' },
  // TLS: credentials, authz and tls-* parameters on both ends must go too.
  { id: 'settings-tls', kill: 'settings', bandwidth: 48, guest: 'busy', survivor: 'src', tls: true },
  { id: 'completed-tls', kill: 'completed', bandwidth: 48, guest: 'busy', survivor: 'dst', tls: true },
];

const root = mkdtempSync(join(tmpdir(), 'kvmhv-crash-'));
/** The dirtying guests: 8 MiB rewritten at 8 MiB/s (busy) or at 2 MiB/s (gentle). */
const GUESTS = { busy: join(root, 'busy.img'), gentle: join(root, 'gentle.img') };
writeGuestImage(GUESTS.busy, { dirtyMiB: 8, rateMiBps: 8 });
writeGuestImage(GUESTS.gentle, { dirtyMiB: 8, rateMiBps: 2 });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Processes this file started besides QEMU (children, CLI runs): killed by pid after each test. */
const processes = new Set<ChildProcess>();
/** The folder of the running case: every QEMU whose command line names it is killed after each test. */
let caseRoot: string | undefined;

/** Pids of live (non-zombie) processes whose command line contains `text`. */
function pidsNaming(text: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'latin1');
      if (cmdline === '' || !cmdline.split('\0').join(' ').includes(text)) continue;
      const state = /^\d+ \(.*\) (\S)/s.exec(readFileSync(`/proc/${entry}/stat`, 'latin1'))?.[1];
      if (state !== 'Z' && state !== 'X') out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

async function killAll(): Promise<void> {
  for (const p of processes) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  processes.clear();
  if (!caseRoot) return;
  const dir = caseRoot;
  for (let i = 0; i < 50; i++) {
    const pids = pidsNaming(dir);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await sleep(100);
  }
  rmSync(dir, { recursive: true, force: true });
  caseRoot = undefined;
}

/** Certificates of the two nodes (`openssl`). */
let pki: TestPki;
beforeAll(async () => {
  await ensureBuilt();
  pki = await generateTestPki({ dir: join(root, 'pki'), nodes: ['n1', 'n2'] });
}, 180_000);
afterEach(killAll);
afterAll(async () => {
  await killAll();
  rmSync(root, { recursive: true, force: true });
});

/** Files of a run directory (relative paths), without the QEMU logs the library keeps on purpose. */
function files(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  try {
    walk(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return out.filter((f) => !f.startsWith('log/')).sort();
}

/** Runs `fn` on a fresh QMP connection to `path` (nobody else may hold it), then closes it. */
async function withQmp<T>(path: string, fn: (m: QmpMonitor) => Promise<T>): Promise<T> {
  const m = await QmpMonitor.connect({ path }, { timeoutMs: 5000, greetingTimeoutMs: 5000 });
  try {
    return await fn(m);
  } finally {
    await m.close();
  }
}

interface Settings {
  parameters: Record<string, unknown>;
  capabilities: Record<string, boolean>;
}

/**
 * The settings a migration changes: the parameters above and every capability except
 * `events`, which the library turns on for its own use and leaves on (as libvirt does;
 * it only makes QEMU report migration states).
 */
async function settingsOf(m: QmpMonitor): Promise<Settings> {
  const all = await m.execute<Record<string, unknown>>('query-migrate-parameters');
  const caps = await m.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
  return {
    parameters: Object.fromEntries(PARAMETER_KEYS.filter((k) => k in all).map((k) => [k, all[k]])),
    capabilities: Object.fromEntries(
      caps.filter((c) => c.capability !== 'events').map((c) => [c.capability, c.state]),
    ),
  };
}

async function guestStatus(m: QmpMonitor): Promise<GuestStatus> {
  return parseGuestStatus(
    parseXpWords(await m.humanCommand(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`)),
  );
}

/** One node's QEMU as QEMU itself reports it (`gone` when no process runs). */
interface NodeView {
  pid?: number;
  status: string;
  migration?: string;
}

async function viewOf(dir: string, name: string): Promise<NodeView> {
  const st = readInstanceState(instancePaths(runLayout(dir), name));
  if (!st || !processAlive(st)) return { status: 'gone' };
  return withQmp(st.qmp, async (m) => ({
    pid: st.pid,
    status: (await m.execute<{ status: string }>('query-status')).status,
    migration: (await m.execute<{ status?: string }>('query-migrate')).status ?? 'none',
  }));
}

/** What `kvm-hv recover --json` printed, and how the run ended. */
interface RecoverRun {
  args: string[];
  code: number | null;
  ms: number;
  report: {
    instance: string;
    role: string;
    action: string;
    vm: string;
    settled: boolean;
    message: string;
    status?: string;
    runState?: string;
  };
  stderr: string;
}

/** Runs `kvm-hv recover` from a fresh process and checks it settled within its deadline (+ margin). */
async function recover(
  dir: string,
  name: string,
  extra: string[] = [],
  timeoutS = RECOVER_S,
): Promise<RecoverRun> {
  const args = ['recover', name, '--run-dir', dir, '--timeout', String(timeoutS), '--json', ...extra];
  const budget = timeoutS * 1000 + HANG_MARGIN_MS + CLI_START_MS;
  const started = Date.now();
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  processes.add(child);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), budget);
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  clearTimeout(timer);
  processes.delete(child);
  const ms = Date.now() - started;
  const shown = `kvm-hv ${args.join(' ')} → exit ${code} after ${ms} ms\nstdout: ${out}\nstderr: ${err}`;
  expect(ms, `did not settle within ${timeoutS} s + margins: ${shown}`).toBeLessThan(budget);
  let report: RecoverRun['report'];
  try {
    report = JSON.parse(out) as RecoverRun['report'];
  } catch {
    throw new Error(`no JSON report: ${shown}`);
  }
  // The exit code says whether an operator must check.
  expect(code, shown).toBe(report.settled ? 0 : 1);
  expect(report.instance, shown).toBe(name);
  return { args, code, ms, report, stderr: err };
}

/** A started crash child: waits for its markers. */
interface Child {
  proc: ChildProcess;
  waitFor(marker: string): Promise<Record<string, unknown>>;
  output(): string;
}

function startChild(cfg: CrashChildConfig): Child {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'test/faults/crash-child.ts'), JSON.stringify(cfg)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  processes.add(proc);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const output = () => `stdout: ${out}\nstderr: ${err}`;
  return {
    proc,
    output,
    async waitFor(marker) {
      const until = Date.now() + MARKER_MS;
      for (;;) {
        const line = out.split('\n').find((l) => l.startsWith(`@@${marker} `));
        if (line) return JSON.parse(line.slice(marker.length + 3)) as Record<string, unknown>;
        if (out.includes('@@error ') || proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(
            `the crash child ended before marker '${marker}' (exit ${proc.exitCode}): ${output()}`,
          );
        }
        if (Date.now() > until) throw new Error(`no marker '${marker}' within ${MARKER_MS} ms: ${output()}`);
        await sleep(50);
      }
    },
  };
}

/** SIGKILLs the child and waits until it is gone. */
async function kill(child: Child): Promise<void> {
  const gone = new Promise((res) => child.proc.once('close', res));
  child.proc.kill('SIGKILL');
  await gone;
  processes.delete(child.proc);
}

/** `kvm_path` must be absolute; the host release may be a bare name on the PATH. */
function absolute(binary: string): string {
  if (binary.startsWith('/')) return binary;
  for (const d of (process.env.PATH ?? '').split(':')) {
    try {
      if (statSync(join(d, binary)).isFile()) return join(d, binary);
    } catch {
      // not there
    }
  }
  throw new Error(`${binary} is not on the PATH`);
}

let seq = 0;

describeEachRelease('crash recovery', releaseCases([ACCEL]), (rel: ReleaseCase) => {
  const cases = PROTOCOLS.flatMap((protocol) =>
    SCENARIOS.filter((sc) => protocol === 'qmp' || !sc.tls).map((sc) => [sc.id, protocol, sc] as const),
  );
  it.each(cases)(
    'killed at %s over %s: recover leaves one running copy, settings restored',
    async (_id, protocol, sc) => {
      const phase = sc.kill;
      const n = ++seq;
      const name = `cr${n}`;
      caseRoot = join(root, `c${n}`);
      const srcDir = join(caseRoot, 'n1');
      const dstDir = join(caseRoot, 'n2');
      mkdirSync(caseRoot);
      const port = await freePort();
      const bandwidth = sc.bandwidth;
      const hvparams = {
        kvm_path: absolute(rel.binary),
        kernel_path: GUESTS[sc.guest],
        migration_port: port,
        migration_bandwidth: bandwidth,
        migration_downtime: 100,
        migration_caps: 'auto-converge:xbzrle',
      };

      // The source instance, started by the library on node 1.
      const starter = new KVMHypervisor({ instanceDir: srcDir, accel: ACCEL });
      try {
        await starter.startInstance({
          name,
          uuid: `5a1e0000-0000-4000-8000-${String(n).padStart(12, '0')}`,
          memory: { maxMiB: 64 },
          vcpus: 1,
          disks: [],
          nics: [],
          hvparams,
        });
      } finally {
        await starter.close(); // frees the QMP socket for the child
      }
      const srcPaths = instancePaths(runLayout(srcDir), name);
      const runningFiles = files(srcDir);
      // The guest dirties memory before the migration starts (under KVM SeaBIOS takes seconds).
      await withQmp(srcPaths.qmp, async (m) => {
        const until = Date.now() + 60_000;
        for (let g = await guestStatus(m); !(g.running && g.pagesWritten > 0); g = await guestStatus(m)) {
          if (Date.now() > until) throw new Error(`the guest did not start: ${JSON.stringify(g)}`);
          await sleep(100);
        }
      });
      const before = await withQmp(srcPaths.qmp, settingsOf);
      // QEMU's defaults differ from the hvparams: the migration changes them for real.
      expect(before.parameters['max-bandwidth']).not.toBe(bandwidth * MiB);
      expect(before.capabilities['auto-converge']).toBe(false);

      // The control plane, killed at its phase.
      const child = startChild({
        phase,
        protocol,
        name,
        srcDir,
        dstDir,
        hvparams,
        accel: ACCEL,
        target: '127.0.0.1',
        waitMs: 60_000,
        ...(sc.tls
          ? {
              tls: {
                src: { dir: pki.nodes.n1!.dir },
                dst: { dir: pki.nodes.n2!.dir, allowedPeers: [pki.nodes.n1!.clientDn] },
              },
            }
          : {}),
      });
      await child.waitFor(phase);
      await kill(child);

      // Where QEMU stands now, seen from outside.
      const src0 = await viewOf(srcDir, name);
      const dst0 = await viewOf(dstDir, name);
      const at = `${sc.id}/${protocol}: src ${JSON.stringify(src0)}, dst ${JSON.stringify(dst0)}`;
      switch (phase) {
        case 'accepted':
        case 'settings':
          expect([src0.status, src0.migration, dst0.status], at).toEqual(['running', 'none', 'inmigrate']);
          break;
        case 'active':
          if (sc.survivor === 'src') {
            expect([src0.status, src0.migration, dst0.status], at).toEqual([
              'running',
              'active',
              'inmigrate',
            ]);
          } else {
            // Converging on its own: it may have completed already.
            expect(src0.migration === 'active' || src0.status === 'postmigrate', at).toBe(true);
          }
          break;
        case 'completed':
          // The destination QEMU resumes the VM itself once the incoming migration completed
          // (it was not started with -S); not yet finalized.
          expect([src0.status, src0.migration], at).toEqual(['postmigrate', 'completed']);
          expect(['running', 'paused'], at).toContain(dst0.status);
          break;
        case 'dst-finalized':
          expect([src0.status, src0.migration, dst0.status], at).toEqual([
            'postmigrate',
            'completed',
            'running',
          ]);
          break;
      }
      if (sc.tls) {
        // The credentials are in place on both ends: their removal is a real check.
        const tlsObjects = async (dir: string) =>
          withQmp(instancePaths(runLayout(dir), name).qmp, async (m) =>
            (await m.execute<{ type: string }[]>('qom-list', { path: '/objects' })).filter((o) =>
              /tls/.test(o.type),
            ),
          );
        expect((await tlsObjects(srcDir)).length, at).toBeGreaterThan(0);
        expect((await tlsObjects(dstDir)).length, at).toBeGreaterThan(0);
      }
      if (phase === 'settings') {
        // The settings went out before `migrate` was swallowed: there is something to put back.
        const changed = await withQmp(srcPaths.qmp, settingsOf);
        expect(changed.parameters['max-bandwidth'], at).toBe(bandwidth * MiB);
        expect(changed.parameters['downtime-limit'], at).toBe(100);
        expect(changed.capabilities, at).toMatchObject({ 'auto-converge': true, xbzrle: true });
      }

      // Recovery from fresh processes, node by node.
      const runs: RecoverRun[] = [];
      const rec = async (dir: string, extra: string[] = [], timeoutS = RECOVER_S) => {
        const r = await recover(dir, name, extra, timeoutS);
        runs.push(r);
        return r;
      };
      const log = () =>
        runs.map((r) => `${r.args.join(' ')} → ${r.code} ${JSON.stringify(r.report)}`).join('\n');
      let dstRun: RecoverRun;
      let srcRun: RecoverRun;
      if (sc.id === 'active-cancel') {
        // The incoming migration is still active: the destination waits for it, within its
        // deadline, and changes nothing when the deadline passes first.
        const waited = await rec(dstDir, [], SHORT_S);
        expect(waited.report.settled, log()).toBe(false);
        expect(waited.report.role, log()).toBe('destination');
        const dstMid = await viewOf(dstDir, name);
        expect(dstMid.status, log()).toBe('inmigrate');
        srcRun = await rec(srcDir, ['--active', 'cancel']);
        dstRun = await rec(dstDir);
      } else if (sc.id === 'active-wait') {
        // The source waits for the migration QEMU carried on with, then the destination.
        // (`info` logs say whether it found the migration still running.)
        srcRun = await rec(srcDir, ['--log-level', 'info']);
        dstRun = await rec(dstDir);
      } else {
        dstRun = await rec(dstDir);
        srcRun = await rec(srcDir);
      }
      if (srcRun.report.action === 'awaiting-destination') {
        expect(srcRun.report.settled, log()).toBe(false);
        expect(dstRun.report.vm, log()).toBe('here');
        srcRun = await rec(srcDir, ['--destination-runs']);
      }
      for (const r of [dstRun, srcRun]) expect(r.report.settled, log()).toBe(true);
      const survivor = sc.survivor;
      if (survivor === 'src') {
        expect(srcRun.report.vm === 'here' || srcRun.report.action === 'nothing', log()).toBe(true);
        expect(dstRun.report.vm, log()).toBe('not-here');
        expect(dstRun.report.action, log()).toMatch(/^(quit|already-gone|stopped)$/);
      } else {
        expect(dstRun.report.vm === 'here' || dstRun.report.action === 'nothing', log()).toBe(true);
        expect(srcRun.report.vm, log()).toBe('not-here');
        expect(srcRun.report.action, log()).toMatch(/^(stopped|quit|already-gone)$/);
      }

      // Exactly one copy runs, on the survivor, and nothing else of this case runs.
      const [liveDir, deadDir] = survivor === 'src' ? [srcDir, dstDir] : [dstDir, srcDir];
      const live = await viewOf(liveDir, name);
      const dead = await viewOf(deadDir, name);
      expect([live.status, dead.status], log()).toEqual(['running', 'gone']);
      expect(pidsNaming(caseRoot), log()).toEqual([live.pid]);
      const livePaths = instancePaths(runLayout(liveDir), name);
      const after = await withQmp(livePaths.qmp, async (m) => {
        const g1 = await guestStatus(m);
        let g2 = g1;
        for (let i = 0; i < 50 && g2.pagesWritten === g1.pagesWritten; i++) {
          await sleep(100);
          g2 = await guestStatus(m);
        }
        const objects = await m.execute<{ name: string; type: string }[]>('qom-list', { path: '/objects' });
        return { g1, g2, settings: await settingsOf(m), objects };
      });
      expect(after.g2.running, log()).toBe(true);
      expect(after.g2.pagesWritten, `the guest makes progress\n${log()}`).not.toBe(after.g1.pagesWritten);
      // The survivor's settings are what the source's were before the migration (the
      // destination QEMU started with the same defaults).
      expect(after.settings, log()).toEqual(before);
      expect(
        after.objects.filter((o) => /tls|authz/.test(o.type)),
        log(),
      ).toEqual([]);
      // No stray file or journal: the survivor has what a running instance has, the other node nothing.
      expect(files(liveDir), log()).toEqual(runningFiles);
      expect(files(deadDir), log()).toEqual([]);

      // A second recover on each node changes nothing.
      for (const dir of [dstDir, srcDir]) {
        const again = await rec(dir);
        expect([again.code, again.report.action, again.report.settled], log()).toEqual([0, 'nothing', true]);
      }
      expect(await viewOf(liveDir, name), log()).toEqual(live);
      expect(pidsNaming(caseRoot), log()).toEqual([live.pid]);
      expect(files(liveDir), log()).toEqual(runningFiles);
      expect(files(deadDir), log()).toEqual([]);
      if (process.env.CRASH_MATRIX_OUT) {
        // One line per case, for a matrix table (not an assertion).
        const steps = runs.map((r) => ({
          node: r.args[3] === srcDir ? 'src' : 'dst',
          extra: r.args.slice(8).join(' '),
          action: r.report.action,
          vm: r.report.vm,
          settled: r.report.settled,
          status: r.report.status,
          waited: /waiting for the migration still running/.test(r.stderr) || undefined,
          ms: r.ms,
        }));
        appendFileSync(
          process.env.CRASH_MATRIX_OUT,
          `${JSON.stringify({ release: rel.release, protocol, scenario: sc.id, survivor, killed: { src: src0, dst: dst0 }, steps })}\n`,
        );
      }
    },
  );
});
