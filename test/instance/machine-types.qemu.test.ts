/**
 * Machine types on the real QEMU releases of the suite (the host's and the matrix's, see
 * test/support/qemu-releases.ts), under TCG: the probe's `-machine help` names each PC
 * machine's chipset as its name does; an instance started with `q35` (or the default)
 * runs the pinned, versioned machine; a migration target probes its own `kvm_path` (not the
 * source's, which the runtime carries): an older QEMU without the runtime's machine type
 * is refused before anything starts, a newer one receives the VM. Every QEMU started here
 * is killed by pid after each test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { HvParamError } from '../../src/errors.js';
import { probeQemuFeatures } from '../../src/instance/features.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { machineFamily } from '../../src/instance/machine-types.js';
import { processAlive } from '../../src/instance/process.js';
import { parseRuntime } from '../../src/instance/runtime.js';
import type { InstanceSpec } from '../../src/instance/spec.js';
import { readInstanceState } from '../../src/instance/state.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort } from '../../src/testing/qemu-vm.js';
import { qemuReleases } from '../support/qemu-releases.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-machines-'));
const guest = join(dir, 'guest.img');
writeGuestImage(guest, { dirtyMiB: 4, rateMiBps: 8 });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Every node a test made, its QEMUs killed by pid afterwards. */
const nodes: { hv: KVMHypervisor; root: string }[] = [];
afterEach(async () => {
  for (const { hv, root } of nodes.splice(0)) {
    for (const name of hv.listInstances()) {
      const st = readInstanceState(instancePaths(runLayout(root), name));
      if (st && processAlive(st)) process.kill(st.pid, 'SIGKILL');
    }
    await hv.close();
  }
});

let seq = 0;
function node(label: string): { hv: KVMHypervisor; root: string } {
  const root = join(dir, `${label}-${++seq}`);
  const n = { hv: new KVMHypervisor({ instanceDir: root, accel: 'tcg' }), root };
  nodes.push(n);
  return n;
}

/** `kvm_path` must be absolute; the host release may be a bare name on the PATH. */
const absolute = (binary: string): string =>
  binary.startsWith('/')
    ? binary
    : execFileSync('sh', ['-c', 'command -v "$1"', 'sh', binary], { encoding: 'utf8' }).trim();

function spec(name: string, binary: string, machine_version: string): InstanceSpec {
  return {
    name,
    uuid: `5e1c0d2a-3b4f-4a6e-8c7d-${String(++seq).padStart(12, '0')}`,
    memory: { maxMiB: 64 },
    vcpus: 1,
    disks: [],
    nics: [],
    hvparams: { kvm_path: absolute(binary), kernel_path: guest, machine_version },
  };
}

/** The QOM type of the running machine: `<machine type>-machine`. */
async function runningMachine(hv: KVMHypervisor, name: string): Promise<string> {
  const m = await hv.monitorFor(name);
  return String(await m.execute('qom-get', { path: '/machine', property: 'type' }));
}

