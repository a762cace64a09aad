import { describe, expect, it } from 'vitest';
import { HvParamError } from '../../src/errors.js';
import { chooseAccelerator, type LaunchContext, renderArgv } from '../../src/instance/argv.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import { ARGV_CASES, type ArgvCase, HVPARAM_ARGV_CASES } from './argv-cases.js';
import { FIXTURE_PATHS, RECORDED_RELEASES, recordedFeatures } from './fixtures.js';

/** The argv of `c` on `release`, or the error it gives, as golden text. */
function render(c: ArgvCase, release: string): string {
  const features = recordedFeatures(release);
  try {
    const runtime = resolveRuntime(c.spec, features);
    const ctx: LaunchContext = {
      paths: FIXTURE_PATHS(c.spec.name),
      accel: chooseAccelerator(runtime.hvparams, true),
      ...c.ctx,
    };
    const argv = renderArgv(runtime, features, ctx);
    return argv
      .map((a, i) => (i > 0 && a.startsWith('-') ? `\n  ${a}` : ` ${a}`))
      .join('')
      .trim();
  } catch (err) {
    if (err instanceof HvParamError) return `HvParamError: ${err.message}`;
    throw err;
  }
}

describe('argv golden files', () => {
  it.each(RECORDED_RELEASES)('QEMU %s', async (release) => {
    const text = [...ARGV_CASES, ...HVPARAM_ARGV_CASES]
      .map((c) => `## ${c.name}\n${render(c, release)}\n`)
      .join('\n');
    await expect(text).toMatchFileSnapshot(`../fixtures/argv/qemu-${release}.txt`);
  });
});

