/**
 * Machine types of QEMU builds other than upstream's, from recorded real output (see
 * test/fixtures/machine-types/README.md): Ubuntu's `-machine ?` (Ganeti's test data),
 * a RHEL rebuild's `-machine help` (Rocky Linux 9.8), libvirt's recorded `query-machines`
 * replies of QEMU 4.2 and 11.0, and the matrix releases' own `-machine help`. The PC and
 * Q35 families are recognised from what QEMU reports, the versioned name is pinned (never
 * the alias), and a runtime is refused on a target that lacks its machine type.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { HvParamError, UnrecognizedOutputError } from '../../src/errors.js';
import { renderArgv } from '../../src/instance/argv.js';
import type { QemuFeatures, QemuMachineType } from '../../src/instance/features.js';
import { parseMachineHelp, parseQueryMachines, withDescriptions } from '../../src/instance/features-parse.js';
import { machineFamily, pcMachineSuggestions } from '../../src/instance/machine-types.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import { FIXTURE_PATHS, RECORDED_RELEASES, recordedFeatures, recordedReplies } from './fixtures.js';
import { baseSpec } from './specs.js';

const DIR = fileURLToPath(new URL('../fixtures/machine-types/', import.meta.url));
const text = (name: string) => readFileSync(`${DIR}${name}`, 'utf8');
const queryMachines = (name: string) =>
  parseQueryMachines((JSON.parse(text(name)) as { return: unknown }).return);

/** Ubuntu 21.10's QEMU 6.0 (`kvm -machine ?`, Ganeti's test/data/kvm_6.0.0_machine.txt). */
const ubuntu = parseMachineHelp(text('ganeti-kvm_6.0.0_machine.txt'));
/** Rocky Linux 9.8's `/usr/libexec/qemu-kvm -machine help`. */
const rhel = parseMachineHelp(text('rocky-9.8-qemu-kvm-machine-help.txt'));
/** libvirt's recorded `query-machines` of upstream QEMU 4.2.0 and 11.0.0. */
const qmp42 = queryMachines('libvirt-caps_4.2.0_x86_64.query-machines.json');
const qmp110 = queryMachines('libvirt-caps_11.0.0_x86_64.query-machines.json');

/**
 * A QEMU whose machine types are `machines` (recorded elsewhere); everything else is the
 * host release's recorded probe, so the argv renderer has real devices and options.
 */
function withMachines(machines: QemuMachineType[], binary: string): QemuFeatures {
  return { ...recordedFeatures('7.2'), binary, machines };
}
const ubuntuQemu = withMachines(ubuntu, '/usr/bin/kvm');
const rhelQemu = withMachines(rhel, '/usr/libexec/qemu-kvm');

const byName = (list: QemuMachineType[], name: string) => list.find((m) => m.name === name);
const spec = (machine_version: string) => baseSpec({ hvparams: { kernel_path: '', machine_version } });
const problemsOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof HvParamError) return e.problems;
    throw e;
  }
  throw new Error('expected an HvParamError');
};

