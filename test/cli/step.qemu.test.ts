/**
 * `kvm-hv step migrate|finalize-source|finalize-destination` and `kvm-hv balloon` on real
 * QEMU, each step its own process as Ganeti's node daemon calls them: `step migrate`
 * returns while QEMU still migrates, `status --name` from other processes sees it run and
 * complete, the finalizes leave the VM on exactly one node. A migration whose destination
 * QEMU is killed is reported failed and `finalize-source --failure` keeps the source
 * running. Every QEMU is killed by pid afterwards.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { processAlive } from '../../src/instance/process.js';
import { readInstanceState } from '../../src/instance/state.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { findQemuBinary, freePort } from '../../src/testing/qemu-vm.js';
import { ensureBuilt, run } from './helpers.js';

const qemu = findQemuBinary();
const binary = qemu?.startsWith('/')
  ? qemu
  : qemu && execFileSync('sh', ['-c', 'command -v "$1"', 'sh', qemu], { encoding: 'utf8' }).trim();
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-step-'));
const node1 = join(dir, 'node1');
const node2 = join(dir, 'node2');
const guest = join(dir, 'guest.img');
const NAMES = ['step1', 'step2'];

afterAll(() => {
  for (const runDir of [node1, node2]) {
    for (const name of NAMES) {
      const st = readInstanceState(instancePaths(runLayout(runDir), name));
      if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

async function startInstance(name: string, n: number, hvparams: Record<string, unknown>): Promise<void> {
  const spec = join(dir, `${name}.json`);
  writeFileSync(
    spec,
    JSON.stringify({
      name,
      uuid: `6a1f0c2e-7d4a-4c1b-9e3f-${String(n).padStart(12, '0')}`,
      memory: { maxMiB: 96 },
      vcpus: 1,
      disks: [],
      nics: [],
      hvparams: { kvm_path: binary, kernel_path: guest, kvm_flag: 'disabled', ...hvparams },
    }),
  );
  const r = await run(['start', spec, '--run-dir', node1, '--json'], 90_000);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
}

/** Starts the destination from the source's runtime, listening on 127.0.0.1, as `AcceptInstance` does. */
async function accept(name: string): Promise<void> {
  const runtime = join(dir, `${name}.runtime`);
  const rt = await run(['runtime', name, '--run-dir', node1]);
  expect(rt.code).toBe(0);
  writeFileSync(runtime, rt.stdout);
  const a = await run(
    ['accept', '--runtime', runtime, '--listen', '127.0.0.1', '--run-dir', node2, '--json'],
    90_000,
  );
  expect(a.stderr).toBe('');
  expect(a.code).toBe(0);
}

async function status(name: string, runDir: string): Promise<string> {
  const r = await run(['status', '--name', name, '--run-dir', runDir, '--json']);
  expect(r.code).toBe(0);
  return json(r.stdout).status as string;
}

const listed = async (runDir: string) =>
  (JSON.parse((await run(['list', '--run-dir', runDir, '--json'])).stdout) as { name: string }[]).map(
    (i) => i.name,
  );

