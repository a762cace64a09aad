/**
 * `kvm-hv start/list/info/runtime/reboot/stop` and `accept --runtime` + `migrate --name` on
 * library-started instances, run as a user would (the built binary), on the host's QEMU
 * (one release: the life cycle itself is covered per release in test/instance/). Every
 * QEMU is killed by pid after each test, also on failure.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { processAlive, readProcStat } from '../../src/instance/process.js';
import { parseInstanceState } from '../../src/instance/state.js';
import { parseInfoMigrateParameters } from '../../src/migration/parameters.js';
import { parseInfoMigrate, parseInfoMigrateCapabilities } from '../../src/migration/status.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
import { ensureBuilt, type Running, run, start, waitForStderr } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-cli-inst-'));
const commands: Running[] = [];
/** Closed after each test: test-side monitors and TCP sinks. */
const closers: (() => Promise<unknown>)[] = [];

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

afterEach(async () => {
  for (const c of commands.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
  for (const close of closers.splice(0)) await close().catch(() => {});
  killInstances();
});
afterAll(() => {
  killInstances();
  rmSync(dir, { recursive: true, force: true });
});

const host = releaseCases(['tcg']).filter((r) => r.suite === 'host');
const env = { KVMHV_ACCEL: 'tcg' };

/** The QEMU binary on the PATH, absolute (`kvm_path` must be). */
const hostQemu = () =>
  execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).trim();

/** A spec file for instance `name` running the dirtying guest, with `hvparams` on top. */
function specFile(name: string, n: number, hvparams: Record<string, unknown>): string {
  const guest = join(dir, `${name}.img`);
  writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 8 });
  const file = join(dir, `${name}.json`);
  const id = (prefix: string) => `${prefix}-5a2b-4c8d-9e0f-${String(n).padStart(12, '0')}`;
  writeFileSync(
    file,
    JSON.stringify({
      name,
      uuid: id('7d3f6f1e'),
      memory: { maxMiB: 64 },
      vcpus: 1,
      disks: [],
      nics: [],
      hvparams: { kvm_path: hostQemu(), kernel_path: guest, ...hvparams },
    }),
  );
  return file;
}

