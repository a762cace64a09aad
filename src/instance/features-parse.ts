/**
 * Pure readers of what a QEMU feature probe gets back: QMP replies (`query-version`,
 * `query-machines`, `qom-list-types`, `query-commands`, `query-cpu-definitions`) and the
 * option names of `-help`. Text or JSON in, values out; anything unexpected is an
 * {@link UnrecognizedOutputError} quoting it, never a default.
 */
import { UnrecognizedOutputError } from '../errors.js';
import type { QemuVersion } from '../qemu/version.js';

/** One machine type, as `query-machines` or `-machine help` reports it. */
export interface QemuMachineType {
  /**
   * The name QEMU gives it: versioned for the PC families (`pc-i440fx-7.2`, Ubuntu's
   * `pc-q35-noble`, RHEL's `pc-q35-rhel9.4.0`), plain for the others (`isapc`, `microvm`).
   */
  name: string;
  /** Alias QEMU accepts for it (`pc`, `q35`, Ubuntu's `ubuntu`, `ubuntu-q35`), if any. */
  alias?: string;
  /** True for the machine QEMU uses without `-machine`. */
  isDefault: boolean;
  /** True when QEMU marks it deprecated. */
  deprecated: boolean;
  /**
   * QEMU's description (`Standard PC (i440FX + PIIX, 1996)`, `RHEL-9.4.0 PC (Q35 + ICH9,
   * 2009)`): only `-machine help` prints it; absent when only `query-machines` was read.
   */
  description?: string;
}

/**
 * The device types a probe asks about: every driver an hvparam can select (NIC and disk
 * models, SCSI controllers, CD-ROM/floppy, USB, VGA, sound, guest-agent and SPICE channels).
 * `lsi` is QEMU's alias of `lsi53c895a`, `virtio-balloon` of `virtio-balloon-pci`.
 */
export const PROBED_DEVICES: readonly string[] = [
  'AC97',
  'ES1370',
  'VGA',
  'adlib',
  'bochs-display',
  'cirrus-vga',
  'cs4231a',
  'dc390',
  'e1000',
  'floppy',
  'gus',
  'hda-duplex',
  'i82551',
  'i82557b',
  'i82559er',
  'ide-cd',
  'ide-hd',
  'intel-hda',
  'isa-fdc',
  'lsi53c895a',
  'megasas',
  'ne2k_isa',
  'ne2k_pci',
  'pcnet',
  'piix3-usb-uhci',
  'qemu-xhci',
  'qxl-vga',
  'rtl8139',
  'sb16',
  'scsi-block',
  'scsi-cd',
  'scsi-generic',
  'scsi-hd',
  'usb-host',
  'usb-kbd',
  'usb-mouse',
  'usb-tablet',
  'virtio-balloon-pci',
  'virtio-blk-pci',
  'virtio-net-pci',
  'virtio-scsi-pci',
  'virtio-serial-pci',
  'virtio-vga',
  'virtserialport',
  'vmware-svga',
];

/** Accelerators a probe asks about (`qom-list-properties <name>-accel`). */
export const PROBED_ACCELERATORS: readonly string[] = ['kvm', 'tcg'];

/** The raw replies a probe collects, keyed by what was asked. Recorded as fixtures. */
export interface QemuProbeReplies {
  /** `return` of `query-version`. */
  version: unknown;
  /** `return` of `query-machines`. */
  machines: unknown;
  /**
   * Per device type of {@link PROBED_DEVICES}: the whole reply message of
   * `device-list-properties` (`{return: [...]}` or `{error: {class: 'DeviceNotFound'}}`).
   * One type at a time: listing all types (`qom-list-types`) loads every module, and one
   * broken module aborts QEMU.
   */
  devices: Record<string, unknown>;
  /** Per accelerator (`kvm`, `tcg`): the reply message of `qom-list-properties <name>-accel`. */
  accelerators: Record<string, unknown>;
  /** `return` of `query-commands`. */
  commands: unknown;
  /** `return` of `query-cpu-definitions` (x86: available with `-machine none`). */
  cpuDefinitions: unknown;
  /** Text of `<binary> -help`. */
  help: string;
  /**
   * Text of `<binary> -machine help`: the machine types' descriptions, which name the
   * chipset (`i440FX + PIIX`, `Q35 + ICH9`). Absent in probes recorded before it was asked.
   */
  machineHelp?: string;
}

