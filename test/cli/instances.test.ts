/**
 * `kvm-hv start/list/info/runtime/reboot/stop` and `accept --runtime` + `migrate --name` on
 * library-started instances, run as a user would (the built binary), on the host's QEMU
 * (one release: the life cycle itself is covered per release in test/instance/). Every
 * QEMU is killed by pid after each test, also on failure.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { writeGuestImage } from '../../src/guest/index.js';
import { processAlive, readProcStat } from '../../src/instance/process.js';
import { parseInstanceState } from '../../src/instance/state.js';
import { freePort } from '../../src/qemu/process.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
import { ensureBuilt, type Running, run, start, waitForStderr } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-cli-inst-'));
const commands: Running[] = [];

beforeAll(async () => {
  await ensureBuilt();
}, 120_000);

/** Kills every QEMU a state file under `dir` names (by pid + start time). */
function killInstances(): void {
  for (const node of readdirSync(dir)) {
    let conf: string[];
    try {
      conf = readdirSync(join(dir, node, 'conf'));
    } catch {
      continue;
    }
    for (const f of conf.filter((x) => x.endsWith('.state'))) {
      try {
        const st = parseInstanceState(readFileSync(join(dir, node, 'conf', f), 'utf8'));
        if (processAlive(st)) process.kill(st.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  }
}

afterEach(() => {
  for (const c of commands.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  killInstances();
});
afterAll(() => {
  killInstances();
  rmSync(dir, { recursive: true, force: true });
});

const host = releaseCases(['tcg']).filter((r) => r.suite === 'host');
const env = { KVMHV_ACCEL: 'tcg' };

describeEachRelease('kvm-hv instance commands', host, () => {
  it('start, list, info, reboot, runtime, accept --runtime --wait, migrate --name, stop', async () => {
    const guest = join(dir, 'guest.img');
    writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 8 });
    const disk = join(dir, 'web1.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '16M']);
    const port = await freePort();
    const binary = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).trim();
    const spec = {
      name: 'web1',
      uuid: '7d3f6f1e-5a2b-4c8d-9e0f-1a2b3c4d5e6f',
      memory: { maxMiB: 64 },
      vcpus: 1,
      disks: [{ uuid: '932df160-7a22-4067-8a1b-2c3d4e5f6a7b', path: disk, kind: 'file', format: 'qcow2' }],
      nics: [
        { uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:12:34:56', network: { type: 'user' } },
      ],
      hvparams: { kvm_path: binary, kernel_path: guest },
    };
    const specFile = join(dir, 'web1.json');
    writeFileSync(specFile, JSON.stringify(spec));
    const n1 = join(dir, 'node1');
    const n2 = join(dir, 'node2');

    const started = await run(['start', specFile, '--run-dir', n1, '--json'], 60_000, env);
    expect(started.code, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout)).toMatchObject({ name: 'web1', state: 'running', vcpus: 1 });
    const listed = await run(['list', '--run-dir', n1], 30_000, env);
    expect(listed.stdout).toMatch(/^NAME\s+STATE\s+PID/m);
    expect(listed.stdout).toMatch(/^web1\s+running\s+\d+\s+64 MiB\s+1\s/m);
    expect((await run(['reboot', 'web1', '--run-dir', n1], 30_000, env)).stdout).toContain("'web1' reset");
    const info = await run(['info', 'web1', '--run-dir', n1], 30_000, env);
    expect(info.stdout).toMatch(/^state:\s+running$/m);

    const runtimeFile = join(dir, 'web1.runtime');
    const runtime = await run(['runtime', 'web1', '--run-dir', n1], 30_000, env);
    expect(JSON.parse(runtime.stdout)).toMatchObject({ formatVersion: 1, instance: { name: 'web1' } });
    writeFileSync(runtimeFile, runtime.stdout);

    const hv = ['-H', `kvm:migration_port=${port}`];
    const accept = start(
      [
        'accept',
        '--runtime',
        runtimeFile,
        '--listen',
        '127.0.0.1',
        '--run-dir',
        n2,
        ...hv,
        '--wait',
        '--timeout',
        '120',
      ],
      env,
    );
    commands.push(accept);
    await waitForStderr(accept, (t) => t.includes('waiting for the migration'), 60_000);
    const migrated = await run(
      ['migrate', '--name', 'web1', '--run-dir', n1, '--target', '127.0.0.1', ...hv, '--json'],
      120_000,
      env,
    );
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(JSON.parse(migrated.stdout)).toMatchObject({ status: 'completed' });
    const accepted = await accept.done;
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(accepted.stdout).toContain("'web1' received: the destination VM is running");
    // The source was stopped after the migration; the destination runs the instance.
    expect((await run(['list', '--run-dir', n1], 30_000, env)).stdout).toContain('no instances run here');
    const dstInfo = JSON.parse((await run(['info', 'web1', '--run-dir', n2, '--json'], 30_000, env)).stdout);
    expect(dstInfo).toMatchObject({ state: 'running', runState: 'running' });

    const stopped = await run(['stop', 'web1', '--run-dir', n2, '--force'], 60_000, env);
    expect(stopped.stdout).toMatch(/'web1' stopped \((quit|sigterm|sigkill)\)/);
    expect(readProcStat(dstInfo.pid)?.state ?? 'gone').toMatch(/gone|Z/);
  });

  it('a spec that is not JSON exits 2 and starts nothing', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ not json');
    const r = await run(['start', bad, '--run-dir', join(dir, 'node3')], 30_000, env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not JSON/);
  });

  it('a bad spec exits 2 listing every problem, and starts nothing', async () => {
    const bad = join(dir, 'bad-spec.json');
    const disk = { path: '/srv/same.img', kind: 'file' };
    writeFileSync(
      bad,
      JSON.stringify({
        name: 'bad1',
        uuid: '7d3f6f1e-5a2b-4c8d-9e0f-1a2b3c4d5e6f',
        memory: { maxMiB: 64 },
        vcpus: 1,
        disks: [
          { ...disk, uuid: '932df160-7a22-4067-8a1b-2c3d4e5f6a01' },
          { ...disk, uuid: '932df160-7a22-4067-8a1b-2c3d4e5f6a02' },
        ],
        nics: [
          {
            uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
            mac: '01:00:00:12:34:56',
            network: { type: 'user' },
          },
        ],
      }),
    );
    const r = await run(['start', bad, '--run-dir', join(dir, 'node4'), '--json'], 30_000, env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/invalid instance spec \((\d+) problems\)/);
    const doc = JSON.parse(r.stdout) as { error: { problems: { field: string }[] } };
    const fields = doc.error.problems.map((p) => p.field);
    expect(fields.some((f) => f.startsWith('disks'))).toBe(true);
    expect(fields.some((f) => f.startsWith('nics'))).toBe(true);
    expect((await run(['list', '--run-dir', join(dir, 'node4')], 30_000, env)).stdout).toContain(
      'no instances',
    );
  });
});

describe('kvm-hv stop of a name this node does not know', () => {
  it('exits 1 with one line naming the missing state file; nothing reads as stopped', async () => {
    const n = join(dir, 'node5');
    const r = await run(['stop', 'ghost', '--run-dir', n], 30_000, env);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `kvm-hv: instance 'ghost' is not known here (no ${join(n, 'conf', 'ghost.state')})\n`,
    );
    const j = await run(['stop', 'ghost', '--run-dir', n, '--force', '--json'], 30_000, env);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({
      ok: false,
      exitCode: 1,
      error: { name: 'HypervisorError' },
    });
  });
});
