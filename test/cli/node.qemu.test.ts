/**
 * `kvm-hv console`, `node-info` and `verify` on real QEMU (the host's release) and this
 * node: the serial console command really attaches to QEMU's serial socket (QEMU's
 * `query-chardev` shows the connection), the VNC console's host:port really serves RFB,
 * node-info counts the running QEMUs' resident memory and the binary's version, verify
 * passes here and names what is missing. Every QEMU is killed by pid afterwards.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { processAlive } from '../../src/instance/process.js';
import { readInstanceState } from '../../src/instance/state.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { kvmUsable } from '../../src/qemu/accel.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { findQemuBinary, freePort } from '../../src/testing/qemu-vm.js';
import { ensureBuilt, run } from './helpers.js';

const qemu = findQemuBinary();
const binary = qemu?.startsWith('/')
  ? qemu
  : qemu && execFileSync('sh', ['-c', 'command -v "$1"', 'sh', qemu], { encoding: 'utf8' }).trim();
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-nodecli-'));
const runDir = join(dir, 'run');
const guest = join(dir, 'guest.img');
const children: ChildProcess[] = [];

afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const name of ['ser1', 'vnc1']) {
    const st = readInstanceState(instancePaths(runLayout(runDir), name));
    if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

function specFile(name: string, n: number, hvparams: Record<string, unknown>, networkPort?: number): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      name,
      uuid: `5e1f0c2e-7d4a-4c1b-9e3f-${String(n).padStart(12, '0')}`,
      memory: { maxMiB: 64 },
      vcpus: 1,
      disks: [],
      nics: [],
      ...(networkPort ? { networkPort } : {}),
      hvparams: { kvm_path: binary, kernel_path: guest, ...hvparams },
    }),
  );
  return path;
}

const json = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

describe.skipIf(!binary)('kvm-hv console, node-info, verify on real QEMU', () => {
  let vncPort = 0;
  beforeAll(async () => {
    await ensureBuilt();
    writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 1 });
    vncPort = await freePort();
    for (const [name, n, hv, port] of [
      ['ser1', 1, { serial_console: true }, undefined],
      ['vnc1', 2, { serial_console: false, vnc_bind_address: '127.0.0.1' }, vncPort],
    ] as const) {
      const r = await run(['start', specFile(name, n, hv, port), '--run-dir', runDir, '--json'], 90_000);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
    }
  }, 200_000);

  it('console of a serial instance: the printed socat command attaches to QEMU serial socket', async () => {
    const r = await run(['console', 'ser1', '--run-dir', runDir, '--json']);
    expect(r.code).toBe(0);
    const c = json(r.stdout) as { kind: string; socket: string; command: string[] };
    expect(c.kind).toBe('serial');
    expect(c.socket).toBe(join(runDir, 'ctrl/ser1.serial'));
    const human = await run(['console', 'ser1', '--run-dir', runDir]);
    expect(human.stdout).toContain(c.command.join(' '));
    const m = await QmpMonitor.connect({ path: join(runDir, 'ctrl/ser1.qmp') });
    let child: ChildProcess | undefined;
    try {
      const serial = async () =>
        (await m.execute<{ label: string; filename: string }[]>('query-chardev')).find(
          (x) => x.label === 'serial0',
        );
      expect((await serial())?.filename).toMatch(/^disconnected:unix:/);
      // socat's raw mode needs a terminal: run the command under script(1)'s pty, as a user's shell would.
      child = spawn('script', ['-qfec', c.command.join(' '), '/dev/null'], {
        stdio: ['pipe', 'ignore', 'ignore'],
      });
      children.push(child);
      let seen = '';
      for (let i = 0; i < 200 && !/^unix:/.test(seen); i++) {
        seen = (await serial())?.filename ?? '';
        if (!/^unix:/.test(seen)) await new Promise((res) => setTimeout(res, 50));
      }
      expect(seen).toMatch(new RegExp(`^unix:${c.socket}`));
    } finally {
      await m.close();
      child?.kill('SIGTERM');
    }
  });

  it('console of a VNC instance: host:port serves the RFB protocol', async () => {
    const r = await run(['console', 'vnc1', '--run-dir', runDir, '--json']);
    expect(r.code).toBe(0);
    const c = json(r.stdout) as { kind: string; host: string; port: number; display: number };
    expect(c).toMatchObject({ kind: 'vnc', host: '127.0.0.1', port: vncPort, display: vncPort - 5900 });
    const banner = await new Promise<string>((resolve, reject) => {
      const s = connect(c.port, c.host);
      s.once('data', (d) => {
        resolve(d.toString('latin1'));
        s.destroy();
      });
      s.once('error', reject);
    });
    expect(banner).toMatch(/^RFB 003\.00\d\n/);
  });

  it('console of an unknown instance: exit 1 naming it', async () => {
    const r = await run(['console', 'nope', '--run-dir', runDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/instance 'nope' has no runtime/);
  });

  it('node-info: this node, with the two QEMUs resident memory and the binary version', async () => {
    const r = await run(['node-info', '--run-dir', runDir, '-H', `kvm:kvm_path=${binary}`, '--json']);
    expect(r.code).toBe(0);
    const n = json(r.stdout) as {
      memoryTotalMiB: number;
      cpuTotal: number;
      hypervisor: { version: string };
      instances: { name: string; pid: number; maxMiB: number; rssMiB: number }[];
      memoryInstancesMiB: number;
    };
    const memTotal = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))![1]);
    expect(n.memoryTotalMiB).toBe(Math.floor(memTotal / 1024));
    expect(n.cpuTotal).toBe(readFileSync('/proc/cpuinfo', 'utf8').match(/^processor\s*:/gm)!.length);
    const version = /version (\d+\.\d+\.\d+)/.exec(
      execFileSync(binary!, ['--version'], { encoding: 'utf8' }),
    )![1]!;
    expect(n.hypervisor.version).toBe(version);
    expect(n.instances.map((i) => i.name)).toEqual(['ser1', 'vnc1']);
    for (const i of n.instances) {
      expect(i.maxMiB).toBe(64);
      const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${i.pid}/status`, 'utf8'))![1]) / 1024;
      expect(i.rssMiB).toBeGreaterThan(0);
      // Read again now: the guest runs, so allow what it touched meanwhile.
      expect(Math.abs(i.rssMiB - rss)).toBeLessThan(64);
    }
    expect(n.memoryInstancesMiB).toBe(n.instances.reduce((s, i) => s + i.rssMiB, 0));
    const human = await run(['node-info', '--run-dir', runDir, '-H', `kvm:kvm_path=${binary}`]);
    expect(human.stdout).toMatch(new RegExp(`hypervisor: +QEMU ${version.replace(/\./g, '\\.')}`));
  });

  it('verify: ok here; a missing kvm_path or socat is exit 1 naming it', async () => {
    const ok = await run([
      'verify',
      '--run-dir',
      runDir,
      '-H',
      `kvm:kvm_path=${binary}`,
      '--json',
      ...(kvmUsable() ? ['--kvm'] : []),
    ]);
    expect(ok.code).toBe(0);
    expect(json(ok.stdout)).toMatchObject({ ok: true, problems: [] });
    const bad = await run([
      'verify',
      '--run-dir',
      runDir,
      '-H',
      'kvm:kvm_path=/nonexistent/kvm',
      '--socat',
      'no-socat',
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(
      "kvm-hv: node verification failed: The KVM binary ('/nonexistent/kvm') does not exist; The socat binary ('no-socat') does not exist",
    );
    expect(bad.stdout).toMatch(/kvm_path: +FAILED/);
  });

  it('stops both instances', async () => {
    for (const name of ['ser1', 'vnc1']) {
      const r = await run(['stop', name, '--run-dir', runDir, '--force', '--timeout', '5']);
      expect(r.code).toBe(0);
    }
  });
});