function unrecognized(command: string, value: unknown): UnrecognizedOutputError {
  return new UnrecognizedOutputError(command, JSON.stringify(value) ?? String(value), 'reply');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads `query-version`'s `{qemu: {major, minor, micro}, package}`. */
export function parseQueryVersion(reply: unknown): { version: QemuVersion; package: string } {
  const q = isRecord(reply) ? reply.qemu : undefined;
  if (
    !isRecord(q) ||
    !Number.isInteger(q.major) ||
    !Number.isInteger(q.minor) ||
    !Number.isInteger(q.micro) ||
    !isRecord(reply) ||
    typeof reply.package !== 'string'
  ) {
    throw unrecognized('query-version', reply);
  }
  return {
    version: { major: q.major as number, minor: q.minor as number, micro: q.micro as number },
    package: reply.package.trim(),
  };
}

/** Reads `query-machines`, sorted by name (QEMU lists them in hash order). */
export function parseQueryMachines(reply: unknown): QemuMachineType[] {
  if (!Array.isArray(reply)) throw unrecognized('query-machines', reply);
  const out = reply.map((m): QemuMachineType => {
    if (
      !isRecord(m) ||
      typeof m.name !== 'string' ||
      (m.alias !== undefined && typeof m.alias !== 'string') ||
      (m['is-default'] !== undefined && typeof m['is-default'] !== 'boolean') ||
      (m.deprecated !== undefined && typeof m.deprecated !== 'boolean')
    ) {
      throw unrecognized('query-machines', m);
    }
    return {
      name: m.name,
      ...(typeof m.alias === 'string' ? { alias: m.alias } : {}),
      isDefault: m['is-default'] === true,
      deprecated: m.deprecated === true,
    };
  });
  return out.sort((a, b) => compareText(a.name, b.name));
}

/** `-machine help`'s first line (`-machine ?` prints the same). */
const MACHINE_HELP_HEADER = 'Supported machines are:';

/**
 * Reads the text of `-machine help` (or `-machine ?`, what Ganeti reads): after the header,
 * one line per machine type, `<name> <description>[ (default)][ (deprecated)]`, and for an
 * alias a line `<alias> <description> (alias of <name>)` (before or after its machine's
 * line, depending on the release). Sorted by name like {@link parseQueryMachines}.
 * @throws UnrecognizedOutputError quoting the text when the header is missing, a line is
 *   not `<name> <description>`, a name appears twice, or an alias names a machine that is
 *   not listed.
 */
export function parseMachineHelp(text: string): QemuMachineType[] {
  const command = '-machine help';
  const lines = text.split('\n').map((l) => l.trimEnd());
  const start = lines.findIndex((l) => l.trim() === MACHINE_HELP_HEADER);
  if (start < 0) throw new UnrecognizedOutputError(command, text);
  const machines = new Map<string, QemuMachineType>();
  const aliases: Array<[alias: string, target: string, line: string]> = [];
  for (const line of lines.slice(start + 1)) {
    if (line === '') continue;
    const m = /^(\S+) +(\S.*)$/.exec(line);
    if (!m) throw new UnrecognizedOutputError(command, line, 'line');
    const name = m[1]!;
    let rest = m[2]!;
    const alias = / \(alias of (\S+)\)$/.exec(rest);
    if (alias) {
      aliases.push([name, alias[1]!, line]);
      continue;
    }
    let isDefault = false;
    let deprecated = false;
    for (;;) {
      if (rest.endsWith(' (deprecated)')) {
        deprecated = true;
        rest = rest.slice(0, -' (deprecated)'.length);
      } else if (rest.endsWith(' (default)')) {
        isDefault = true;
        rest = rest.slice(0, -' (default)'.length);
      } else break;
    }
    if (machines.has(name)) throw new UnrecognizedOutputError(command, line, 'repeated line');
    machines.set(name, { name, isDefault, deprecated, description: rest });
  }
  for (const [alias, target, line] of aliases) {
    const machine = machines.get(target);
    if (!machine || machine.alias !== undefined) {
      throw new UnrecognizedOutputError(command, line, 'alias line');
    }
    machine.alias = alias;
  }
  if (machines.size === 0) throw new UnrecognizedOutputError(command, text);
  return [...machines.values()]
    .map(({ name, alias, isDefault, deprecated, description }) => ({
      name,
      ...(alias === undefined ? {} : { alias }),
      isDefault,
      deprecated,
      ...(description === undefined ? {} : { description }),
    }))
    .sort((a, b) => compareText(a.name, b.name));
}

/**
 * `query-machines`' list with each machine's description from `-machine help` (the same
 * binary's), matched by name. A machine the help text does not list keeps no description.
 */
export function withDescriptions(machines: QemuMachineType[], help: QemuMachineType[]): QemuMachineType[] {
  const byName = new Map(help.map((m) => [m.name, m.description]));
  return machines.map((m) => {
    const description = byName.get(m.name);
    return description === undefined ? m : { ...m, description };
  });
}

/**
 * The device types (and their property names) QEMU acknowledged: keys of `replies` whose
 * message is a `return` list; a `DeviceNotFound` error means "not built in".
 * @throws UnrecognizedOutputError for any other message.
 */
export function parseTypeProbes(command: string, replies: Record<string, unknown>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const name of Object.keys(replies).sort(compareText)) {
    const msg = replies[name];
    if (isRecord(msg) && Array.isArray(msg.return)) {
      out[name] = msg.return
        .map((p) => {
          if (!isRecord(p) || typeof p.name !== 'string') throw unrecognized(`${command} ${name}`, msg);
          return p.name;
        })
        .sort(compareText);
    } else if (!(isRecord(msg) && isRecord(msg.error) && msg.error.class === 'DeviceNotFound')) {
      throw unrecognized(`${command} ${name}`, msg);
    }
  }
  return out;
}

