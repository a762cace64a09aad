/**
 * A real two-node Ganeti 3.0 cluster (Debian's package, test/ganeti/lab.sh) whose KVM
 * instances run through kvm-hv (contrib/ganeti/install.sh): Ganeti's own commands
 * (`gnt-cluster verify`, `gnt-instance add/info/list/reboot/shutdown/startup/migrate/
 * failover`), and after each, from outside Ganeti, that every instance runs exactly once
 * (one QEMU process with its name on the machine), on the node Ganeti names, running
 * (QMP `query-status` on that QEMU's socket). Includes a live migration of a guest that
 * dirties memory and a migration whose destination QEMU is killed.
 *
 * Needs root, the `ganeti` package and it replaces the machine's Ganeti KVM class while it
 * runs, so it is gated: KVMHV_GANETI_TEST=1 (`.ci/run` sets it). Everything it started
 * (daemons, namespaces, QEMUs by pid) is stopped in afterAll, also after a failure.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { ensureBuilt, ROOT } from '../cli/helpers.js';

const LAB = process.env.LAB ?? '/srv/gnt-lab';
const LAB_SH = join(ROOT, 'test/ganeti/lab.sh');
const INSTALL = join(ROOT, 'contrib/ganeti/install.sh');
const enabled =
  process.env.KVMHV_GANETI_TEST === '1' && process.getuid?.() === 0 && existsSync('/usr/sbin/gnt-cluster');
const NODES = { n1: 'node1.example.test', n2: 'node2.example.test' } as const;
type Node = keyof typeof NODES;
const BUSY = 'busy1.example.test';
const IDLE = 'idle1.example.test';
const OLD = 'old1.example.test';
/** `gnt-instance add` of a disk-only `sharedfile` instance on node1 (`extra`: `-H …`). */
const addArgs = (name: string, memory: string, ...extra: string[]): string[] => [
  'gnt-instance',
  'add',
  '-t',
  'sharedfile',
  '-o',
  'dummy+default',
  '-s',
  '64M',
  '-B',
  `memory=${memory}`,
  '--no-nics',
  '--no-name-check',
  '--no-ip-check',
  ...extra,
  '-n',
  NODES.n1,
  name,
];
/** Whose run directory: kvm-hv's, or the stock class's. */
type RunDir = 'kvm-hv' | 'kvm-hypervisor';

interface Out {
  code: number | null;
  out: string;
  seconds: number;
}

function sh(cmd: string, args: string[], timeoutMs = 300_000): Out {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, env: { ...process.env, LAB } });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}`, seconds: (Date.now() - t0) / 1000 };
}

/** A command on the master node (node1). */
const gnt = (...args: string[]) => sh('bash', [LAB_SH, 'nx', 'n1', ...args]);

function ok(r: Out, what: string): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.out}`);
  return r.out;
}

const timings: string[] = [];
function timed(what: string, ...args: string[]): string {
  const r = gnt(...args);
  timings.push(`${what}: ${r.seconds.toFixed(1)} s`);
  return ok(r, what);
}

/** Every QEMU process on the machine whose `-name` is `name`. */
function qemuPids(name: string): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const i = argv.indexOf('-name');
    if (i > 0 && argv[0]?.includes('qemu-system') && argv[i + 1]?.split(',')[0] === name)
      pids.push(Number(e));
  }
  return pids;
}

/** The node whose pid file (of kvm-hv, or of the stock class) names `pid`. */
function nodeOfPid(name: string, pid: number, dir: RunDir = 'kvm-hv'): Node | undefined {
  for (const n of Object.keys(NODES) as Node[]) {
    const f = join(LAB, n, 'run', dir, 'pid', name);
    if (existsSync(f) && Number(readFileSync(f, 'utf8').trim()) === pid) return n;
  }
  return undefined;
}

async function qmpStatus(n: Node, name: string, dir: RunDir): Promise<string> {
  const m = await QmpMonitor.connect({ path: join(LAB, n, 'run', dir, 'ctrl', `${name}.qmp`) });
  try {
    return (await m.execute<{ status: string }>('query-status')).status;
  } finally {
    await m.close();
  }
}

/** Ganeti's view: `[status, primary node]`. */
function ganetiSays(name: string): [string, string] {
  const out = ok(
    gnt('gnt-instance', 'list', '--no-headers', '--separator=|', '-o', 'status,pnode', name),
    'list',
  );
  const [status, pnode] = out.trim().split('|');
  return [status ?? '', pnode ?? ''];
}

/**
 * Runs exactly once, on `node`, running in QEMU, started by `dir`'s class, and Ganeti says
 * the same. Returns the pid.
 */