describe('-machine help / -machine ? text', () => {
  it("reads Ubuntu's list: codename types, -hpb variants, aliases ubuntu and ubuntu-q35, the default", () => {
    // 96 lines: the header, 4 alias lines, 91 machine types.
    expect(ubuntu).toHaveLength(91);
    expect(ubuntu.filter((m) => m.isDefault)).toEqual([
      {
        name: 'pc-i440fx-impish',
        alias: 'ubuntu',
        isDefault: true,
        deprecated: false,
        description: 'Ubuntu 21.10 PC (i440FX + PIIX, 1996)',
      },
    ]);
    expect(
      Object.fromEntries(ubuntu.filter((m) => m.alias !== undefined).map((m) => [m.alias, m.name])),
    ).toEqual({
      ubuntu: 'pc-i440fx-impish',
      'ubuntu-q35': 'pc-q35-impish',
      pc: 'pc-i440fx-6.0',
      q35: 'pc-q35-6.0',
    });
    expect(byName(ubuntu, 'pc-i440fx-bionic-hpb')?.description).toBe(
      'Ubuntu 18.04 PC (i440FX + PIIX, +host-phys-bits=true, 1996)',
    );
    // A name of 21 characters is followed by one space only.
    expect(byName(ubuntu, 'pc-i440fx-hirsute-hpb')?.description).toBe(
      'Ubuntu 21.04 PC (i440FX + PIIX +host-phys-bits=true, 1996)',
    );
    expect(byName(ubuntu, 'microvm')?.description).toBe('microvm (i386)');
  });

  it("reads a RHEL rebuild's list: rhel-versioned types, (default) (deprecated) together", () => {
    // 18 lines: the header, 2 alias lines, 15 machine types.
    expect(rhel).toHaveLength(15);
    expect(byName(rhel, 'pc-i440fx-rhel7.6.0')).toEqual({
      name: 'pc-i440fx-rhel7.6.0',
      alias: 'pc',
      isDefault: true,
      deprecated: true,
      description: 'RHEL 7.6.0 PC (i440FX + PIIX, 1996)',
    });
    expect(byName(rhel, 'pc-q35-rhel9.8.0')).toMatchObject({
      alias: 'q35',
      isDefault: false,
      deprecated: false,
    });
    expect(rhel.filter((m) => m.deprecated).map((m) => m.name)).toEqual([
      'pc-i440fx-rhel7.6.0',
      'pc-q35-rhel7.6.0',
      'pc-q35-rhel8.0.0',
      'pc-q35-rhel8.1.0',
      'pc-q35-rhel8.2.0',
      'pc-q35-rhel8.3.0',
      'pc-q35-rhel8.4.0',
      'pc-q35-rhel8.5.0',
      'pc-q35-rhel8.6.0',
    ]);
  });

  it.each(RECORDED_RELEASES)(
    'QEMU %s: the recorded -machine help lists what query-machines lists',
    (release) => {
      const replies = recordedReplies(release);
      const help = parseMachineHelp(replies.machineHelp!);
      const qmp = parseQueryMachines(replies.machines);
      const strip = (list: QemuMachineType[]) =>
        list.map(({ name, alias, isDefault, deprecated }) => ({ name, alias, isDefault, deprecated }));
      expect(strip(help)).toEqual(strip(qmp));
      expect(recordedFeatures(release).machines).toEqual(withDescriptions(qmp, help));
    },
  );

  it('refuses text that is not a machine list, quoting it', () => {
    const bad: Array<[string, RegExp]> = [
      [
        'qemu-system-x86_64: -machine help: invalid option',
        /unrecognised output of '-machine help'.*invalid option/,
      ],
      ['Supported machines are:\n', /unrecognised output of '-machine help'/],
      ['Supported machines are:\npc-i440fx-9.2\n', /unrecognised line of '-machine help': "pc-i440fx-9.2"/],
      [
        'Supported machines are:\npc  Standard PC (alias of pc-i440fx-9.9)\npc-i440fx-9.2  Standard PC\n',
        /alias line.*pc-i440fx-9\.9/,
      ],
      ['Supported machines are:\nisapc  ISA-only PC\nisapc  ISA-only PC\n', /repeated line.*isapc/],
    ];
    for (const [input, message] of bad) {
      expect(() => parseMachineHelp(input)).toThrow(UnrecognizedOutputError);
      expect(() => parseMachineHelp(input)).toThrow(message);
    }
  });
});