describe.skipIf(!binary)('kvm-hv step and balloon on real QEMU (one process per step)', () => {
  beforeAll(async () => {
    await ensureBuilt();
    writeGuestImage(guest, { dirtyMiB: 16, rateMiBps: 4 });
  }, 120_000);

  it('step migrate returns while QEMU migrates; status and both finalizes from other processes', async () => {
    const port = await freePort();
    // 8 MiB/s: above the guest's dirty rate (nothing between the steps raises the downtime),
    // low enough that the first status, a process start later, sees it run.
    await startInstance('step1', 1, { migration_port: port, migration_bandwidth: 8 });
    await accept('step1');
    const t0 = Date.now();
    const m = await run([
      'step',
      'migrate',
      '--name',
      'step1',
      '--target',
      '127.0.0.1',
      '--live',
      '--run-dir',
      node1,
      '--json',
    ]);
    expect(m.stderr).toBe('');
    expect(m.code).toBe(0);
    expect(json(m.stdout)).toMatchObject({ instance: 'step1', started: true, live: true });
    const first = await status('step1', node1);
    expect(['setup', 'active']).toContain(first);
    let st = first;
    while (st !== 'completed' && Date.now() - t0 < 120_000) {
      expect(['setup', 'active', 'device', 'pre-switchover']).toContain(st);
      await new Promise((r) => setTimeout(r, 500));
      st = await status('step1', node1);
    }
    expect(st).toBe('completed');
    const d = await run([
      'step',
      'finalize-destination',
      '--name',
      'step1',
      '--success',
      '--run-dir',
      node2,
      '--json',
    ]);
    expect(d.code).toBe(0);
    expect(json(d.stdout)).toMatchObject({ side: 'destination' });
    const s = await run([
      'step',
      'finalize-source',
      '--name',
      'step1',
      '--success',
      '--run-dir',
      node1,
      '--json',
    ]);
    expect(s.code).toBe(0);
    // Verified paused after the completed migration, then stopped (Ganeti's rule): gone from the list.
    expect(json(s.stdout)).toMatchObject({ side: 'source', action: 'paused' });
    expect(await listed(node1)).not.toContain('step1');
    expect(await listed(node2)).toContain('step1');
    const info = json((await run(['info', 'step1', '--run-dir', node2, '--json'])).stdout);
    expect(info.state).toBe('running');
  }, 240_000);

  it('a killed destination: status failed, finalize-source --failure keeps the source running', async () => {
    const port = await freePort();
    // 1 MiB/s: still migrating when the destination dies.
    await startInstance('step2', 2, { migration_port: port, migration_bandwidth: 1 });
    await accept('step2');
    const dst = readInstanceState(instancePaths(runLayout(node2), 'step2'));
    expect(dst).toBeDefined();
    const m = await run([
      'step',
      'migrate',
      '--name',
      'step2',
      '--target',
      '127.0.0.1',
      '--run-dir',
      node1,
      '--json',
    ]);
    expect(m.code).toBe(0);
    expect(await status('step2', node1)).toMatch(/^(setup|active)$/);
    process.kill(dst!.pid, 'SIGKILL');
    let st = 'active';
    const t0 = Date.now();
    while ((st === 'active' || st === 'setup') && Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 300));
      st = await status('step2', node1);
    }
    expect(st).toBe('failed');
    const d = await run([
      'step',
      'finalize-destination',
      '--name',
      'step2',
      '--failure',
      '--run-dir',
      node2,
      '--json',
    ]);
    expect(d.code).toBe(0);
    const s = await run([
      'step',
      'finalize-source',
      '--name',
      'step2',
      '--failure',
      '--run-dir',
      node1,
      '--json',
    ]);
    expect(s.code).toBe(0);
    expect(json(s.stdout)).toMatchObject({ side: 'source' });
    const info = json((await run(['info', 'step2', '--run-dir', node1, '--json'])).stdout);
    expect(info.state).toBe('running');
    expect(await listed(node2)).not.toContain('step2');
    // The journal is gone: a new migration is not refused as unfinished.
    expect(readFileSync(instancePaths(runLayout(node1), 'step2').runtime, 'utf8')).toContain('step2');
  }, 240_000);

  it('balloon: QEMU takes the target (the tiny guest has no balloon driver); more than the maximum is refused', async () => {
    const b = await run(['balloon', 'step2', '64', '--run-dir', node1, '--json']);
    expect(b.stderr).toBe('');
    expect(b.code).toBe(0);
    expect(json(b.stdout)).toEqual({ instance: 'step2', memoryMiB: 64 });
    const over = await run(['balloon', 'step2', '4096', '--run-dir', node1]);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(/^kvm-hv: .*4096/);
  }, 60_000);

  it('usage: finalize needs exactly one of --success/--failure; balloon a positive integer', async () => {
    const both = await run([
      'step',
      'finalize-source',
      '--name',
      'x',
      '--success',
      '--failure',
      '--run-dir',
      node1,
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('exactly one of --success and --failure');
    const none = await run(['step', 'finalize-destination', '--name', 'x', '--run-dir', node2]);
    expect(none.code).toBe(2);
    const bad = await run(['balloon', 'x', 'lots', '--run-dir', node1]);
    expect(bad.code).toBe(2);
  });
});
