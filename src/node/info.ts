/**
 * What this node offers to instances: Ganeti's `GetNodeInfo` (`hv_base.GetLinuxNodeInfo`
 * plus the KVM version). The parsers are pure (they read text: `/proc/meminfo`,
 * `/proc/cpuinfo`, sysfs lists, `/proc/<pid>/status`, `qemu --version`);
 * {@link readNodeInfo} does the reading.
 *
 * Differences from Ganeti: sockets and NUMA nodes are counted (Ganeti reports 1 and 1,
 * "FIXME: export correct data here"); the memory this node's instances use is reported
 * (the resident memory of their QEMU processes), and what the node itself uses is
 * `total − free − instances` (Ganeti's `memory_dom0` is `total − free`, instances
 * included, or `Active` on 2.16).
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';
import { instancePaths, type RunLayout } from '../instance/layout.js';
import { processAlive } from '../instance/process.js';
import { parseRuntime } from '../instance/runtime.js';
import { readInstanceState } from '../instance/state.js';
import { formatVersion, parseVersion, type QemuVersion } from '../qemu/version.js';

/** Memory of the node from `/proc/meminfo`, MiB (kB values divided by 1024, rounded down). */
export interface MemInfo {
  totalMiB: number;
  /**
   * Available for instances: `MemAvailable` (Linux ≥ 3.14, Ganeti 3.x), else
   * `MemFree + Buffers + Cached` (older kernels; Ganeti 2.16 on every kernel).
   */
  freeMiB: number;
  /** Which rule gave {@link freeMiB}. */
  freeFrom: 'MemAvailable' | 'MemFree+Buffers+Cached';
}

/** The `kB` value of each `Key: value kB` line. */
function meminfoFields(text: string): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z0-9_()]+):\s+(\d+)(?:\s+kB)?\s*$/.exec(line);
    if (m) fields.set(m[1]!, Number(m[2]));
  }
  return fields;
}

/**
 * Parses `/proc/meminfo`.
 * @throws UnrecognizedOutputError quoting the text when `MemTotal` or the free memory is missing.
 */
export function parseMeminfo(text: string): MemInfo {
  const f = meminfoFields(text);
  const total = f.get('MemTotal');
  if (total === undefined) throw new UnrecognizedOutputError('/proc/meminfo', text, 'content');
  const mib = (kb: number) => Math.floor(kb / 1024);
  const available = f.get('MemAvailable');
  if (available !== undefined)
    return { totalMiB: mib(total), freeMiB: mib(available), freeFrom: 'MemAvailable' };
  const parts = ['MemFree', 'Buffers', 'Cached'].map((k) => f.get(k));
  if (parts.some((p) => p === undefined)) throw new UnrecognizedOutputError('/proc/meminfo', text, 'content');
  // Ganeti sums the three after dividing each: the same rounding here.
  const free = (parts as number[]).reduce((sum, kb) => sum + mib(kb), 0);
  return { totalMiB: mib(total), freeMiB: free, freeFrom: 'MemFree+Buffers+Cached' };
}

/** CPUs from `/proc/cpuinfo`. */
export interface CpuInfo {
  /** `processor : N` lines (Ganeti's `cpu_total`). */
  processors: number;
  /** Distinct `physical id` values; undefined when the text has none (many ARM kernels, some VMs). */
  sockets?: number;
}

/**
 * Parses `/proc/cpuinfo`.
 * @throws UnrecognizedOutputError quoting the text when it lists no processor.
 */
export function parseCpuinfo(text: string): CpuInfo {
  const processors = text.match(/^processor\s*:\s*[0-9]+\s*$/gm)?.length ?? 0;
  if (processors === 0) throw new UnrecognizedOutputError('/proc/cpuinfo', text, 'content');
  const ids = new Set([...text.matchAll(/^physical id\s*:\s*([0-9]+)\s*$/gm)].map((m) => m[1]));
  return ids.size === 0 ? { processors } : { processors, sockets: ids.size };
}