describe('machine families', () => {
  const prefixed = (list: QemuMachineType[]) =>
    list.filter((m) => m.name.startsWith('pc-i440fx-') || m.name.startsWith('pc-q35-'));

  const lists: Array<[string, QemuMachineType[]]> = [
    ['Ubuntu 6.0', ubuntu],
    ['RHEL 9.8', rhel],
    ...RECORDED_RELEASES.map((r): [string, QemuMachineType[]] => [`QEMU ${r}`, recordedFeatures(r).machines]),
  ];
  it.each(lists)('%s: the description names the chipset the name prefix says', (_label, list) => {
    const named = prefixed(list);
    expect(named.length).toBeGreaterThan(10);
    for (const m of named) {
      const expected = m.name.startsWith('pc-q35-') ? 'q35' : 'i440fx';
      expect(machineFamily(m)).toBe(expected);
      expect(machineFamily({ name: m.name })).toBe(expected);
    }
  });

  it('QEMU 5.2: the pre-1.4 names pc-1.0 … pc-1.3 are i440FX by their description, Xen and ISA machines are not PCs', () => {
    const machines = recordedFeatures('5.2').machines;
    for (const name of ['pc-1.0', 'pc-1.1', 'pc-1.2', 'pc-1.3']) {
      expect(machineFamily(byName(machines, name)!)).toBe('i440fx');
    }
    for (const name of ['xenfv', 'xenfv-4.2', 'xenpv', 'isapc', 'microvm', 'none']) {
      const m = byName(machines, name) ?? byName(machines, 'xenfv-3.1');
      expect(machineFamily(m!)).toBeUndefined();
    }
  });

  it('query-machines alone (libvirt 4.2): versioned PC names recognised, pc-1.3 not (no description)', () => {
    expect(qmp42.filter((m) => m.isDefault)).toEqual([
      { name: 'pc-i440fx-4.2', alias: 'pc', isDefault: true, deprecated: false },
    ]);
    expect(machineFamily(byName(qmp42, 'pc-q35-4.0.1')!)).toBe('q35');
    expect(machineFamily(byName(qmp42, 'pc-i440fx-1.4')!)).toBe('i440fx');
    expect(machineFamily(byName(qmp42, 'pc-1.3')!)).toBeUndefined();
    expect(qmp42.filter((m) => machineFamily(m) === undefined).map((m) => m.name)).toEqual([
      'isapc',
      'microvm',
      'none',
      'pc-0.12',
      'pc-0.13',
      'pc-0.14',
      'pc-0.15',
      'pc-1.0',
      'pc-1.1',
      'pc-1.2',
      'pc-1.3',
    ]);
  });

  it('suggests the aliased and default PC machines', () => {
    expect(pcMachineSuggestions(ubuntu)).toEqual([
      'pc-i440fx-6.0',
      'pc-i440fx-impish',
      'pc-q35-6.0',
      'pc-q35-impish',
    ]);
    expect(pcMachineSuggestions(rhel)).toEqual(['pc-i440fx-rhel7.6.0', 'pc-q35-rhel9.8.0']);
    expect(pcMachineSuggestions(qmp110)).toEqual(['pc-i440fx-11.0', 'pc-q35-11.0']);
  });
});

describe('resolving the machine type on distribution builds', () => {
  it.each([
    ['', 'pc-i440fx-impish', 'pci.0'],
    ['ubuntu', 'pc-i440fx-impish', 'pci.0'],
    ['ubuntu-q35', 'pc-q35-impish', 'pcie.0'],
    ['pc-i440fx-impish', 'pc-i440fx-impish', 'pci.0'],
    ['pc-i440fx-bionic-hpb', 'pc-i440fx-bionic-hpb', 'pci.0'],
    ['pc', 'pc-i440fx-6.0', 'pci.0'],
    ['q35', 'pc-q35-6.0', 'pcie.0'],
    ['pc-q35-4.0.1', 'pc-q35-4.0.1', 'pcie.0'],
  ])('Ubuntu: machine_version %j pins %s (%s)', (wanted, type, pciBus) => {
    const runtime = resolveRuntime(spec(wanted), ubuntuQemu);
    expect(runtime.machine).toEqual({ type, pciBus });
    const argv = renderArgv(runtime, ubuntuQemu, { paths: FIXTURE_PATHS('web1'), accel: 'kvm' });
    expect(argv[0]).toBe('/usr/bin/kvm');
    expect(argv.join(' ')).toContain(`-machine ${type} `);
  });

  it.each([
    ['', 'pc-i440fx-rhel7.6.0', 'pci.0'],
    ['pc', 'pc-i440fx-rhel7.6.0', 'pci.0'],
    ['q35', 'pc-q35-rhel9.8.0', 'pcie.0'],
    ['pc-q35-rhel9.4.0', 'pc-q35-rhel9.4.0', 'pcie.0'],
    ['pc-q35-rhel8.6.0', 'pc-q35-rhel8.6.0', 'pcie.0'],
  ])('RHEL: machine_version %j pins %s (%s)', (wanted, type, pciBus) => {
    const runtime = resolveRuntime(spec(wanted), rhelQemu);
    expect(runtime.machine).toEqual({ type, pciBus });
    const argv = renderArgv(runtime, rhelQemu, { paths: FIXTURE_PATHS('web1'), accel: 'kvm' }).join(' ');
    expect(argv).toContain(`-machine ${type} `);
    // Q35 devices sit on pcie.0 from Ganeti's first slot.
    expect(argv).toContain(`bus=${pciBus},addr=0xc,drive=disk-932df160-7a22-4067`);
  });

  it('upstream QEMU 11.0 (libvirt): q35 pins pc-q35-11.0', () => {
    const q = withMachines(qmp110, '/usr/bin/qemu-system-x86_64');
    expect(resolveRuntime(spec(''), q).machine).toEqual({ type: 'pc-i440fx-11.0', pciBus: 'pci.0' });
    expect(resolveRuntime(spec('q35'), q).machine).toEqual({ type: 'pc-q35-11.0', pciBus: 'pcie.0' });
  });

  it.each([
    [
      'isapc',
      /machine type 'isapc' of QEMU .* is not an i440FX or Q35 PC \(QEMU describes it as 'ISA-only PC'\)/,
    ],
    ['microvm', /'microvm'.*is not an i440FX or Q35 PC \(QEMU describes it as 'microvm \(i386\)'\)/],
    ['x-remote', /'x-remote'.*not an i440FX or Q35 PC/],
    ['pc-i440fx-jammy', /has no machine type 'pc-i440fx-jammy'/],
  ])('Ubuntu: machine_version %j is refused, naming machine_version and the value', (wanted, message) => {
    const problems = problemsOf(() => resolveRuntime(spec(wanted), ubuntuQemu));
    expect(problems).toHaveLength(1);
    expect(problems[0]!.param).toBe('machine_version');
    expect(problems[0]!.message).toMatch(message);
  });

  it('a machine the device model cannot use names the PC machines this QEMU has', () => {
    const [p] = problemsOf(() => resolveRuntime(spec('none'), rhelQemu));
    expect(p!.message).toMatch(
      /'none'.*QEMU describes it as 'empty machine'.*this QEMU has pc-i440fx-rhel7\.6\.0, pc-q35-rhel9\.8\.0/,
    );
    // query-machines only (no descriptions): pc-1.3 of QEMU 4.2 is not known to be a PC.
    const [old] = problemsOf(() => resolveRuntime(spec('pc-1.3'), withMachines(qmp42, '/usr/bin/kvm')));
    expect(old!.message).toMatch(
      /'pc-1\.3'.*not an i440FX or Q35 PC: the device model needs one; this QEMU has pc-i440fx-4\.2, pc-q35-4\.2/,
    );
  });

  it('QEMU 5.2 with its -machine help: pc-1.3 is an i440FX PC and resolves', () => {
    expect(resolveRuntime(spec('pc-1.3'), recordedFeatures('5.2')).machine).toEqual({
      type: 'pc-1.3',
      pciBus: 'pci.0',
    });
  });
});

