/**
 * `kvm-hv` through the built binary, without QEMU: help, usage errors, the `params`
 * command and its exit codes.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { HV_PARAMETER_NAMES } from '../../src/hvparams/index.js';
import { KVMHypervisor } from '../../src/kvm.js';
import { ensureBuilt, run } from './helpers.js';

beforeAll(ensureBuilt, 120_000);

const parse = (text: string) => JSON.parse(text) as Record<string, unknown>;

describe('kvm-hv help and usage', () => {
  it.each(['params', 'accept', 'migrate', 'status', 'cancel', 'demo'])(
    '%s --help exits 0 with usage',
    async (cmd) => {
      const r = await run([cmd, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: kvm-hv ${cmd}`);
      expect(r.stderr).toBe('');
    },
  );

  it('lists every command in the top-level help', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const cmd of ['params', 'accept', 'migrate', 'status', 'cancel', 'resume', 'demo'])
      expect(r.stdout).toContain(cmd);
  });

  it('prints the version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it.each([
    [['params', '--bogus'], /^kvm-hv: unknown option '--bogus' \(see --help\)\n$/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['migrate', '--qmp', 'x.qmp'], /required option '--target <host>' not specified/],
    [['demo', '--rate', 'fast'], /--rate must be a number >= 0, got 'fast'/],
    [['demo', '--memory', '64.5'], /--memory must be an integer > 0/],
    [['migrate', '--qmp', 'x', '--target', 'h', '--timeout', '0'], /--timeout must be a number > 0/],
    [['demo', '--dirty', '200'], /--dirty 200 MiB does not fit in --memory 128 MiB/],
    [['status'], /a monitor socket is required: --qmp SOCKET or --hmp SOCKET/],
    [['status', '--qmp', 'a', '--hmp', 'b'], /either --qmp or --hmp, not both/],
    [['--log-level', 'loud', 'params'], /argument 'loud' is invalid/],
    [['accept', '--qmp', 'x.qmp', '--timeout', '5'], /--timeout needs --wait/],
  ])('%j exits 2 with a one-line reason', async (args, re) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('exits 1 with the socket in the reason when the monitor socket does not exist', async () => {
    const r = await run(['status', '--qmp', '/nonexistent/vm.qmp']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^kvm-hv: .*\/nonexistent\/vm\.qmp/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('kvm-hv params', () => {
  it('shows every parameter with its default, and marks those given with -H', async () => {
    const r = await run(['params', '-H', 'kvm:migration_bandwidth=64,acpi']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(HV_PARAMETER_NAMES.length);
    expect(lines).toContainEqual(expect.stringMatching(/^\* migration_bandwidth +64$/));
    expect(lines).toContainEqual(expect.stringMatching(/^\* acpi +true$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}migration_port +8102$/));
    expect(lines).toContainEqual(expect.stringMatching(/^ {2}cdrom_image_path +""$/));
  });

  it('--json gives the filled parameters, coerced to their types', async () => {
    const r = await run([
      'params',
      '--json',
      '-H',
      'kvm:migration_bandwidth=64',
      '-H',
      'kvm:migration_downtime=50',
    ]);
    expect(r.code).toBe(0);
    const doc = parse(r.stdout);
    expect(doc).toEqual(KVMHypervisor.fillDefaults({ migration_bandwidth: 64, migration_downtime: 50 }));
    expect(doc.migration_bandwidth).toBe(64);
  });

  it('--check passes on valid input and lists warnings', async () => {
    const r = await run(['params', '--check']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^hvparams OK: \d+ parameters checked\n/);
    expect(r.stdout).toMatch(/^warning: migration_bandwidth/m);
  });

  it('--check --json gives ok, the warnings and the parameters', async () => {
    const r = await run(['params', '--check', '--json', '-H', 'kvm:migration_bandwidth=1000']);
    expect(r.code).toBe(0);
    const doc = parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(Array.isArray(doc.warnings)).toBe(true);
    expect((doc.warnings as string[]).some((w) => w.startsWith('migration_bandwidth'))).toBe(false);
    expect((doc.hvparams as Record<string, unknown>).migration_bandwidth).toBe(1000);
  });

  it('--check lists every problem and exits 2', async () => {
    const r = await run(['params', '--check', '-H', 'kvm:migration_bandwidth=-1,boot_order=floppyx']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe('kvm-hv: invalid hypervisor parameters (2 problems):');
    expect(lines.slice(1)).toEqual([
      expect.stringMatching(/^ {2}- boot_order: .*floppyx/),
      expect.stringMatching(/^ {2}- migration_bandwidth: .*negative/),
    ]);
  });

  it('reports values that cannot be coerced and unknown keys, with exit 2, also without --check', async () => {
    const r = await run(['params', '-H', 'kvm:nosuchkey=1,migration_bandwidth=abc']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("- nosuchkey: Unknown parameter 'nosuchkey'");
    expect(r.stderr).toContain('- migration_bandwidth:');
  });

  it('with --json, a failure is also one JSON document on stdout', async () => {
    const r = await run(['params', '--check', '--json', '-H', 'kvm:migration_downtime=-5']);
    expect(r.code).toBe(2);
    const doc = parse(r.stdout);
    expect(doc).toMatchObject({ ok: false, exitCode: 2, error: { name: 'HvParamError' } });
    expect((doc.error as { problems: { param: string }[] }).problems.map((p) => p.param)).toEqual([
      'migration_downtime',
    ]);
  });

  it.each([
    [['-H', 'xen:foo'], /only the 'kvm' hypervisor is supported, got 'xen'/],
    [['-H', 'kvm:a,a'], /Key 'a' is given twice/],
    [['-H', ':x'], /hypervisor name is empty/],
  ])('rejects a malformed -H %j with exit 2', async (args, re) => {
    const r = await run(['params', ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(re);
  });

  it('--schema prints the JSON Schema', async () => {
    const r = await run(['params', '--schema']);
    expect(r.code).toBe(0);
    const schema = parse(r.stdout);
    expect(schema).toEqual(KVMHypervisor.jsonSchema());
    expect(Object.keys(schema.properties as object)).toHaveLength(HV_PARAMETER_NAMES.length);
  });

  it('--schema refuses -H', async () => {
    const r = await run(['params', '--schema', '-H', 'kvm:acpi']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--schema takes no -H/);
  });
});