/**
 * Parses a sysfs list (`/sys/devices/system/node/online`: `0`, `0-3`, `0,2-3`) into its numbers.
 * @throws UnrecognizedOutputError quoting the text when it is not such a list.
 */
export function parseSysfsList(text: string, path = 'sysfs list'): number[] {
  const t = text.trim();
  if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(t)) throw new UnrecognizedOutputError(path, text, 'content');
  const out: number[] = [];
  for (const part of t.split(',')) {
    const [a, b] = part.split('-').map(Number) as [number, number | undefined];
    if (b !== undefined && b < a) throw new UnrecognizedOutputError(path, text, 'content');
    for (let i = a; i <= (b ?? a); i++) out.push(i);
  }
  return out;
}

/**
 * The resident memory (`VmRSS`) in `/proc/<pid>/status`, KiB.
 * @throws UnrecognizedOutputError quoting the text when there is no `VmRSS` line.
 */
export function parseVmRssKiB(text: string): number {
  const m = /^VmRSS:\s+(\d+)\s+kB\s*$/m.exec(text);
  if (!m) throw new UnrecognizedOutputError('/proc/<pid>/status', text, 'content');
  return Number(m[1]);
}

/**
 * The version in `qemu-system-x86_64 --version` output (`QEMU emulator version 7.2.22
 * (Debian 1:7.2+dfsg-7+deb12u18)`), as Ganeti's `_GetKVMVersion` reads the first line.
 * @throws UnrecognizedOutputError quoting the text when its first line has no version.
 */
export function parseQemuVersionOutput(text: string): QemuVersion {
  const first = text.split('\n')[0] ?? '';
  const v = /version/i.test(first) ? parseVersion(first) : undefined;
  if (!v) throw new UnrecognizedOutputError('qemu --version', text, 'content');
  return v;
}

/** One instance of this node's run directory whose QEMU runs. */
export interface NodeInstanceMemory {
  name: string;
  pid: number;
  /** The instance's maximum memory (`memory.maxMiB` of its runtime). */
  maxMiB: number;
  /** Resident memory of its QEMU process now. */
  rssMiB: number;
}

/** What {@link readNodeInfo} reports (Ganeti's `GetNodeInfo` keys in the comments). */
export interface NodeInfo {
  /** `memory_total`. */
  memoryTotalMiB: number;
  /** `memory_free`: available for new instances. */
  memoryFreeMiB: number;
  /** How `memoryFreeMiB` was computed. */
  memoryFreeFrom: MemInfo['freeFrom'];
  /** Resident memory of this run directory's running instances (sum of `instances[].rssMiB`). */
  memoryInstancesMiB: number;
  /** `memory_dom0` as the node itself uses it: total − free − instances (at least 0). */
  memoryNodeMiB: number;
  /** `cpu_total`. */
  cpuTotal: number;
  /** `cpu_dom0`: the node OS sees every CPU (as Ganeti assumes). */
  cpuNode: number;
  /** `cpu_sockets`: physical packages. */
  cpuSockets: number;
  /** `cpu_nodes`: NUMA nodes online. */
  numaNodes: number;
  /** `hv_version`: the QEMU of `kvm_path`. */
  hypervisor: { binary: string; version: string; major: number; minor: number; micro: number };
  instances: NodeInstanceMemory[];
}

/** Where {@link readNodeInfo} reads (defaults: the real files; tests point them elsewhere). */
export interface NodeInfoSources {
  /** The QEMU whose version is reported (`kvm_path`). */
  kvmPath: string;
  /** The run directory whose instances count as this node's. */
  layout: RunLayout;
  procDir?: string;
  sysDir?: string;
  /** Limit of `qemu --version`, ms (default 10 000). */
  timeoutMs?: number;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new HypervisorError(`cannot read node information from ${path}: ${(e as Error).message}`);
  }
}