describe('a runtime rendered on another build refuses a machine type the target lacks', () => {
  const render = (runtimeOn: QemuFeatures, wanted: string, target: QemuFeatures) => {
    const runtime = resolveRuntime(spec(wanted), runtimeOn);
    return () => renderArgv(runtime, target, { paths: FIXTURE_PATHS('web1'), accel: 'kvm' });
  };

  it.each([
    ['Ubuntu 6.0 → QEMU 11.1', ubuntuQemu, '', recordedFeatures('11.1'), 'pc-i440fx-impish'],
    ['RHEL 9.8 → Ubuntu 6.0', rhelQemu, 'q35', ubuntuQemu, 'pc-q35-rhel9.8.0'],
    ['Ubuntu 6.0 → RHEL 9.8', ubuntuQemu, 'pc', rhelQemu, 'pc-i440fx-6.0'],
    [
      'QEMU 4.2 → QEMU 11.0 (4.2 types removed)',
      withMachines(qmp42, '/usr/bin/kvm'),
      '',
      withMachines(qmp110, '/usr/bin/kvm'),
      'pc-i440fx-4.2',
    ],
    ['QEMU 11.1 → QEMU 5.2', recordedFeatures('11.1'), 'q35', recordedFeatures('5.2'), 'pc-q35-11.1'],
  ])('%s: refused before anything starts', (_label, source, wanted, target, type) => {
    const problems = problemsOf(render(source, wanted, target));
    expect(problems.map((p) => p.param)).toEqual(['machine_version']);
    expect(problems[0]!.message).toContain(`has no machine type '${type}' (the instance's pinned machine)`);
  });

  it.each([
    ['QEMU 5.2 → Ubuntu 6.0', recordedFeatures('5.2'), '', ubuntuQemu, 'pc-i440fx-5.2'],
    ['QEMU 4.2 → Ubuntu 6.0', withMachines(qmp42, '/usr/bin/kvm'), 'q35', ubuntuQemu, 'pc-q35-4.2'],
    [
      'QEMU 11.0 → QEMU 11.1',
      withMachines(qmp110, '/usr/bin/kvm'),
      '',
      recordedFeatures('11.1'),
      'pc-i440fx-11.0',
    ],
  ])('%s: the target has the type and renders it', (_label, source, wanted, target, type) => {
    expect(render(source, wanted, target)().join(' ')).toContain(`-machine ${type} `);
  });
});
