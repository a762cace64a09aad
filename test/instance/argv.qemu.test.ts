/**
 * The rendered argv is accepted by every real QEMU release: each variant starts paused
 * under TCG, and QMP shows the device model the runtime describes (ids, PCI slots, block
 * nodes, run state). Every QEMU started here is killed by pid after each test.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { renderArgv } from '../../src/instance/argv.js';
import { probeQemuFeatures, type QemuFeatures } from '../../src/instance/features.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { qemuReleases } from '../support/qemu-releases.js';
import { accelerators, describeEachRelease, releaseCases } from '../support/real-qemu.js';
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

/** A TCP port that was free a moment ago (VNC needs a display number, so a concrete port). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    // VNC display = port − 5900: look above 5900.
    const tryPort = (p: number) => {
      server.once('error', () => tryPort(p + 1));
      server.listen(p, '127.0.0.1', () => {
        server.close(() => resolve(p));
      });
    };
    server.removeAllListeners('error');
    // A random start: parallel test files and other users of this machine pick different ports.
    tryPort(6000 + Math.floor(Math.random() * 3000));
  });
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

describeEachRelease('rendered argv starts', releaseCases(accelerators()), (release) => {
  let dir: string;
  let features: QemuFeatures;
  const children: ChildProcess[] = [];
  const scratch: string[] = [];
  const scratchDir = () => {
    const d = mkdtempSync('/tmp/kvd-');
    scratch.push(d);
    return d;
  };

  beforeAll(async () => {
    features = await probeQemuFeatures(release.binary, { timeoutMs: 60_000 });
  });

  afterEach(() => {
    for (const c of children.splice(0)) {
      if (c.pid && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
    for (const d of scratch.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  async function start(spec: InstanceSpec, resolvedOn?: QemuFeatures) {
    dir = mkdtempSync('/tmp/kvr-');
    const layout = runLayout(dir);
    for (const d of [layout.pid, layout.ctrl, layout.conf, layout.chroot, layout.log])
      mkdirSync(d, { recursive: true });
    const paths = instancePaths(layout, spec.name);
    mkdirSync(paths.chroot, { mode: 0o700 });
    const runtime = resolveRuntime(spec, resolvedOn ?? features);
    const argv = renderArgv(runtime, features, { paths, accel: release.accel });
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    await waitForFile(paths.qmp, child, () => stderr);
    // The socket file appears at bind(), a moment before QEMU listens: retry a refused connect.
    let qmp: QmpMonitor | undefined;
    for (let attempt = 0; !qmp; attempt++) {
      try {
        qmp = await QmpMonitor.connect({ path: paths.qmp });
      } catch (err) {
        if (attempt >= 100) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
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
    const tmp = scratchDir();
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
  });

  it('many hvparams at once: CD-ROM boot, floppy, VNC on an IP with TLS and password, USB tablet, sound, VGA, guest agent, mem_path, kvm_extra, q35', async () => {
    const tmp = scratchDir();
    const [raw] = disks(tmp);
    const iso = join(tmp, 'install.iso');
    writeFileSync(iso, Buffer.alloc(1 << 20));
    const floppy = join(tmp, 'floppy.img');
    writeFileSync(floppy, Buffer.alloc(1474560));
    for (const machine of ['', 'q35']) {
      const port = await freePort();
      const { runtime, qmp, child } = await start(
        baseSpec({
          networkPort: port,
          disks: [raw!],
          hvparams: {
            kernel_path: '',
            machine_version: machine,
            cdrom_image_path: iso,
            cdrom_disk_type: 'ide',
            boot_order: 'cdrom',
            ...(machine === 'q35' ? {} : { floppy_image_path: floppy }),
            vnc_bind_address: '127.0.0.1',
            vnc_tls: true,
            vnc_password_file: '/etc/hostname',
            soundhw: 'hda',
            vga: 'cirrus',
            keymap: 'en-us',
            use_guest_agent: true,
            use_localtime: true,
            disk_discard: 'unmap',
            disk_cache: 'writethrough',
            mem_path: tmp,
            cpu_type: 'qemu64',
            kvm_extra: '-msg timestamp=on',
          },
        }),
      );
      expect(runtime.machine.type).toMatch(machine === 'q35' ? /^pc-q35-/ : /^pc-i440fx-/);
      const vnc = (await qmp.execute('query-vnc')) as { enabled: boolean; service: string; auth: string };
      // TLS (anonymous credentials) wrapping VNC password authentication.
      expect(vnc).toMatchObject({ enabled: true, service: String(port), auth: 'vencrypt+tls+vnc' });
      const nodes = ((await qmp.execute('query-named-block-nodes')) as Array<{ 'node-name': string }>).map(
        (n) => n['node-name'],
      );
      expect(nodes).toContain('cdrom1');
      if (machine !== 'q35') expect(nodes).toContain('floppy1');
      const chardevs = ((await qmp.execute('query-chardev')) as Array<{ label: string }>).map((c) => c.label);
      expect(chardevs).toContain('qga0');
      const pci = await pciDevices(qmp);
      expect(pci).toContainEqual(expect.objectContaining({ qdev_id: runtime.disks[0]!.id, slot: 0xc }));
      await qmp.execute('quit').catch(() => {});
      await qmp.close();
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SPICE with the vdagent channel where QEMU has SPICE and QXL', async (t) => {
    if (!features.options.spice || !features.devices.includes('qxl-vga')) {
      t.skip();
      return;
    }
    const port = await freePort();
    const { qmp, child } = await start(
      baseSpec({
        networkPort: port,
        disks: [],
        hvparams: {
          kernel_path: '',
          spice_bind: '127.0.0.1',
          spice_image_compression: 'quic',
          soundhw: 'hda',
        },
      }),
    );
    const spice = (await qmp.execute('query-spice')) as { enabled: boolean; port?: number; host?: string };
    expect(spice).toMatchObject({ enabled: true, port, host: '127.0.0.1' });
    const chardevs = ((await qmp.execute('query-chardev')) as Array<{ label: string }>).map((c) => c.label);
    expect(chardevs).toContain('spicechannel0');
    await qmp.execute('quit').catch(() => {});
    await qmp.close();
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
  });

  it.runIf(process.getuid?.() === 0)(
    'security_model user and use_chroot: QEMU runs as the user, chrooted',
    async () => {
      const { qmp, child } = await start(
        baseSpec({
          disks: [],
          hvparams: { kernel_path: '', security_model: 'user', security_domain: 'nobody', use_chroot: true },
        }),
      );
      const status = (await qmp.execute('query-status')) as { status: string };
      expect(status.status).toBe('prelaunch');
      const procStatus = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const uid = /^Uid:\s+(\d+)/m.exec(procStatus)?.[1];
      expect(uid).toBe(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
      expect(readlinkSync(`/proc/${child.pid}/root`)).toBe(join(dir, 'chroot', 'web1'));
      await qmp.execute('quit').catch(() => {});
      await qmp.close();
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    },
  );

  it('a runtime resolved on the oldest release starts here with its machine type, ids and slots', async () => {
    const oldest = qemuReleases()[0]!;
    const source = await probeQemuFeatures(oldest.binary, { timeoutMs: 60_000 });
    const { runtime, qmp, child } = await start(
      baseSpec({ disks: [], hvparams: { kernel_path: '', acpi: false, soundhw: 'hda' } }),
      source,
    );
    expect(runtime.qemu.version).toBe(oldest.version);
    const type = await qmp.execute('qom-get', { path: '/machine', property: 'type' });
    expect(type).toBe(`${runtime.machine.type}-machine`);
    const pci = await pciDevices(qmp);
    expect(pci).toContainEqual(expect.objectContaining({ qdev_id: runtime.nics[0]!.id, slot: 0xc }));
    await qmp.execute('quit').catch(() => {});
    await qmp.close();
    await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
  });

  it.runIf(process.getuid?.() === 0 && existsSync('/dev/net/tun'))(
    'a tap NIC opened by name: multiqueue paravirtual (queues, mq, vnet_hdr) and an e1000',
    async () => {
      // Unique per test process: other workers may create taps too. Down, on no bridge.
      const taps = [`kvr${process.pid % 100000}q`, `kvr${process.pid % 100000}e`];
      try {
        execFileSync('ip', ['tuntap', 'add', 'dev', taps[0]!, 'mode', 'tap', 'multi_queue', 'vnet_hdr']);
        execFileSync('ip', ['tuntap', 'add', 'dev', taps[1]!, 'mode', 'tap']);
        const { runtime, qmp, child } = await start(
          baseSpec({
            disks: [],
            nics: [
              {
                uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
                mac: 'aa:00:00:12:34:56',
                network: { type: 'tap', ifname: taps[0]! },
              },
              {
                uuid: '103fc157-66a8-4e6d-8b7e-ec4f69751396',
                mac: 'aa:00:00:12:34:57',
                model: 'e1000',
                network: { type: 'tap', ifname: taps[1]! },
              },
            ],
            // No /dev/vhost-net on every node: vhost off here.
            hvparams: { kernel_path: '', vhost_net: false, virtio_net_queues: 2 },
          }),
        );
        const pci = await pciDevices(qmp);
        expect(pci).toContainEqual(expect.objectContaining({ qdev_id: runtime.nics[0]!.id, slot: 0xc }));
        expect(pci).toContainEqual(expect.objectContaining({ qdev_id: runtime.nics[1]!.id, slot: 0xd }));
        const mq = await qmp.execute('qom-get', {
          path: `/machine/peripheral/${runtime.nics[0]!.id}`,
          property: 'mq',
        });
        expect(mq).toBe(true);
        await qmp.execute('quit').catch(() => {});
        await qmp.close();
        await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
      } finally {
        for (const tap of taps) {
          try {
            execFileSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
          } catch {
            // not created
          }
        }
      }
    },
  );

  it('SCSI and IDE disks, e1000 NIC, no ACPI, exit on reboot, localtime, topology', async () => {
    const tmp = scratchDir();
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
  });
});
