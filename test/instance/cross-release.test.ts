/**
 * A runtime travels to a migration target that may run another QEMU release: rendered there,
 * it keeps the source's machine type, ids and slots, in the target's spellings; a target
 * that lacks the machine type is refused before anything starts.
 */
import { describe, expect, it } from 'vitest';
import { HvParamError } from '../../src/errors.js';
import { renderArgv } from '../../src/instance/argv.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import { FIXTURE_PATHS, RECORDED_RELEASES, recordedFeatures } from './fixtures.js';
import { baseSpec } from './specs.js';

const spec = baseSpec({ hvparams: { kernel_path: '', acpi: false, soundhw: 'hda', use_chroot: true } });
const pairs = RECORDED_RELEASES.flatMap((source) =>
  RECORDED_RELEASES.map((target) => [source, target] as const),
);
const order = (r: string) => RECORDED_RELEASES.indexOf(r);

describe('a runtime rendered on another release', () => {
  it.each(pairs)('resolved on %s, rendered on %s', (source, target) => {
    const runtime = resolveRuntime(spec, recordedFeatures(source));
    const render = () =>
      renderArgv(runtime, recordedFeatures(target), { paths: FIXTURE_PATHS('web1'), accel: 'kvm' });
    if (order(target) < order(source)) {
      // An older QEMU does not know the newer machine type.
      expect(render).toThrow(HvParamError);
      expect(render).toThrow(new RegExp(`machine_version.*pc-i440fx-${source.replace('.', '\\.')}`));
      return;
    }
    const argv = render().join(' ');
    expect(argv).toContain(`-machine pc-i440fx-${source}`);
    expect(argv).toContain('addr=0xc,drive=disk-932df160-7a22-4067');
    expect(argv).toContain('addr=0xd,netdev=nic-003fc157-66a8-4e6d');
    // The target's spellings, not the source's.
    const t = recordedFeatures(target);
    expect(argv.includes('-soundhw')).toBe(t.options.audio !== true);
    expect(argv.includes('-no-acpi')).toBe(t.options['no-acpi'] === true && t.version.major < 8);
    expect(argv.includes('-run-with')).toBe(t.runWith.includes('chroot'));
  });
});
