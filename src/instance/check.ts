/**
 * Checks of an instance spec before anything is started: the schema, then what the schema
 * cannot say (unique paths, MACs and UUIDs, unicast MACs, memory, names QEMU and socket
 * paths accept, models the hvparams know). Every problem is reported at once. No I/O.
 */
import { Value } from 'typebox/value';
import { HvParamError, type HvParamProblem, InstanceSpecError, type InstanceSpecProblem } from '../errors.js';
import { fillHvParamDefaults, hvParamsSyntaxProblems } from '../hvparams/check.js';
import { coerceHvParams } from '../hvparams/coerce.js';
import { isNormAbsPath } from '../hvparams/paths.js';
import type { KvmHvParams } from '../hvparams/registry.js';
import { NIC_TYPES } from '../hvparams/value-sets.js';
import {
  InstanceLocalDiskSchema,
  type InstanceSpec,
  InstanceSpecSchema,
  InstanceUserspaceDiskSchema,
} from './spec.js';
import { diskLocation, parseUserspaceUri, UserspaceUriError } from './userspace-disk.js';

/**
 * Least `memory.maxMiB` accepted: SeaBIOS, the option ROMs and a minimal kernel fit; less
 * boots nothing useful and makes QEMU itself refuse some machine types.
 */
export const MIN_INSTANCE_MEMORY_MIB = 32;

/** Instance names: QEMU `-name` safe (no comma), file-name and socket safe, at most 63 characters. */
export const INSTANCE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const UUID_PATTERN = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const MAC_PATTERN = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
/** Linux interface names: 1 to 15 bytes, no slash, no white space; no comma (QEMU option syntax). */
const IFNAME_PATTERN = /^[A-Za-z0-9_.:+-]{1,15}$/;

/** Disk types whose device cannot attach a read-only image (`ide-hd`: "Can't use a read-only drive"). */
const NO_READ_ONLY_DISK_TYPES = new Set(['ide']);

function fieldOf(instancePath: string): string {
  // `/disks/0/path` → `disks[0].path`
  return instancePath
    .split('/')
    .filter(Boolean)
    .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join('');
}

/**
 * The schema errors of `spec`, with each disk checked against the branch its `kind` picks:
 * a union's errors list every branch's complaints (a `file` disk told it lacks a `uri`).
 */
function schemaErrors(spec: unknown) {
  const disks = (spec as { disks?: unknown } | null)?.disks;
  if (!spec || typeof spec !== 'object' || !Array.isArray(disks))
    return [...Value.Errors(InstanceSpecSchema, spec)];
  const rest = [...Value.Errors(InstanceSpecSchema, { ...spec, disks: [] })];
  const diskErrors = disks.flatMap((disk: unknown, i) => {
    const kind = (disk as { kind?: unknown } | null)?.kind;
    const schema =
      kind === 'userspace'
        ? InstanceUserspaceDiskSchema
        : kind === 'file' || kind === 'block'
          ? InstanceLocalDiskSchema
          : undefined;
    if (!schema) {
      if (disk && typeof disk === 'object') {
        return [
          {
            instancePath: `/disks/${i}/kind`,
            keyword: 'enum',
            params: {},
            message: "must be 'file', 'block' or 'userspace'",
          },
        ];
      }
      return [...Value.Errors(InstanceLocalDiskSchema, disk)].map((e) => ({
        ...e,
        instancePath: `/disks/${i}${e.instancePath}`,
      }));
    }
    return [...Value.Errors(schema, disk)].map((e) => ({
      ...e,
      instancePath: `/disks/${i}${e.instancePath}`,
    }));
  });
  return [...rest, ...diskErrors];
}