async function runsOnceOn(name: string, node: Node, dir: RunDir = 'kvm-hv'): Promise<number> {
  expect(ganetiSays(name)).toEqual(['running', NODES[node]]);
  const pids = qemuPids(name);
  expect(pids, `QEMU processes named ${name}`).toHaveLength(1);
  const pid = pids[0] as number;
  expect(nodeOfPid(name, pid, dir)).toBe(node);
  expect(await qmpStatus(node, name, dir)).toBe('running');
  return pid;
}

function cleanUp(): void {
  // The lab first (its QEMUs by pid), then Ganeti's stock class back.
  sh('bash', [LAB_SH, 'down'], 180_000);
  sh('bash', [INSTALL, '--remove', '--force', '--no-restart'], 60_000);
}

describe.skipIf(!enabled)('Ganeti 3.0 two-node cluster driving kvm-hv', () => {
  beforeAll(async () => {
    await ensureBuilt();
    // The cluster starts with Ganeti's stock class, which starts one instance; then kvm-hv
    // is installed (the daemons restarted), as on a cluster that already runs instances.
    ok(sh('bash', [INSTALL, '--remove', '--force', '--no-restart']), 'install.sh --remove');
    const up = sh('bash', [LAB_SH, 'up'], 300_000);
    timings.push(`lab up (cluster init + node add): ${up.seconds.toFixed(1)} s`);
    ok(up, 'lab.sh up');
    ok(gnt(...addArgs(OLD, '64M')), 'add under the stock class');
    ok(sh('bash', [INSTALL, '--no-restart']), 'install.sh');
    ok(sh('bash', [LAB_SH, 'restart-noded']), 'restart-noded');
    // A guest that dirties 32 MiB at 8 MiB/s for the live migrations.
    writeGuestImage(join(LAB, 'busy.img'), { dirtyMiB: 32, rateMiBps: 8 });
  }, 400_000);

  afterAll(() => {
    cleanUp();
    // The numbers go to the log: docs/ganeti.md quotes them.
    console.log(`Ganeti + kvm-hv timings:\n  ${timings.join('\n  ')}`);
    for (const name of [BUSY, IDLE, OLD]) expect(qemuPids(name), `${name} left running`).toEqual([]);
  }, 300_000);

  it('gnt-cluster verify: no problem but the sandbox has no /proc/sysrq-trigger', () => {
    const r = gnt('gnt-cluster', 'verify');
    const errors = r.out.split('\n').filter((l) => /ERROR|WARNING/.test(l));
    // The namespaces' /proc lacks /proc/sysrq-trigger (one error per node); nothing else,
    // in particular no hypervisor verify failure (kvm-hv verify) and no instance problem.
    for (const l of errors) expect(l).toMatch(/procfs|sysrq-trigger/);
    expect(r.out).toContain('Verifying node status');
  });

  it('an instance the stock class started: still listed, migrated by the stock code, adopted at shutdown/startup', async () => {
    await runsOnceOn(OLD, 'n1', 'kvm-hypervisor');
    timed('migrate stock-started instance n1 -> n2', 'gnt-instance', 'migrate', '-f', '-n', NODES.n2, OLD);
    await runsOnceOn(OLD, 'n2', 'kvm-hypervisor');
    timed('shutdown stock-started instance', 'gnt-instance', 'shutdown', '--timeout=5', OLD);
    expect(ganetiSays(OLD)).toEqual(['ADMIN_down', NODES.n2]);
    expect(qemuPids(OLD)).toEqual([]);
    timed('startup (now kvm-hv)', 'gnt-instance', 'startup', OLD);
    await runsOnceOn(OLD, 'n2', 'kvm-hv');
    expect(readdirSync(join(LAB, 'n2/run/kvm-hypervisor/pid'))).toEqual([]);
  }, 300_000);

  it('gnt-instance add (starts through kvm-hv start), info, list', async () => {
    timed(
      'add+start busy (128 MiB, guest dirtying 32 MiB at 8 MiB/s)',
      ...addArgs(BUSY, '128M', '-H', `kvm:kernel_path=${join(LAB, 'busy.img')},initrd_path=`),
    );
    timed('add+start idle (64 MiB, SeaBIOS, no bootable disk)', ...addArgs(IDLE, '64M'));
    await runsOnceOn(BUSY, 'n1');
    await runsOnceOn(IDLE, 'n1');
    const info = ok(gnt('gnt-instance', 'info', BUSY), 'info');
    expect(info).toContain('actual state is up');
    expect(info).toContain(`primary: ${NODES.n1}`);
    // kvm-hv started it: its runtime is kvm-hv's JSON, in kvm-hv's run directory.
    const runtime = JSON.parse(readFileSync(join(LAB, 'n1/run/kvm-hv/conf', `${BUSY}.runtime`), 'utf8'));
    expect(runtime).toBeTypeOf('object');
    expect(existsSync(join(LAB, 'n1/run/kvm-hypervisor/pid', BUSY))).toBe(false);
  }, 300_000);

  it('gnt-instance reboot: soft resets the same QEMU, hard restarts it', async () => {
    const before = await runsOnceOn(IDLE, 'n1');
    timed('reboot --type=soft', 'gnt-instance', 'reboot', '--type=soft', IDLE);
    expect(await runsOnceOn(IDLE, 'n1')).toBe(before);
    timed(
      'reboot --type=hard --shutdown-timeout=5',
      'gnt-instance',
      'reboot',
      '--type=hard',
      '--shutdown-timeout=5',
      IDLE,
    );
    expect(await runsOnceOn(IDLE, 'n1')).not.toBe(before);
  }, 300_000);

  it('gnt-instance shutdown and startup', async () => {
    timed('shutdown --timeout=5', 'gnt-instance', 'shutdown', '--timeout=5', IDLE);
    expect(ganetiSays(IDLE)).toEqual(['ADMIN_down', NODES.n1]);
    expect(qemuPids(IDLE)).toEqual([]);
    timed('startup', 'gnt-instance', 'startup', IDLE);
    await runsOnceOn(IDLE, 'n1');
  }, 300_000);

  it('gnt-instance migrate live both ways with a guest dirtying memory, and non-live', async () => {
    timed('migrate busy n1 -> n2 (live)', 'gnt-instance', 'migrate', '-f', '-n', NODES.n2, BUSY);
    await runsOnceOn(BUSY, 'n2');
    timed('migrate busy n2 -> n1 (live)', 'gnt-instance', 'migrate', '-f', '-n', NODES.n1, BUSY);
    await runsOnceOn(BUSY, 'n1');
    timed(
      'migrate idle n1 -> n2 (non-live)',
      'gnt-instance',
      'migrate',
      '-f',
      '--non-live',
      '-n',
      NODES.n2,
      IDLE,
    );
    await runsOnceOn(IDLE, 'n2');
    // Each node finalized its end: no migration journal left behind.
    for (const n of Object.keys(NODES)) {
      const conf = readdirSync(join(LAB, n, 'run/kvm-hv/conf'));
      expect(conf.filter((f) => f.endsWith('.migration'))).toEqual([]);
    }
  }, 300_000);

  it('a migration whose destination QEMU is killed fails; the instance stays on the source', async () => {
    // 2 MiB/s: the transfer of 128 MiB lasts long enough to kill the destination mid-way.
    // migration_bandwidth is global in Ganeti: the cluster's, read at migration time.
    ok(gnt('gnt-cluster', 'modify', '-H', 'kvm:migration_bandwidth=2'), 'cluster modify');
    const srcPid = await runsOnceOn(BUSY, 'n1');
    const job = spawn('bash', [LAB_SH, 'nx', 'n1', 'gnt-instance', 'migrate', '-f', '-n', NODES.n2, BUSY], {
      env: { ...process.env, LAB },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    job.stdout.on('data', (d) => (out += d));
    job.stderr.on('data', (d) => (out += d));
    const done = new Promise<number | null>((res) => job.on('close', res));
    // The destination QEMU appears on node2 (accept), then the transfer starts.
    const deadline = Date.now() + 60_000;
    let dst: number | undefined;
    while (dst === undefined && Date.now() < deadline) {
      dst = qemuPids(BUSY).find((p) => nodeOfPid(BUSY, p) === 'n2');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(dst, `no destination QEMU appeared:\n${out}`).toBeDefined();
    while (!out.includes('starting memory transfer') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1000));
    process.kill(dst as number, 'SIGKILL');
    const code = await done;
    expect(code, out).not.toBe(0);
    expect(out).toMatch(/[Mm]igration failed/);
    expect(await runsOnceOn(BUSY, 'n1')).toBe(srcPid);
    ok(gnt('gnt-cluster', 'modify', '-H', 'kvm:migration_bandwidth=32'), 'cluster modify back');
    // And it still migrates afterwards (nothing left half-finalized).
    timed('migrate busy n1 -> n2 after the failure', 'gnt-instance', 'migrate', '-f', '-n', NODES.n2, BUSY);
    await runsOnceOn(BUSY, 'n2');
  }, 300_000);

  it('gnt-instance failover (stop on the primary, start on the other node)', async () => {
    timed('failover idle n2 -> n1', 'gnt-instance', 'failover', '-f', '--shutdown-timeout=5', IDLE);
    await runsOnceOn(IDLE, 'n1');
  }, 300_000);

  it('gnt-node migrate: every instance of node2 moves live to node1', async () => {
    await runsOnceOn(BUSY, 'n2');
    await runsOnceOn(OLD, 'n2');
    timed('gnt-node migrate node2 (2 instances)', 'gnt-node', 'migrate', '-f', NODES.n2);
    for (const name of [BUSY, OLD, IDLE]) await runsOnceOn(name, 'n1');
  }, 300_000);
});
