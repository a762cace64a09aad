/**
 * TEMPORARY stand-in for worker R's pure half (branch `instance-runtime`): the contract's
 * signatures (`probeQemuFeatures`, `resolveRuntime`, `renderArgv`, `serializeRuntime`,
 * `parseRuntime`, `checkInstanceSpec`) with just enough behaviour for the life cycle to be
 * built and tested. Replaced by re-exports of R's modules when that branch is merged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HvParamError, HypervisorError, UnrecognizedOutputError } from '../errors.js';
import { type CpuMaskEntry, parseMultiCpuMask } from '../hvparams/cpu-mask.js';
import {
  checkHvParamsSyntax,
  coerceHvParams,
  fillHvParamDefaults,
  type KvmHvParams,
} from '../hvparams/index.js';
import { QmpMonitor } from '../monitor/qmp.js';
import { QemuVm } from '../qemu/process.js';
import { formatVersion, type QemuVersion } from '../qemu/version.js';
import type { InstancePaths } from './layout.js';
import type { InstanceDisk, InstanceNic, InstanceSpec } from './spec.js';

export interface QemuFeatures {
  binary: string;
  version: QemuVersion;
  machines: { name: string; alias?: string; isDefault: boolean }[];
}

export async function probeQemuFeatures(
  binary: string,
  opts: { timeoutMs?: number } = {},
): Promise<QemuFeatures> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-probe-'));
  const vm = await QemuVm.start({
    name: 'probe',
    dir,
    binary,
    accel: 'tcg',
    machine: 'none',
    hmp: false,
    paused: true,
    startTimeoutMs: opts.timeoutMs ?? 10_000,
  });
  try {
    const m = await QmpMonitor.connect({ path: vm.qmpPath });
    try {
      const machines = (
        await m.execute<{ name: string; alias?: string; 'is-default'?: boolean }[]>('query-machines')
      ).map((x) => ({
        name: x.name,
        ...(x.alias ? { alias: x.alias } : {}),
        isDefault: x['is-default'] === true,
      }));
      return { binary, version: m.version, machines };
    } finally {
      await m.close();
    }
  } finally {
    await vm.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface InstanceRuntime {
  formatVersion: 1;
  instance: { name: string; uuid: string };
  qemu: { version: string };
  machine: { type: string };
  memory: { maxMiB: number; startupMiB: number };
  smp: { cpus: number };
  disks: (InstanceDisk & { id: string })[];
  nics: (InstanceNic & { id: string })[];
  hvparams: KvmHvParams;
}

export function checkInstanceSpec(input: unknown): InstanceSpec & { hvparams: KvmHvParams } {
  const spec = input as InstanceSpec;
  const hvparams = fillHvParamDefaults(coerceHvParams({ ...(spec.hvparams ?? {}) })) as KvmHvParams;
  checkHvParamsSyntax(hvparams);
  const seen = new Set<string>();
  for (const d of spec.disks) {
    if (seen.has(d.path)) throw new HypervisorError(`two disks with path ${d.path}`);
    seen.add(d.path);
  }
  return { ...spec, hvparams };
}

const idOf = (kind: string, uuid: string) => `${kind}-${uuid.split('-').slice(0, 3).join('-')}`;

export function resolveRuntime(spec: InstanceSpec, features: QemuFeatures): InstanceRuntime {
  const hvparams = checkInstanceSpec(spec).hvparams;
  let machine = hvparams.machine_version;
  if (!machine) {
    const def = features.machines.find((m) => m.isDefault);
    if (!def) throw new HvParamError([{ param: 'machine_version', message: 'no default machine' }]);
    machine = def.name;
  }
  const named = features.machines.find((m) => m.alias === machine);
  if (named) machine = named.name;
  return {
    formatVersion: 1,
    instance: { name: spec.name, uuid: spec.uuid },
    qemu: { version: formatVersion(features.version) },
    machine: { type: machine },
    memory: { maxMiB: spec.memory.maxMiB, startupMiB: spec.memory.startupMiB ?? spec.memory.maxMiB },
    smp: { cpus: spec.vcpus },
    disks: spec.disks.map((d) => ({ ...d, id: idOf('disk', d.uuid) })),
    nics: spec.nics.map((n) => ({ ...n, id: idOf('nic', n.uuid) })),
    hvparams,
  };
}

export function serializeRuntime(r: InstanceRuntime): string {
  return `${JSON.stringify(r, null, 2)}\n`;
}

export function parseRuntime(text: string): InstanceRuntime {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UnrecognizedOutputError('runtime', text, 'content');
  }
  if ((v as { formatVersion?: unknown })?.formatVersion !== 1)
    throw new UnrecognizedOutputError('runtime', text, 'content');
  return v as InstanceRuntime;
}

export interface LaunchContext {
  paths: InstancePaths;
  accel: 'kvm' | 'tcg';
  incoming?: string;
  interfaces?: Record<string, { address: string; family: string | number; internal?: boolean }[] | undefined>;
}

export interface PostStartActions {
  vncPasswordFile?: string;
  spicePasswordFile?: string;
  cpuMask?: CpuMaskEntry[];
  balloonMiB?: number;
}

export function postStartActions(runtime: InstanceRuntime): PostStartActions {
  const hv = runtime.hvparams;
  const mask = parseMultiCpuMask(hv.cpu_mask);
  const pin = !mask.every((m) => m === 'all');
  return {
    ...(hv.vnc_bind_address && hv.vnc_password_file ? { vncPasswordFile: hv.vnc_password_file } : {}),
    ...(hv.spice_bind && hv.spice_password_file ? { spicePasswordFile: hv.spice_password_file } : {}),
    ...(pin ? { cpuMask: mask } : {}),
    ...(runtime.memory.startupMiB < runtime.memory.maxMiB ? { balloonMiB: runtime.memory.startupMiB } : {}),
  };
}

export function renderArgv(r: InstanceRuntime, features: QemuFeatures, ctx: LaunchContext): string[] {
  const p = ctx.paths;
  const argv = [
    features.binary,
    '-name',
    r.instance.name,
    '-uuid',
    r.instance.uuid,
    '-accel',
    ctx.accel,
    '-machine',
    r.machine.type,
    '-m',
    String(r.memory.maxMiB),
    '-smp',
    String(r.smp.cpus),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-pidfile',
    p.pidfile,
    '-qmp',
    `unix:${p.qmp},server=on,wait=off`,
    '-monitor',
    `unix:${p.hmp},server=on,wait=off`,
    '-device',
    'virtio-balloon',
    '-S',
  ];
  if (r.hvparams.kernel_path) argv.push('-kernel', r.hvparams.kernel_path);
  for (const d of r.disks) {
    argv.push(
      '-blockdev',
      `driver=${d.format ?? 'raw'},node-name=${d.id},file.driver=file,file.filename=${d.path}`,
    );
    argv.push('-device', `virtio-blk-pci,id=${d.id},drive=${d.id}`);
  }
  for (const n of r.nics) {
    argv.push(
      '-netdev',
      `user,id=${n.id}`,
      '-device',
      `virtio-net-pci,id=${n.id},netdev=${n.id},mac=${n.mac}`,
    );
  }
  if (ctx.incoming) argv.push('-incoming', ctx.incoming);
  return argv;
}