function schemaProblems(spec: unknown): InstanceSpecProblem[] {
  const seen = new Set<string>();
  const out: InstanceSpecProblem[] = [];
  for (const e of schemaErrors(spec)) {
    // TypeBox reports an extra key twice (`schema is false` and `additionalProperties`).
    if (e.keyword === 'boolean') continue;
    const extra = (e.params as { additionalProperties?: string[] }).additionalProperties;
    const message = extra ? `unknown field(s) ${extra.map((k) => `'${k}'`).join(', ')}` : e.message;
    const key = `${e.instancePath}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field: fieldOf(e.instancePath), message });
  }
  return out;
}

/** True when `mac` (`aa:bb:…`) is a unicast address other than all zeros. */
export function isUnicastMac(mac: string): boolean {
  if (!MAC_PATTERN.test(mac)) return false;
  const first = Number.parseInt(mac.slice(0, 2), 16);
  return (first & 1) === 0 && mac.replaceAll(':', '') !== '000000000000';
}

function semanticProblems(spec: InstanceSpec, hv: KvmHvParams | undefined): InstanceSpecProblem[] {
  const problems: InstanceSpecProblem[] = [];
  const add = (field: string, message: string) => problems.push({ field, message });

  if (!INSTANCE_NAME_PATTERN.test(spec.name)) {
    add(
      'name',
      `'${spec.name}' is not a valid instance name: 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  const uuids = new Map<string, string>();
  const uuidField = (field: string, uuid: string) => {
    if (!UUID_PATTERN.test(uuid)) {
      add(field, `'${uuid}' is not a UUID (8-4-4-4-12 hexadecimal digits)`);
      return;
    }
    const other = uuids.get(uuid.toLowerCase());
    if (other) add(field, `UUID '${uuid}' is already used by ${other}`);
    else uuids.set(uuid.toLowerCase(), field);
  };
  uuidField('uuid', spec.uuid);

  const { maxMiB, startupMiB } = spec.memory;
  if (maxMiB < MIN_INSTANCE_MEMORY_MIB) {
    add('memory.maxMiB', `${maxMiB} MiB is below the ${MIN_INSTANCE_MEMORY_MIB} MiB an instance needs`);
  }
  if (startupMiB !== undefined && (startupMiB < MIN_INSTANCE_MEMORY_MIB || startupMiB > maxMiB)) {
    add(
      'memory.startupMiB',
      `${startupMiB} MiB must be between ${MIN_INSTANCE_MEMORY_MIB} MiB and memory.maxMiB (${maxMiB} MiB)`,
    );
  }
  if (spec.vcpus < 1) add('vcpus', `${spec.vcpus} vCPUs: at least 1 is needed`);
  if (spec.networkPort !== undefined && (spec.networkPort < 0 || spec.networkPort > 65535)) {
    add('networkPort', `${spec.networkPort} is not a TCP port (0 to 65535)`);
  }

  const paths = new Map<string, number>();
  spec.disks.forEach((disk, i) => {
    uuidField(`disks[${i}].uuid`, disk.uuid);
    const field = disk.kind === 'userspace' ? `disks[${i}].uri` : `disks[${i}].path`;
    if (disk.kind === 'userspace') {
      try {
        parseUserspaceUri(disk.uri);
      } catch (e) {
        if (!(e instanceof UserspaceUriError)) throw e;
        add(field, e.message);
      }
    } else if (!isNormAbsPath(disk.path) || disk.path.includes('\0')) {
      add(field, `'${disk.path}' is not a normalized absolute path`);
    }
    const location = diskLocation(disk);
    const what = disk.kind === 'userspace' ? 'URI' : 'path';
    const other = paths.get(location);
    if (other !== undefined) add(field, `'${location}' is also the ${what} of disks[${other}]`);
    else paths.set(location, i);
    if (disk.access === 'ro' && hv && NO_READ_ONLY_DISK_TYPES.has(hv.disk_type)) {
      add(
        `disks[${i}].access`,
        `a read-only disk cannot be attached with disk_type '${hv.disk_type}'; use paravirtual or scsi-hd`,
      );
    }
  });

  const macs = new Map<string, number>();
  spec.nics.forEach((nic, i) => {
    uuidField(`nics[${i}].uuid`, nic.uuid);
    if (!MAC_PATTERN.test(nic.mac)) {
      add(`nics[${i}].mac`, `'${nic.mac}' is not a MAC address (six ':'-separated hexadecimal octets)`);
    } else if (!isUnicastMac(nic.mac)) {
      add(`nics[${i}].mac`, `'${nic.mac}' is not a unicast MAC address (multicast bit set, or all zeros)`);
    } else {
      const key = nic.mac.toLowerCase();
      const other = macs.get(key);
      if (other !== undefined) add(`nics[${i}].mac`, `'${nic.mac}' is also the MAC of nics[${other}]`);
      else macs.set(key, i);
    }
    if (nic.model !== undefined && !(NIC_TYPES as readonly string[]).includes(nic.model)) {
      add(`nics[${i}].model`, `unknown NIC model '${nic.model}'; known: ${NIC_TYPES.join(', ')}`);
    }
    if (nic.network.type === 'tap' && !IFNAME_PATTERN.test(nic.network.ifname)) {
      add(`nics[${i}].network.ifname`, `'${nic.network.ifname}' is not a valid interface name`);
    }
  });

  if (hv?.boot_order === 'network' && !hv.kernel_path && spec.nics.length === 0) {
    add('hvparams.boot_order', "'network' needs at least one NIC");
  }
  if (hv?.disk_type === 'ide') {
    const cdroms = [hv.cdrom_image_path, hv.cdrom2_image_path].filter(Boolean).length;
    const ideCdroms = (hv.cdrom_disk_type || hv.disk_type) === 'ide' ? cdroms : 0;
    if (spec.disks.length + ideCdroms > 4) {
      add('disks', `${spec.disks.length} IDE disks and ${ideCdroms} IDE CD-ROMs: IDE has 4 units`);
    }
  }
  return problems;
}

/** Coerces and fills `spec.hvparams` over `defaults`; returns the filled set and its problems. */
function hvParamsOf(
  raw: Record<string, unknown> | undefined,
  defaults: Partial<KvmHvParams>,
): { filled?: KvmHvParams; problems: HvParamProblem[] } {
  let coerced: Record<string, unknown>;
  try {
    coerced = { ...defaults, ...coerceHvParams(raw ?? {}) };
  } catch (err) {
    if (err instanceof HvParamError) return { problems: err.problems };
    throw err;
  }
  const filled = fillHvParamDefaults(coerced);
  const problems = hvParamsSyntaxProblems(filled);
  return problems.length > 0 ? { problems } : { filled: filled as KvmHvParams, problems };
}

/**
 * Checks `spec` (any JSON value) and returns it typed, with `hvparams` coerced and filled
 * over `defaults` (cluster-level hvparams) and the registry defaults.
 * @throws InstanceSpecError listing every problem of the spec, hvparam problems included
 *   (as `hvparams.<key>`).
 * @throws HvParamError when only the hvparams are wrong.
 */
export function checkInstanceSpec(
  spec: unknown,
  defaults: Partial<KvmHvParams> = {},
): InstanceSpec & { hvparams: KvmHvParams } {
  const schema = schemaProblems(spec);
  if (schema.length > 0) throw new InstanceSpecError(schema);
  const typed = spec as InstanceSpec;
  const hv = hvParamsOf(typed.hvparams, defaults);
  const problems = semanticProblems(typed, hv.filled);
  if (problems.length > 0) {
    throw new InstanceSpecError([
      ...problems,
      ...hv.problems.map((p) => ({
        field: p.param ? `hvparams.${p.param}` : 'hvparams',
        message: p.message,
      })),
    ]);
  }
  if (hv.problems.length > 0 || !hv.filled) throw new HvParamError(hv.problems);
  return { ...structuredClone(typed), hvparams: hv.filled };
}