/** Runs `<kvmPath> --version` and parses its answer. */
export function qemuBinaryVersion(kvmPath: string, timeoutMs = 10_000): Promise<QemuVersion> {
  return new Promise((resolve, reject) => {
    execFile(kvmPath, ['--version'], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        reject(
          new HypervisorError(
            `kvm_path '${kvmPath}': '${kvmPath} --version' failed: ${(stderr || err.message).trim()}`,
          ),
        );
        return;
      }
      try {
        resolve(parseQemuVersionOutput(stdout));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** Sockets from sysfs (each CPU's `topology/physical_package_id`), undefined where sysfs lacks them. */
function sysfsSockets(sysDir: string): number | undefined {
  const cpuDir = join(sysDir, 'devices/system/cpu');
  let entries: string[];
  try {
    entries = readdirSync(cpuDir).filter((e) => /^cpu\d+$/.test(e));
  } catch {
    return undefined;
  }
  const ids = new Set<string>();
  for (const e of entries) {
    try {
      ids.add(readFileSync(join(cpuDir, e, 'topology/physical_package_id'), 'utf8').trim());
    } catch {
      // an offline CPU has no topology folder
    }
  }
  return ids.size === 0 ? undefined : ids.size;
}

/** The running instances of a run directory and their QEMU's resident memory. */
function instancesMemory(layout: RunLayout, procDir = '/proc'): NodeInstanceMemory[] {
  let files: string[];
  try {
    files = readdirSync(layout.conf).filter((f) => f.endsWith('.state'));
  } catch {
    return [];
  }
  const out: NodeInstanceMemory[] = [];
  for (const f of files.sort()) {
    const name = f.slice(0, -'.state'.length);
    const paths = instancePaths(layout, name);
    const state = readInstanceState(paths);
    if (!state || !processAlive(state)) continue;
    let status: string;
    try {
      status = readFileSync(join(procDir, String(state.pid), 'status'), 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const maxMiB = parseRuntime(readText(paths.runtime)).memory.maxMiB;
    out.push({ name, pid: state.pid, maxMiB, rssMiB: Math.round(parseVmRssKiB(status) / 1024) });
  }
  return out;
}

/** Reads this node's memory, CPUs, sockets, NUMA nodes, instances and QEMU version. */
export async function readNodeInfo(src: NodeInfoSources): Promise<NodeInfo> {
  const procDir = src.procDir ?? '/proc';
  const sysDir = src.sysDir ?? '/sys';
  const mem = parseMeminfo(readText(join(procDir, 'meminfo')));
  const cpu = parseCpuinfo(readText(join(procDir, 'cpuinfo')));
  const nodeOnline = join(sysDir, 'devices/system/node/online');
  let numaNodes = 1; // a kernel without CONFIG_NUMA has one memory node and no such file
  try {
    numaNodes = parseSysfsList(readFileSync(nodeOnline, 'utf8'), nodeOnline).length;
  } catch (e) {
    if (e instanceof UnrecognizedOutputError) throw e;
  }
  const version = await qemuBinaryVersion(src.kvmPath, src.timeoutMs);
  const instances = instancesMemory(src.layout, procDir);
  const memoryInstancesMiB = instances.reduce((s, i) => s + i.rssMiB, 0);
  return {
    memoryTotalMiB: mem.totalMiB,
    memoryFreeMiB: mem.freeMiB,
    memoryFreeFrom: mem.freeFrom,
    memoryInstancesMiB,
    memoryNodeMiB: Math.max(0, mem.totalMiB - mem.freeMiB - memoryInstancesMiB),
    cpuTotal: cpu.processors,
    cpuNode: cpu.processors,
    cpuSockets: sysfsSockets(sysDir) ?? cpu.sockets ?? 1,
    numaNodes,
    hypervisor: { binary: src.kvmPath, version: formatVersion(version), ...version },
    instances,
  };
}
