/**
 * The rendered argv is accepted by every real QEMU release: each variant starts paused
 * under TCG, and QMP shows the device model the runtime describes (ids, PCI slots, block
 * nodes, run state). Every QEMU started here is killed by pid after each test.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { renderArgv } from '../../src/instance/argv.js';
import { probeQemuFeatures, type QemuFeatures } from '../../src/instance/features.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
import { baseSpec } from './specs.js';

const QEMU_IMG = (() => {
  try {
    execFileSync('qemu-img', ['--version'], { stdio: 'ignore' });
    return 'qemu-img';
  } catch {
    return undefined;
  }
})();

interface PciDevice {
  slot: number;
  qdev_id: string;
}

async function waitForFile(path: string, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!existsSync(path)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`QEMU exited (${child.exitCode ?? child.signalCode}): ${stderr()}`);
    }
    if (Date.now() > deadline) throw new Error(`no ${path} after 30 s: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describeEachRelease('rendered argv starts', releaseCases(['tcg']), (release) => {
  let dir: string;
  let features: QemuFeatures;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    features = await probeQemuFeatures(release.binary, { timeoutMs: 60_000 });
  });

  afterEach(() => {
    for (const c of children.splice(0)) {
      if (c.pid && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function start(spec: InstanceSpec) {
    dir = mkdtempSync('/tmp/kvr-');
    const layout = runLayout(dir);
    for (const d of [layout.pid, layout.ctrl, layout.conf, layout.chroot, layout.log])
      mkdirSync(d, { recursive: true });
    const paths = instancePaths(layout, spec.name);
    const runtime = resolveRuntime(spec, features);
    const argv = renderArgv(runtime, features, { paths, accel: 'tcg' });
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    await waitForFile(paths.qmp, child, () => stderr);
    const qmp = await QmpMonitor.connect({ path: paths.qmp });
    return { runtime, qmp, paths, child, stderr: () => stderr };
  }

  async function pciDevices(qmp: QmpMonitor): Promise<PciDevice[]> {
    const buses = (await qmp.execute('query-pci')) as Array<{ devices: PciDevice[] }>;
    return buses.flatMap((b) => b.devices);
  }

  function disks(dirPath: string) {
    const raw = join(dirPath, 'raw.img');
    writeFileSync(raw, Buffer.alloc(1 << 20));
    const list: InstanceSpec['disks'] = [
      { uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', path: raw, kind: 'file', format: 'raw' },
    ];
    if (QEMU_IMG) {
      const qcow = join(dirPath, 'disk.qcow2');
      execFileSync(QEMU_IMG, ['create', '-q', '-f', 'qcow2', '-o', 'compat=1.1', qcow, '8M']);
      list.push({ uuid: 'a32df160-7a22-4067-8d2a-5c1f0b2f1e12', path: qcow, kind: 'file', format: 'qcow2' });
    }
    return list;
  }

  it('virtio disks (raw, qcow2), a user NIC, serial, VNC socket, guest agent: paused, slots as resolved', async () => {
    const tmp = mkdtempSync('/tmp/kvd-');
    try {
      const { runtime, qmp, paths, child } = await start(
        baseSpec({
          disks: disks(tmp),
          hvparams: {
            kernel_path: '',
            use_guest_agent: true,
            vnc_bind_address: tmp,
            disk_cache: 'writethrough',
          },
        }),
      );
      const status = (await qmp.execute('query-status')) as { status: string; running: boolean };
      expect(status).toMatchObject({ status: 'prelaunch', running: false });
      const pci = await pciDevices(qmp);
      for (const dev of [...runtime.disks, ...runtime.nics]) {
        expect(pci).toContainEqual(
          expect.objectContaining({ qdev_id: dev.id, slot: (dev.bus as { slot: number }).slot }),
        );
      }
      const nodes = (await qmp.execute('query-named-block-nodes')) as Array<{ 'node-name': string }>;
      for (const d of runtime.disks) expect(nodes.map((n) => n['node-name'])).toContain(d.id);
      expect(existsSync(paths.hmp)).toBe(true);
      expect(existsSync(paths.serial)).toBe(true);
      expect(existsSync(paths.qga)).toBe(true);
      expect(existsSync(join(tmp, 'web1.vnc'))).toBe(true);
      const uuid = (await qmp.execute('query-uuid')) as { UUID: string };
      expect(uuid.UUID).toBe(runtime.instance.uuid);
      await qmp.execute('quit').catch(() => {});
      await qmp.close();
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('SCSI and IDE disks, e1000 NIC, no ACPI, exit on reboot, localtime, topology', async () => {
    const tmp = mkdtempSync('/tmp/kvd-');
    try {
      const [raw] = disks(tmp);
      const ide = join(tmp, 'ide.img');
      writeFileSync(ide, Buffer.alloc(1 << 20));
      for (const [diskType, controller] of [
        ['scsi-hd', 'virtio-scsi-pci'],
        ['ide', 'lsi'],
      ] as const) {
        const { qmp, child } = await start(
          baseSpec({
            vcpus: 4,
            disks: [raw!, { uuid: 'b32df160-7a22-4067-8d2a-5c1f0b2f1e13', path: ide, kind: 'file' }],
            nics: [
              {
                uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
                mac: 'aa:00:00:12:34:56',
                model: 'e1000',
                network: { type: 'user' },
              },
            ],
            hvparams: {
              kernel_path: '',
              disk_type: diskType,
              scsi_controller_type: controller,
              acpi: false,
              reboot_behavior: 'exit',
              use_localtime: true,
              cpu_sockets: 2,
              cpu_cores: 2,
              cpu_threads: 1,
            },
          }),
        );
        const cpus = (await qmp.execute('query-cpus-fast')) as unknown[];
        expect(cpus).toHaveLength(4);
        const blocks = (await qmp.execute('query-block')) as Array<{
          qdev?: string;
          inserted?: { 'node-name': string };
        }>;
        expect(blocks.filter((b) => b.inserted?.['node-name']?.startsWith('disk-'))).toHaveLength(2);
        await qmp.execute('quit').catch(() => {});
        await qmp.close();
        await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
        rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
