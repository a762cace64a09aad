/**
 * User shutdown versus crash on real QEMU, every release of the matrix (TCG): a guest that
 * powers itself off through ACPI, a QEMU killed with SIGKILL, a QEMU ended by an operator's
 * `quit` on the HMP socket and by SIGTERM. Each state is read by a new `KVMHypervisor`
 * (and once by a separate `kvm-hv info` process), as Ganeti creates one per call: what it
 * knows comes from the run directory. Every QEMU is killed by pid afterwards.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, expect, it } from 'vitest';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import type { InstanceInfo } from '../../src/instance/lifecycle.js';
import { processAlive, readProcStat } from '../../src/instance/process.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { readInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { HmpMonitor } from '../../src/monitor/hmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { ensureBuilt, run } from '../cli/helpers.js';
import { describeEachRelease, type ReleaseCase, releaseCases } from '../support/real-qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-down-'));
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 1 });
/**
 * A guest that powers off at once: Multiboot header (a.out kludge, loaded at 1 MiB), then
 * `outw(0x604, 0x2000)` (SLP_EN, S5, on the PM1a control port SeaBIOS puts at 0x600), `hlt`.
 */
const poweroffGuest = join(dir, 'poweroff.img');
{
  const img = Buffer.alloc(64);
  const [magic, flags] = [0x1badb002, 0x00010000];
  const header = [magic, flags, -(magic + flags) >>> 0, 0x100000, 0x100000, 0, 0, 0x100020];
  for (const [i, v] of header.entries()) img.writeUInt32LE(v >>> 0, i * 4);
  Buffer.from([0x66, 0xba, 0x04, 0x06, 0x66, 0xb8, 0x00, 0x20, 0x66, 0xef, 0xf4, 0xeb, 0xfd]).copy(img, 32);
  writeFileSync(poweroffGuest, img);
}

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) {
    for (const name of ['off', 'kill', 'quit', 'term']) {
      const st = readInstanceState(instancePaths(runLayout(root), name));
      if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
    }
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let seq = 0;
/** `kvm_path` must be absolute; the host release may be a bare name on the PATH. */
const absolute = (binary: string): string =>
  binary.startsWith('/')
    ? binary
    : execFileSync('sh', ['-c', 'command -v "$1"', 'sh', binary], { encoding: 'utf8' }).trim();

async function until(what: string, read: () => Promise<InstanceInfo>, ok: (i: InstanceInfo) => boolean) {
  const end = Date.now() + 60_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not reached within 60 s (last ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describeEachRelease('user shutdown vs crash', releaseCases(), (rel: ReleaseCase) => {
  const root = () => {
    const r = join(dir, `n${++seq}`);
    roots.push(r);
    return r;
  };
  const spec = (name: string, kernel: string): InstanceSpec => ({
    name,
    uuid: `c0ffee00-7d4a-4c1b-9e3f-${String(++seq).padStart(12, '0')}`,
    memory: { maxMiB: 64 },
    vcpus: 1,
    disks: [],
    nics: [],
    hvparams: { kvm_path: absolute(rel.binary), kernel_path: kernel, kvm_flag: 'disabled' },
  });
  /** A new object per question, as Ganeti makes one per call. */
  const info = async (r: string, name: string) => {
    const hv = new KVMHypervisor({ instanceDir: r });
    try {
      return await hv.getInstanceInfo(name);
    } finally {
      await hv.close();
    }
  };
  const start = async (r: string, s: InstanceSpec) => {
    const hv = new KVMHypervisor({ instanceDir: r, accel: 'tcg' });
    try {
      return await hv.startInstance(s);
    } finally {
      await hv.close();
    }
  };

  it('a guest that powers itself off is user-down (guest-shutdown); a reboot clears it', async () => {
    const r = root();
    await start(r, spec('off', poweroffGuest));
    const down = await until(
      'guest powered off',
      () => info(r, 'off'),
      (i) => i.state !== 'running',
    );
    expect(down).toMatchObject({ state: 'user-down', runState: 'shutdown' });
    expect(down.shutdown).toMatchObject({
      event: 'SHUTDOWN',
      guest: true,
      powerdownRequested: false,
      pid: down.pid,
    });
    // QEMU 4.0+ says why.
    expect(down.shutdown?.reason).toBe('guest-shutdown');
    const hv = new KVMHypervisor({ instanceDir: r });
    await hv.rebootInstance('off');
    await hv.close();
    // RESET/RESUME remove the record; the guest powers off again at once, so look at the file
    // only through the states: it is user-down again with a later event.
    const again = await until(
      'powered off again',
      () => info(r, 'off'),
      (i) => i.state === 'user-down' && (i.shutdown?.at ?? 0) > (down.shutdown?.at ?? 0),
    );
    expect(again.shutdown?.guest).toBe(true);
  });

  it('a QEMU killed with SIGKILL is crashed (GONE without SHUTDOWN), also for a separate kvm-hv process', async () => {
    const r = root();
    const started = await start(r, spec('kill', guest));
    expect((await info(r, 'kill')).state).toBe('running');
    process.kill(started.pid, 'SIGKILL');
    await until(
      'gone',
      () => info(r, 'kill'),
      (i) => i.state !== 'running',
    );
    const i = await info(r, 'kill');
    expect(i.state).toBe('crashed');
    // No SHUTDOWN event: the watcher recorded that QEMU closed its socket without one.
    expect(i.shutdown).toMatchObject({ event: 'GONE', pid: started.pid });
    await ensureBuilt();
    const cli = await run(['info', 'kill', '--run-dir', r, '--json']);
    expect(cli.code).toBe(0);
    expect(JSON.parse(cli.stdout)).toMatchObject({ name: 'kill', state: 'crashed' });
  });

  it("an operator's quit on the HMP socket is shutdown (host-qmp-quit)", async () => {
    const r = root();
    const started = await start(r, spec('quit', guest));
    const m = await HmpMonitor.connect({ path: instancePaths(runLayout(r), 'quit').hmp });
    await m.humanCommand('quit').catch(() => undefined); // QEMU closes the socket as it exits
    await m.close().catch(() => undefined);
    const i = await until(
      'gone',
      () => info(r, 'quit'),
      (x) => x.state !== 'running' && x.state !== 'unresponsive',
    );
    expect(
      readProcStat(started.pid)?.startTime === undefined ||
        !processAlive(readInstanceState(instancePaths(runLayout(r), 'quit'))!),
    ).toBe(true);
    expect(i).toMatchObject({ state: 'shutdown', shutdown: { guest: false, reason: 'host-qmp-quit' } });
  });

  it('a QEMU ended with SIGTERM by someone else is shutdown (host-signal)', async () => {
    const r = root();
    const started = await start(r, spec('term', guest));
    process.kill(started.pid, 'SIGTERM');
    const i = await until(
      'gone',
      () => info(r, 'term'),
      (x) => x.state !== 'running' && x.state !== 'unresponsive',
    );
    expect(i).toMatchObject({ state: 'shutdown', shutdown: { guest: false, reason: 'host-signal' } });
    // cleanupInstance removes the record with the other files.
    const hv = new KVMHypervisor({ instanceDir: r });
    await hv.cleanupInstance('term');
    await hv.close();
    expect(existsSync(instancePaths(runLayout(r), 'term').shutdown)).toBe(false);
  });
});