/** A TCP listener that takes migration streams and drops them: the migration stays active. */
async function sink(port: number): Promise<{ connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server: Server = createServer((sock) => {
    count++;
    sockets.add(sock);
    sock.on('data', () => {});
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  await new Promise<void>((res, rej) => server.once('error', rej).listen(port, '127.0.0.1', res));
  const close = () =>
    new Promise<void>((res) => {
      for (const sock of sockets) sock.destroy();
      server.close(() => res());
    });
  closers.push(close);
  return { connections: () => count, close };
}

async function until<T>(what: string, read: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms (last ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

  it("migrate/resume --name and accept --runtime take the migration settings from the instance's runtime; -H overrides them key by key", async () => {
    const n1 = join(dir, 'node6');
    const n2 = join(dir, 'node7');
    const port = await freePort();
    // Not the defaults: 1 MiB/s keeps a migration of the dirtying guest active for seconds.
    const spec = specFile('web2', 2, {
      migration_port: port,
      migration_bandwidth: 1,
      migration_caps: 'xbzrle',
    });
    const started = await run(['start', spec, '--run-dir', n1], 60_000, env);
    expect(started.code, started.stderr).toBe(0);
    // The HMP socket is left free for operators: the test watches QEMU through it.
    const hmp = await HmpMonitor.connect({ path: join(n1, 'ctrl', 'web2.monitor') });
    closers.push(() => hmp.close());
    const migrationStatus = async () => parseInfoMigrate(await hmp.humanCommand('info migrate')).status;
    const bandwidth = async () =>
      parseInfoMigrateParameters(await hmp.humanCommand('info migrate_parameters'), hmp.version).maxBandwidth;
    const xbzrle = async () =>
      parseInfoMigrateCapabilities(await hmp.humanCommand('info migrate_capabilities')).get('xbzrle');
    const target = await sink(port);

    /** `migrate --name web2` with `extra`, watched while active, then cancelled from HMP. */
    const migrateAndCancel = async (extra: string[]) => {
      const m = start(['migrate', '--name', 'web2', '--run-dir', n1, '--target', '127.0.0.1', ...extra], env);
      commands.push(m);
      await until('migration active', migrationStatus, (st) => st === 'active');
      const seen = { bandwidth: await bandwidth(), xbzrle: await xbzrle() };
      await hmp.humanCommand('migrate_cancel');
      const r = await m.done;
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/cancel/);
      return seen;
    };

    // No -H: bandwidth, capabilities and port (the sink got the stream) from the runtime.
    expect(await migrateAndCancel([])).toEqual({ bandwidth: 1024 * 1024, xbzrle: true });
    expect(target.connections()).toBe(1);
    // -H overrides the bandwidth only; the capabilities and the port still come from the runtime.
    expect(await migrateAndCancel(['-H', 'kvm:migration_bandwidth=2'])).toEqual({
      bandwidth: 2 * 1024 * 1024,
      xbzrle: true,
    });
    expect(target.connections()).toBe(2);
    await target.close();

    // resume --name clears the runtime's migration_caps (with -H alone it cleared none).
    expect(await xbzrle()).toBe(false);
    await hmp.humanCommand('migrate_set_capability xbzrle on');
    await hmp.humanCommand('stop');
    const resumed = await run(['resume', '--name', 'web2', '--run-dir', n1], 60_000, env);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await xbzrle()).toBe(false);
    expect((await run(['info', 'web2', '--run-dir', n1, '--json'], 30_000, env)).stdout).toMatch(
      /"state": "running"/,
    );
    await hmp.close();

    // accept --runtime without -H listens on the runtime's port; migrate overrides only the bandwidth.
    const runtimeFile = join(dir, 'web2.runtime');
    writeFileSync(runtimeFile, (await run(['runtime', 'web2', '--run-dir', n1], 30_000, env)).stdout);
    const accept = start(
      [
        'accept',
        '--runtime',
        runtimeFile,
        '--listen',
        '127.0.0.1',
        '--run-dir',
        n2,
        '--wait',
        '--timeout',
        '120',
      ],
      env,
    );
    commands.push(accept);
    await waitForStderr(accept, (t) => t.includes('waiting for the migration'), 60_000);
    const migrated = await run(
      [
        'migrate',
        '--name',
        'web2',
        '--run-dir',
        n1,
        '--target',
        '127.0.0.1',
        '-H',
        'kvm:migration_bandwidth=0',
      ],
      120_000,
      env,
    );
    expect(migrated.code, migrated.stderr).toBe(0);
    const accepted = await accept.done;
    expect(accepted.code, accepted.stderr).toBe(0);
    const stopped = await run(['stop', 'web2', '--run-dir', n2, '--force'], 60_000, env);
    expect(stopped.code, stopped.stderr).toBe(0);
  });

  it('a runtime that cannot be read or parsed is an error naming the file', async () => {
    const n = join(dir, 'node8');
    const missing = await run(
      ['migrate', '--name', 'nope', '--run-dir', n, '--target', '127.0.0.1'],
      30_000,
      env,
    );
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `kvm-hv: instance 'nope' is not known here (no ${join(n, 'conf', 'nope.runtime')})\n`,
    );
    const bad = join(dir, 'bad.runtime');
    writeFileSync(bad, '{"formatVersion": 99}');
    const given = await run(
      ['accept', '--runtime', bad, '--listen', '127.0.0.1', '--run-dir', n],
      30_000,
      env,
    );
    expect(given.code).toBe(2);
    expect(given.stderr).toMatch(
      new RegExp(`^kvm-hv: the runtime '${bad}' cannot be used: .*formatVersion 99`),
    );
    mkdirSync(join(n, 'conf'), { recursive: true });
    writeFileSync(join(n, 'conf', 'broken.runtime'), 'not json');
    const broken = await run(['resume', '--name', 'broken', '--run-dir', n], 30_000, env);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(
      /the runtime of instance 'broken' \(.*broken\.runtime\) cannot be used: .*not JSON/,
    );
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
