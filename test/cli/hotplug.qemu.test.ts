/**
 * `kvm-hv hotplug add|remove|modify|check` run as a user would (the built binary) on an
 * instance started by `kvm-hv start`, on the host's QEMU (the hotplug itself is covered
 * per release in test/instance/hotplug.qemu.test.ts). A SCSI disk leaves at once (no
 * guest involved); the NIC is checked in QEMU's `query-pci`. Every QEMU is killed by pid
 * after each test.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { processAlive } from '../../src/instance/process.js';
import { parseRuntime } from '../../src/instance/runtime.js';
import { parseInstanceState } from '../../src/instance/state.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
import { ensureBuilt, run } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-cli-hotplug-'));
const runDir = join(dir, 'node');

function killInstances(): void {
  let conf: string[];
  try {
    conf = readdirSync(join(runDir, 'conf'));
  } catch {
    return;
  }
  for (const f of conf.filter((x) => x.endsWith('.state'))) {
    const st = parseInstanceState(readFileSync(join(runDir, 'conf', f), 'utf8'));
    if (processAlive(st)) process.kill(st.pid, 'SIGKILL');
  }
}

beforeAll(async () => {
  await ensureBuilt();
}, 120_000);
afterEach(killInstances);
afterAll(() => {
  killInstances();
  rmSync(dir, { recursive: true, force: true });
});

const host = releaseCases(['tcg']).filter((r) => r.suite === 'host');
const env = { KVMHV_ACCEL: 'tcg' };

const img = (name: string) => {
  const path = join(dir, `${name}.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path, '8M']);
  return path;
};

describeEachRelease('kvm-hv hotplug', host, () => {
  it('add, remove, check and modify on a running instance; refusals and usage errors', async () => {
    const guest = join(dir, 'guest.img');
    writeGuestImage(guest, { dirtyMiB: 1, rateMiBps: 1 });
    const binary = execFileSync('sh', ['-c', 'command -v qemu-system-x86_64'], { encoding: 'utf8' }).trim();
    const specFile = join(dir, 'web1.json');
    writeFileSync(
      specFile,
      JSON.stringify({
        name: 'web1',
        uuid: '7d3f6f1e-5a2b-4c8d-9e0f-1a2b3c4d5e6f',
        memory: { maxMiB: 64 },
        vcpus: 1,
        disks: [
          { uuid: '932df160-7a22-4067-8a1b-2c3d4e5f6a7b', path: img('boot'), kind: 'file', format: 'qcow2' },
        ],
        nics: [],
        hvparams: { kvm_path: binary, kernel_path: guest, disk_type: 'scsi-hd' },
      }),
    );
    const rd = ['--run-dir', runDir];
    expect((await run(['start', specFile, ...rd], 60_000, env)).code).toBe(0);

    const hot = img('hot');
    const add = await run(
      [
        'hotplug',
        'add',
        'disk',
        'web1',
        '--uuid',
        'c1000000-0000-4000-8000-000000000001',
        '--path',
        hot,
        '--format',
        'qcow2',
        '--json',
        ...rd,
      ],
      60_000,
      env,
    );
    expect(add.stderr).toBe('');
    expect(add.code).toBe(0);
    const added = JSON.parse(add.stdout) as { device: { id: string; bus: unknown } };
    expect(added.device).toMatchObject({ id: 'disk-c1000000-0000-4000', bus: { type: 'scsi', target: 1 } });
    const runtime = () => parseRuntime(readFileSync(join(runDir, 'conf', 'web1.runtime'), 'utf8'));
    expect(runtime().disks.map((d) => ('path' in d ? d.path : d.uri))).toEqual([
      expect.stringContaining('boot.qcow2'),
      hot,
    ]);

    const rm = await run(['hotplug', 'remove', 'disk', 'web1', hot, ...rd], 60_000, env);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toBe(
      `hot-removed from 'web1': disk-c1000000-0000-4000 (scsi-hd, SCSI target 1): ${hot}\n`,
    );
    expect(runtime().disks).toHaveLength(1);

    const nic = await run(
      [
        'hotplug',
        'add',
        'nic',
        'web1',
        '--uuid',
        'd1000000-0000-4000-8000-000000000001',
        '--mac',
        'aa:00:00:00:02:01',
        '--user',
        ...rd,
      ],
      60_000,
      env,
    );
    expect(nic.code).toBe(0);
    // The SCSI controller QEMU places itself; the first slot of the allocator is free.
    expect(nic.stdout).toBe(
      "hot-added to 'web1': nic-d1000000-0000-4000 (virtio-net-pci, PCI slot 0xc): aa:00:00:00:02:01, user network\n",
    );
    const qmp = await QmpMonitor.connect({ path: join(runDir, 'ctrl', 'web1.qmp') });
    try {
      const pci = (await qmp.execute('query-pci')) as Array<{
        devices: Array<{ slot: number; qdev_id: string }>;
      }>;
      expect(pci[0]!.devices.find((d) => d.qdev_id === 'nic-d1000000-0000-4000')?.slot).toBe(0xc);
    } finally {
      await qmp.close();
    }

    const check = await run(
      ['hotplug', 'check', 'add', 'nic', 'web1', '--model', 'ne2k_isa', ...rd],
      60_000,
      env,
    );
    expect(check.code).toBe(1);
    expect(check.stderr).toMatch(
      /instance 'web1': cannot hot-add nic: nic_type 'ne2k_isa' cannot be hot-plugged/,
    );
    const ok = await run(['hotplug', 'check', 'remove', 'disk', 'web1', ...rd], 60_000, env);
    expect(ok.stdout).toBe("'web1': hot-remove of a disk is supported\n");

    const mod = await run(['hotplug', 'modify', 'disk', 'web1', 'boot', ...rd], 60_000, env);
    expect(mod.code).toBe(1);
    expect(mod.stderr).toMatch(/cannot hot-modify disk: disks cannot be modified while the instance runs/);
    const unknown = await run(['hotplug', 'remove', 'nic', 'web1', 'nic-nope', ...rd], 60_000, env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /the runtime has no nic 'nic-nope' \(UUID, id; it has nic-d1000000-0000-4000\)/,
    );

    for (const [args, message] of [
      [['hotplug', 'add', 'disk', 'web1', '--path', hot], /needs --uuid/],
      [['hotplug', 'add', 'cdrom', 'web1'], /TARGET must be 'disk' or 'nic', got 'cdrom'/],
      [
        ['hotplug', 'add', 'disk', 'web1', '--uuid', 'x', '--path', hot, '--mac', 'aa:00:00:00:00:01'],
        /--mac: not for a disk/,
      ],
      [
        ['hotplug', 'add', 'nic', 'web1', '--uuid', 'x', '--mac', 'aa:00:00:00:00:01'],
        /needs --tap IFNAME or --user/,
      ],
      [
        ['hotplug', 'modify', 'nic', 'web1', 'x', '--tap', 'tap0', '--user'],
        /--tap IFNAME or --user, not both/,
      ],
      [
        ['hotplug', 'check', 'grow', 'disk', 'web1'],
        /ACTION must be 'add', 'remove' or 'modify', got 'grow'/,
      ],
    ] as const) {
      const r = await run([...args, ...rd], 60_000, env);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect((await run(['stop', 'web1', '--force', ...rd], 60_000, env)).code).toBe(0);
  });
});