describe('renderArgv', () => {
  const f = recordedFeatures('11.1');
  const paths = FIXTURE_PATHS('web1');

  it('starts paused with QMP and HMP sockets, a pidfile, no -daemonize, one -accel', () => {
    const argv = renderArgv(resolveRuntime(ARGV_CASES[0]!.spec, f), f, { paths, accel: 'kvm' });
    expect(argv[0]).toBe(f.binary);
    expect(argv).toContain('-S');
    expect(argv).not.toContain('-daemonize');
    expect(argv.join(' ')).toContain(`-qmp unix:${paths.qmp},server=on,wait=off`);
    expect(argv.join(' ')).toContain(`-monitor unix:${paths.hmp},server=on,wait=off`);
    expect(argv.join(' ')).toContain(`-pidfile ${paths.pidfile}`);
    expect(argv.filter((a) => a === '-accel')).toHaveLength(1);
    expect(argv[argv.indexOf('-accel') + 1]).toBe('kvm');
    expect(argv.join(' ')).not.toMatch(/accel=/);
  });

  it('leaves -S out only when asked (a destination that runs once loaded)', () => {
    const runtime = resolveRuntime(ARGV_CASES[0]!.spec, f);
    expect(renderArgv(runtime, f, { paths, accel: 'tcg', incoming: 'defer', paused: false })).not.toContain(
      '-S',
    );
    expect(renderArgv(runtime, f, { paths, accel: 'tcg', incoming: 'defer' })).toContain('-S');
  });

  it('refuses vhost where the node says /dev/vhost-net is unusable', () => {
    const spec = {
      ...ARGV_CASES[0]!.spec,
      nics: [
        {
          uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396',
          mac: 'aa:00:00:12:34:56',
          network: { type: 'tap' as const, ifname: 'tap0' },
        },
      ],
    };
    const runtime = resolveRuntime(spec, f);
    expect(() => renderArgv(runtime, f, { paths, accel: 'tcg', vhostNet: false })).toThrow(/vhost_net/);
    expect(renderArgv(runtime, f, { paths, accel: 'tcg', vhostNet: true }).join(' ')).toContain('vhost=on');
  });

  it('renders -no-shutdown only when asked', () => {
    const runtime = resolveRuntime(ARGV_CASES[0]!.spec, f);
    expect(renderArgv(runtime, f, { paths, accel: 'tcg', noShutdown: true })).toContain('-no-shutdown');
    expect(renderArgv(runtime, f, { paths, accel: 'tcg' })).not.toContain('-no-shutdown');
  });

  it("takes keymap, security and chroot from the node's hvparams when given", () => {
    const spec = { ...ARGV_CASES[0]!.spec, hvparams: { kernel_path: '', keymap: 'de' } };
    const runtime = resolveRuntime(spec, f);
    const argv = renderArgv(runtime, f, {
      paths,
      accel: 'tcg',
      nodeHvParams: { keymap: 'fr', security_model: 'user', security_domain: 'qemu', use_chroot: true },
    }).join(' ');
    expect(argv).toContain('-k fr');
    expect(argv).toContain(`-run-with user=qemu,chroot=${paths.chroot}`);
    expect(() =>
      renderArgv(runtime, f, {
        paths,
        accel: 'tcg',
        nodeHvParams: { security_model: 'user', security_domain: '' },
      }),
    ).toThrow(/security_domain/);
  });

  it('resolves an interface bind on this node, and refuses one it does not have', () => {
    const spec = {
      ...ARGV_CASES[0]!.spec,
      networkPort: 5902,
      hvparams: { kernel_path: '', vnc_bind_address: 'br0' },
    };
    const runtime = resolveRuntime(spec, f);
    const interfaces = {
      br0: [
        { address: 'fe80::1', family: 'IPv6' },
        { address: '198.51.100.7', family: 'IPv4' },
      ],
    };
    expect(renderArgv(runtime, f, { paths, accel: 'tcg', interfaces }).join(' ')).toContain(
      '-vnc 198.51.100.7:2',
    );
    expect(() => renderArgv(runtime, f, { paths, accel: 'tcg', interfaces: {} })).toThrow(
      /vnc_bind_address.*br0/,
    );
    const v6 = resolveRuntime({ ...spec, hvparams: { kernel_path: '', vnc_bind_address: '2001:db8::5' } }, f);
    expect(renderArgv(v6, f, { paths, accel: 'tcg' }).join(' ')).toContain('-vnc [2001:db8::5]:2');
  });

  it('refuses VNC on an address without a network port above 5900', () => {
    const spec = { ...ARGV_CASES[0]!.spec, hvparams: { kernel_path: '', vnc_bind_address: '0.0.0.0' } };
    expect(() => resolveRuntime(spec, f)).toThrow(/vnc_bind_address.*networkPort/);
  });

  it('escapes commas in paths', () => {
    const spec = {
      ...ARGV_CASES[0]!.spec,
      disks: [{ uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', path: '/srv/a,b.img', kind: 'file' as const }],
    };
    const argv = renderArgv(resolveRuntime(spec, f), f, { paths, accel: 'tcg' });
    expect(argv.find((a) => a.includes('file.filename'))).toContain('file.filename=/srv/a,,b.img');
  });

  it('refuses a runtime whose machine type the target QEMU lacks', () => {
    const runtime = resolveRuntime(ARGV_CASES[0]!.spec, f);
    expect(() => renderArgv(runtime, recordedFeatures('5.2'), { paths, accel: 'tcg' })).toThrow(
      /machine_version.*pc-i440fx-11\.1/,
    );
  });

  it('refuses kvm_flag contradicting the accelerator', () => {
    const spec = { ...ARGV_CASES[0]!.spec, hvparams: { kernel_path: '', kvm_flag: 'enabled' } };
    expect(() => renderArgv(resolveRuntime(spec, f), f, { paths, accel: 'tcg' })).toThrow(/kvm_flag/);
  });

  it('refuses socket paths too long for a UNIX socket', () => {
    const long = FIXTURE_PATHS('web1');
    long.qmp = `/${'x'.repeat(120)}.qmp`;
    expect(() =>
      renderArgv(resolveRuntime(ARGV_CASES[0]!.spec, f), f, { paths: long, accel: 'tcg' }),
    ).toThrow(/107/);
  });
});
