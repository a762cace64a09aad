/**
 * The runtime's JSON form: written by {@link serializeRuntime}, read back (here or on a
 * migration target) by {@link parseRuntime}, which checks the format version, the schema
 * and that no two devices share an id, a PCI slot or a SCSI target.
 */
import { Value } from 'typebox/value';
import { HypervisorError } from '../errors.js';
import { type InstanceRuntime, InstanceRuntimeSchema, RUNTIME_FORMAT_VERSION } from './runtime-schema.js';

/** The runtime as JSON text (stable key order: the order of the schema). */
export function serializeRuntime(runtime: InstanceRuntime): string {
  return `${JSON.stringify(runtime, null, 2)}\n`;
}

/** A runtime text that is not a runtime this library can read. */
export class RuntimeFormatError extends HypervisorError {
  override name = 'RuntimeFormatError';
}

/**
 * Reads a runtime written by {@link serializeRuntime} (here or on another node).
 * @throws RuntimeFormatError for text that is not JSON, an unknown `formatVersion` (quoted),
 *   or a value the schema refuses (every problem listed).
 */
export function parseRuntime(text: string): InstanceRuntime {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text;
    throw new RuntimeFormatError(`instance runtime is not JSON: ${JSON.stringify(shown)}`, { cause });
  }
  const version = (value as { formatVersion?: unknown } | null)?.formatVersion;
  if (version !== RUNTIME_FORMAT_VERSION) {
    throw new RuntimeFormatError(
      `instance runtime has formatVersion ${JSON.stringify(version) ?? 'undefined'}; this library reads ${RUNTIME_FORMAT_VERSION}`,
    );
  }
  const errors = [...Value.Errors(InstanceRuntimeSchema, value)]
    .filter((e) => e.keyword !== 'boolean')
    .map((e) => `${e.instancePath || '/'}: ${e.message}`);
  if (errors.length > 0) {
    throw new RuntimeFormatError(
      `instance runtime does not match its schema: ${errors.slice(0, 20).join('; ')}`,
    );
  }
  const runtime = value as InstanceRuntime;
  const clashes = deviceClashes(runtime);
  if (clashes.length > 0) {
    throw new RuntimeFormatError(`instance runtime has clashing devices: ${clashes.join('; ')}`);
  }
  return runtime;
}

/** Two devices with one id, one PCI slot or one SCSI target: a runtime QEMU would refuse or misplace. */
function deviceClashes(runtime: InstanceRuntime): string[] {
  const seen = new Map<string, string>();
  const out: string[] = [];
  const claim = (key: string, who: string) => {
    const other = seen.get(key);
    if (other) out.push(`${who} and ${other} share ${key}`);
    else seen.set(key, who);
  };
  for (const d of [...runtime.disks, ...runtime.nics, ...runtime.cdroms]) {
    claim(`id ${d.id}`, d.id);
    if (d.bus.type === 'pci') claim(`PCI slot 0x${d.bus.slot.toString(16)}`, d.id);
    if (d.bus.type === 'scsi') claim(`SCSI target ${d.bus.target}`, d.id);
  }
  return out;
}