describeEachRelease('machine types', releaseCases(['tcg']), (rel) => {
  it('the probe reads -machine help: descriptions name the chipset the PC names carry', async () => {
    const f = await probeQemuFeatures(rel.binary, { refresh: true, timeoutMs: 60_000 });
    const pcs = f.machines.filter((m) => /^pc-(i440fx|q35)-/.test(m.name));
    expect(pcs.length).toBeGreaterThan(10);
    for (const m of pcs) {
      expect(m.description).toMatch(m.name.startsWith('pc-q35-') ? /\(Q35 \+ ICH9/ : /\(i440FX \+ PIIX/);
      expect(machineFamily(m)).toBe(m.name.startsWith('pc-q35-') ? 'q35' : 'i440fx');
    }
    const def = f.machines.find((m) => m.isDefault)!;
    expect(machineFamily(def)).toBe('i440fx');
    expect(def.name).toBe(`pc-i440fx-${rel.release}`);
    expect(f.machines.find((m) => m.name === 'isapc')?.description).toBe('ISA-only PC');
  });

  it.each([
    ['', 'i440fx'],
    ['q35', 'q35'],
  ])('machine_version %j: the versioned machine is pinned and runs', async (wanted, family) => {
    const { hv } = node(`m-${family}`);
    const s = spec(`mt-${family}`, rel.binary, wanted);
    await hv.startInstance(s);
    const pinned = parseRuntime(hv.getMigrationInfo(s.name)).machine;
    expect(pinned).toEqual({
      type: `pc-${family}-${rel.release}`,
      pciBus: family === 'q35' ? 'pcie.0' : 'pci.0',
    });
    expect(await runningMachine(hv, s.name)).toBe(`pc-${family}-${rel.release}-machine`);
    expect((await hv.stopInstance(s.name, { force: true, timeoutMs: 1000 })).how).toMatch(/quit|sigterm/);
  });
});

// A migration target probes its own kvm_path; the runtime names the source's binary.
const releases = qemuReleases();
const oldest = releases[0];
const newest = releases.at(-1);
describe.runIf(oldest !== undefined && newest !== undefined && oldest !== newest)(
  `acceptInstance probes this node's kvm_path (QEMU ${oldest?.version} and ${newest?.version})`,
  () => {
    it("an older target QEMU without the runtime's machine type is refused before anything starts", async () => {
      const src = node('src');
      const dst = node('dst');
      const s = spec('newer', newest!.binary, 'q35');
      await src.hv.startInstance(s);
      const runtime = src.hv.getMigrationInfo(s.name);
      expect(parseRuntime(runtime).hvparams.kvm_path).toBe(absolute(newest!.binary));
      const inst = { name: s.name, hvparams: { ...s.hvparams, kvm_path: absolute(oldest!.binary) } };
      const err = await dst.hv.acceptInstance(inst, runtime, '127.0.0.1').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(HvParamError);
      expect((err as HvParamError).problems.map((p) => p.param)).toEqual(['machine_version']);
      expect((err as HvParamError).message).toContain(
        `QEMU ${oldest!.version} at ${absolute(oldest!.binary)} has no machine type 'pc-q35-${newest!.release}'`,
      );
      // Nothing was started or left behind on the target; the source runs on.
      const paths = instancePaths(runLayout(dst.root), s.name);
      expect(dst.hv.listInstances()).toEqual([]);
      for (const f of [paths.state, paths.runtime, paths.pidfile]) expect(existsSync(f)).toBe(false);
      expect((await src.hv.getInstanceInfo(s.name)).state).toBe('running');
    });

    it('a newer target QEMU starts from the runtime with its own binary and receives the VM', async () => {
      const src = node('src');
      const dst = node('dst');
      const s = spec('older', oldest!.binary, 'q35');
      s.hvparams = { ...s.hvparams, migration_port: await freePort() };
      await src.hv.startInstance(s);
      const inst = { name: s.name, hvparams: { ...s.hvparams, kvm_path: absolute(newest!.binary) } };
      await dst.hv.acceptInstance(inst, src.hv.getMigrationInfo(s.name), '127.0.0.1');
      const dstPaths = instancePaths(runLayout(dst.root), s.name);
      expect(readInstanceState(dstPaths)).toMatchObject({
        binary: absolute(newest!.binary),
        qemuVersion: newest!.version,
      });
      await src.hv.migrateInstance(inst, '127.0.0.1');
      await src.hv.waitForMigration(inst, { timeoutMs: 60_000 });
      await dst.hv.finalizeMigrationDst(inst, true);
      await src.hv.finalizeMigrationSource(inst, true);
      const info = await dst.hv.getInstanceInfo(s.name);
      expect(info).toMatchObject({ state: 'running', qemuVersion: newest!.version });
      // The source's machine type, on the newer QEMU.
      expect(await runningMachine(dst.hv, s.name)).toBe(`pc-q35-${oldest!.release}-machine`);
      expect(src.hv.listInstances()).toEqual([]);
    });
  },
);