/** Reads `query-commands` (`[{name}]`) into sorted command names. */
export function parseQueryCommands(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw unrecognized('query-commands', reply);
  return reply
    .map((c) => {
      if (!isRecord(c) || typeof c.name !== 'string') throw unrecognized('query-commands', c);
      return c.name;
    })
    .sort(compareText);
}

/** Reads `query-cpu-definitions` into sorted CPU model names (`qemu64`, `host`, `Skylake-Server`, …). */
export function parseCpuDefinitions(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw unrecognized('query-cpu-definitions', reply);
  return reply
    .map((c) => {
      if (!isRecord(c) || typeof c.name !== 'string') throw unrecognized('query-cpu-definitions', c);
      return c.name;
    })
    .sort(compareText);
}

/**
 * The option names `-help` lists (`-no-acpi`, `-run-with`, …), without the dash, sorted.
 * Only the first token of lines that start with `-` counts, so a change in the layout of
 * the descriptions (QEMU 10.2 made `-run-with`'s multi-line) does not matter.
 * @throws UnrecognizedOutputError when the text has no `-machine` line (not QEMU's help).
 */
export function parseHelpOptions(text: string): string[] {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^-([a-zA-Z][\w-]*)(?:\s|$)/.exec(line);
    if (m) names.add(m[1]!);
  }
  if (!names.has('machine') || !names.has('m')) throw new UnrecognizedOutputError('-help', text);
  return [...names].sort(compareText);
}

/** Code-unit order: the same on every machine (no locale). */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * The keys `-run-with` takes (`async-teardown`, `chroot`, `user`, …), read from its `-help`
 * entry (synopsis and description, which QEMU 10.2 spread over several lines); empty when
 * the option does not exist.
 */
export function parseRunWithKeys(text: string): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^-run-with(?:\s|$)/.test(l));
  if (start < 0) return [];
  const keys = new Set<string>();
  for (let i = start; i < lines.length && (i === start || !lines[i]!.startsWith('-')); i++) {
    for (const m of lines[i]!.matchAll(/(?:^|[\s[,])([a-z][a-z-]*)=/g)) keys.add(m[1]!);
  }
  return [...keys].sort(compareText);
}
