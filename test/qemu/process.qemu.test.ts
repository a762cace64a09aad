import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HypervisorError } from '../../src/errors.js';
import { findQemuBinary, QEMU_BINARY_CANDIDATES, QemuVm } from '../../src/testing/qemu-vm.js';
import { qemuReleases } from '../support/qemu-releases.js';
import { describeEachRelease, releaseCases, vmOptions } from '../support/real-qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-proc-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function readGreeting(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      if (buf.includes('\n')) {
        s.destroy();
        resolve(buf);
      }
    });
    s.on('error', reject);
  });
}

describeEachRelease('QemuVm', releaseCases(), (rel) => {
  const opts = vmOptions(rel, rel.accel);
  it('starts QEMU with QMP and HMP sockets and kills it', async () => {
    const machine = `pc-i440fx-${rel.release}`;
    const vm = await QemuVm.start({ name: `p1-${rel.release}`, dir, qmpSockets: 2, machine, ...opts });
    try {
      expect(vm.alive).toBe(true);
      expect(vm.argv.join(' ')).toContain(`-accel ${rel.accel} -machine ${machine} `);
      expect(await readGreeting(vm.qmpPath)).toContain('"QMP"');
      expect(await readGreeting(vm.qmpPaths[1]!)).toContain('"QMP"');
      expect(await readGreeting(vm.hmpPath!)).toContain('monitor');
    } finally {
      await vm.kill();
    }
    expect(vm.alive).toBe(false);
  });

  it('returns only once the sockets accept connections (no ECONNREFUSED right after start)', async () => {
    for (let i = 0; i < 5; i++) {
      const vm = await QemuVm.start({ name: `ready${i}-${rel.release}`, dir, hmp: false, ...opts });
      try {
        expect(await readGreeting(vm.qmpPath)).toContain('"QMP"');
      } finally {
        await vm.kill();
      }
    }
  });

  it('reports QEMU stderr when start-up fails', async () => {
    await expect(
      QemuVm.start({
        name: `p2-${rel.release}`,
        dir,
        ...opts,
        args: ['-no-such-option'],
      }),
    ).rejects.toThrow(/exited during start-up.*no-such-option/s);
  });
});

describe('QemuVm without QEMU', () => {
  it('reports a missing binary', async () => {
    const err = await QemuVm.start({ name: 'p3', dir, binary: '/nonexistent/qemu' }).catch((e) => e);
    expect(err).toBeInstanceOf(HypervisorError);
    expect(String(err.message)).toContain('/nonexistent/qemu');
  });
});

describe('findQemuBinary', () => {
  it("looks where distributions install QEMU: the PATH's qemu-system-x86_64, /usr/bin/kvm, RHEL's /usr/libexec/qemu-kvm", () => {
    expect(QEMU_BINARY_CANDIDATES).toEqual(['qemu-system-x86_64', '/usr/bin/kvm', '/usr/libexec/qemu-kvm']);
  });

  const real = qemuReleases()[0];
  it.runIf(real !== undefined)('takes the first candidate that runs, skipping missing ones', () => {
    // A RHEL-style install: not on the PATH, under another name.
    const link = join(dir, 'qemu-kvm');
    const target = real!.binary.includes('/')
      ? real!.binary
      : execFileSync('sh', ['-c', 'command -v "$0"', real!.binary], { encoding: 'utf8' }).trim();
    symlinkSync(target, link);
    const env = { PATH: join(dir, 'empty-path') };
    expect(findQemuBinary({ env, candidates: ['qemu-system-x86_64', join(dir, 'no-kvm'), link] })).toBe(link);
    expect(findQemuBinary({ env, candidates: ['qemu-system-x86_64', join(dir, 'no-kvm')] })).toBeUndefined();
  });

  it.runIf(real !== undefined)('$QEMU wins and is not replaced when it does not run', () => {
    const env = { PATH: process.env.PATH, QEMU: join(dir, 'no-such-qemu') };
    expect(findQemuBinary({ env, candidates: ['qemu-system-x86_64'] })).toBeUndefined();
    expect(findQemuBinary({ env: { PATH: process.env.PATH, QEMU: real!.binary } })).toBe(real!.binary);
  });
});
