/**
 * The node parsers on recorded real text (Ganeti's own test data and this machine's
 * /proc), the console choice on runtimes resolved from recorded QEMU features, and
 * readNodeInfo/verifyNode against fake /proc and /sys folders and real binaries.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HypervisorError, UnrecognizedOutputError } from '../../src/errors.js';
import { describeConsole, instanceConsole } from '../../src/instance/console.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import {
  parseCpuinfo,
  parseMeminfo,
  parseQemuVersionOutput,
  parseSysfsList,
  parseVmRssKiB,
  readNodeInfo,
} from '../../src/node/info.js';
import { verifyNode } from '../../src/node/verify.js';
import { recordedFeatures } from '../instance/fixtures.js';
import { baseSpec } from '../instance/specs.js';

const fixture = (f: string) => readFileSync(join(import.meta.dirname, '../fixtures/node', f), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-node-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('parseMeminfo', () => {
  it("reads Ganeti's recorded meminfo (no MemAvailable) as Ganeti 2.16 does", () => {
    // 7870584 kB; MemFree 1549012 + Buffers 227328 + Cached 4647780, each divided by 1024 first.
    expect(parseMeminfo(fixture('ganeti-proc_meminfo.txt'))).toEqual({
      totalMiB: 7686,
      freeMiB: 1512 + 222 + 4538,
      freeFrom: 'MemFree+Buffers+Cached',
    });
  });
  it("prefers MemAvailable (this machine's recording)", () => {
    const text = fixture('host-proc_meminfo.txt');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1]);
    expect(parseMeminfo(text)).toEqual({
      totalMiB: Math.floor(kb('MemTotal') / 1024),
      freeMiB: Math.floor(kb('MemAvailable') / 1024),
      freeFrom: 'MemAvailable',
    });
  });
  it('refuses text without MemTotal, quoting it', () => {
    expect(() => parseMeminfo('MemFree: 12 kB\n')).toThrow(UnrecognizedOutputError);
    expect(() => parseMeminfo('MemFree: 12 kB\n')).toThrow(/MemFree: 12 kB/);
    expect(() => parseMeminfo('MemTotal: 12 kB\nMemFree: 1 kB\n')).toThrow(UnrecognizedOutputError);
  });
});

describe('parseCpuinfo', () => {
  it("counts Ganeti's recorded i5-3320M: 4 processors, 1 socket", () => {
    expect(parseCpuinfo(fixture('ganeti-proc_cpuinfo.txt'))).toEqual({ processors: 4, sockets: 1 });
  });
  it("counts this machine's recording", () => {
    const text = fixture('host-proc_cpuinfo.txt');
    expect(parseCpuinfo(text).processors).toBe(
      text.split('\n').filter((l) => l.startsWith('processor')).length,
    );
  });
  it('counts distinct physical ids; none gives no socket count', () => {
    const two = 'processor\t: 0\nphysical id\t: 0\n\nprocessor\t: 1\nphysical id\t: 1\n\n';
    expect(parseCpuinfo(two)).toEqual({ processors: 2, sockets: 2 });
    expect(parseCpuinfo('processor\t: 0\nBogoMIPS\t: 50.00\n')).toEqual({ processors: 1 });
  });
  it('refuses text without a processor line, quoting it', () => {
    expect(() => parseCpuinfo('Hardware : BCM2835\n')).toThrow(/BCM2835/);
  });
});

describe('small parsers', () => {
  it('parseSysfsList', () => {
    expect(parseSysfsList('0\n')).toEqual([0]);
    expect(parseSysfsList('0-3')).toEqual([0, 1, 2, 3]);
    expect(parseSysfsList('0,2-3')).toEqual([0, 2, 3]);
    expect(() => parseSysfsList('3-1')).toThrow(UnrecognizedOutputError);
    expect(() => parseSysfsList('node0')).toThrow(/node0/);
  });
  it('parseVmRssKiB', () => {
    expect(parseVmRssKiB('Name:\tqemu\nVmRSS:\t   51234 kB\nThreads:\t5\n')).toBe(51234);
    expect(() => parseVmRssKiB('Name:\tkthreadd\n')).toThrow(/kthreadd/);
  });
  it("parseQemuVersionOutput reads the first line as Ganeti's _GetKVMVersion", () => {
    expect(
      parseQemuVersionOutput(
        'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard\n',
      ),
    ).toEqual({ major: 7, minor: 2, micro: 22 });
    expect(parseQemuVersionOutput('QEMU PC emulator version 0.12.5 (qemu-kvm-0.12.5)')).toEqual({
      major: 0,
      minor: 12,
      micro: 5,
    });
    expect(() => parseQemuVersionOutput('Usage: foo 1.2\n')).toThrow(UnrecognizedOutputError);
  });
});

describe('instanceConsole (Ganeti TestConsole cases)', () => {
  const features = recordedFeatures('7.2');
  const paths = instancePaths(runLayout('/run/kvm'), 'web1');
  const runtimeOf = (hvparams: Record<string, unknown>, networkPort?: number) =>
    resolveRuntime(
      baseSpec({ hvparams: { kernel_path: '', ...hvparams }, ...(networkPort ? { networkPort } : {}) }),
      features,
    );
  it('serial console: socat on the serial socket', () => {
    const c = instanceConsole(runtimeOf({ serial_console: true }), paths, { socat: '/usr/bin/socat' });
    expect(c).toEqual({
      kind: 'serial',
      instance: 'web1',
      socket: '/run/kvm/ctrl/web1.serial',
      command: ['/usr/bin/socat', 'STDIO,raw,echo=0,escape=0x1d', 'UNIX-CONNECT:/run/kvm/ctrl/web1.serial'],
    });
    expect(describeConsole(c)).toContain('/usr/bin/socat STDIO,raw,echo=0,escape=0x1d');
  });
  it('VNC on 192.0.2.1, port 5910: display 10', () => {
    const c = instanceConsole(
      runtimeOf({ serial_console: false, vnc_bind_address: '192.0.2.1' }, 5910),
      paths,
    );
    expect(c).toEqual({
      kind: 'vnc',
      instance: 'web1',
      host: '192.0.2.1',
      port: 5910,
      display: 10,
      password: false,
      tls: false,
    });
  });
  it('VNC on an interface: its address on this node; none is an error naming the parameter', () => {
    const rt = runtimeOf({ serial_console: false, vnc_bind_address: 'lo' }, 5911);
    const c = instanceConsole(rt, paths, { interfaces: { lo: [{ address: '127.0.0.1', family: 'IPv4' }] } });
    expect(c).toMatchObject({ kind: 'vnc', host: '127.0.0.1', port: 5911, display: 11 });
    expect(() => instanceConsole(rt, paths, { interfaces: {} })).toThrow(HypervisorError);
    expect(() => instanceConsole(rt, paths, { interfaces: {} })).toThrow(
      /vnc_bind_address names interface 'lo'/,
    );
  });
  it('VNC on a UNIX socket', () => {
    const c = instanceConsole(runtimeOf({ serial_console: false, vnc_bind_address: '/run/vnc' }), paths);
    expect(c).toMatchObject({ kind: 'vnc', socket: '/run/vnc/web1.vnc' });
  });
  it('SPICE on 192.0.2.1, port 11000', () => {
    const c = instanceConsole(runtimeOf({ serial_console: false, spice_bind: '192.0.2.1' }, 11000), paths);
    expect(c).toEqual({ kind: 'spice', instance: 'web1', host: '192.0.2.1', port: 11000, password: false });
  });
  it('nothing: a message', () => {
    const c = instanceConsole(runtimeOf({ serial_console: false }), paths);
    expect(c).toEqual({ kind: 'message', instance: 'web1', message: 'No serial shell for instance web1' });
  });
});

describe('readNodeInfo and verifyNode on fake /proc and /sys', () => {
  const proc = join(dir, 'proc');
  const sys = join(dir, 'sys');
  mkdirSync(proc, { recursive: true });
  writeFileSync(join(proc, 'meminfo'), fixture('ganeti-proc_meminfo.txt'));
  writeFileSync(join(proc, 'cpuinfo'), fixture('ganeti-proc_cpuinfo.txt'));
  // A stand-in that answers `--version` as Debian's QEMU 7.2 does: all readNodeInfo runs.
  const qemu = join(dir, 'qemu-system-x86_64');
  writeFileSync(
    qemu,
    "#!/bin/sh\necho 'QEMU emulator version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u16)'\necho 'Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers'\n",
    { mode: 0o755 },
  );

  it('reports the fixtures, two NUMA nodes and the QEMU version', async () => {
    mkdirSync(join(sys, 'devices/system/node'), { recursive: true });
    writeFileSync(join(sys, 'devices/system/node/online'), '0-1\n');
    const info = await readNodeInfo({
      kvmPath: qemu!,
      layout: runLayout(join(dir, 'run')),
      procDir: proc,
      sysDir: sys,
    });
    expect(info).toMatchObject({
      memoryTotalMiB: 7686,
      memoryFreeMiB: 6272,
      memoryInstancesMiB: 0,
      memoryNodeMiB: 7686 - 6272,
      cpuTotal: 4,
      cpuNode: 4,
      cpuSockets: 1,
      numaNodes: 2,
      instances: [],
    });
    expect(info.hypervisor.version).toBe('7.2.19');
  });
  it('a kvm_path that does not exist: an error naming it', async () => {
    await expect(
      readNodeInfo({
        kvmPath: '/nonexistent/qemu',
        layout: runLayout(join(dir, 'run')),
        procDir: proc,
        sysDir: sys,
      }),
    ).rejects.toThrow(/kvm_path '\/nonexistent\/qemu'/);
  });
  it("verifyNode reports each missing piece with Ganeti's wording", async () => {
    const v = await verifyNode({
      kvmPath: '/nonexistent/kvm',
      layout: runLayout('/etc/hostname/kvm'),
      socat: 'no-such-socat',
      requireKvm: true,
      kvmDevice: join(dir, 'no-kvm'),
    });
    expect(v.ok).toBe(false);
    expect(v.checks.map((c) => [c.check, c.ok])).toEqual([
      ['kvm_path', false],
      ['socat', false],
      ['run-dir', false],
      ['/dev/kvm', false],
    ]);
    expect(v.problems[0]).toBe("The KVM binary ('/nonexistent/kvm') does not exist");
    expect(v.problems[1]).toBe("The socat binary ('no-such-socat') does not exist");
    expect(v.problems[2]).toMatch(/ENOTDIR/);
  });
  it('verifyNode: a binary that is not QEMU is a failed check quoting its answer', async () => {
    const fake = join(dir, 'fake-qemu');
    writeFileSync(fake, '#!/bin/sh\necho "hello from not-qemu"\n', { mode: 0o755 });
    const v = await verifyNode({
      kvmPath: fake,
      layout: runLayout(join(dir, 'run2')),
      path: '',
      socat: '/bin/sh',
    });
    expect(v.checks[0]).toMatchObject({ check: 'kvm_path', ok: false });
    expect(v.checks[0]!.detail).toContain('hello from not-qemu');
    expect(v.checks.slice(1).map((c) => c.ok)).toEqual([true, true]);
  });
});
