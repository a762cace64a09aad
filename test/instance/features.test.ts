import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UnrecognizedOutputError } from '../../src/errors.js';
import {
  clearQemuFeaturesCache,
  featuresFromProbe,
  probeQemuFeatures,
  QemuProbeError,
} from '../../src/instance/features.js';
import {
  parseHelpOptions,
  parseQueryMachines,
  parseQueryVersion,
  parseRunWithKeys,
  parseTypeProbes,
} from '../../src/instance/features-parse.js';
import { qemuReleases } from '../support/qemu-releases.js';
import { RECORDED_RELEASES, recordedFeatures, recordedReplies } from './fixtures.js';

describe('features from recorded probes', () => {
  it('has the four matrix releases recorded', () => {
    expect(RECORDED_RELEASES).toEqual(['5.2', '7.2', '10.0', '11.1']);
  });

  it.each(RECORDED_RELEASES)(
    'QEMU %s: version, default machine pinned by name, devices, options',
    (release) => {
      const f = recordedFeatures(release);
      expect(`${f.version.major}.${f.version.minor}`).toBe(release);
      const def = f.machines.filter((m) => m.isDefault);
      expect(def).toEqual([
        {
          name: `pc-i440fx-${release}`,
          alias: 'pc',
          isDefault: true,
          deprecated: false,
          description: 'Standard PC (i440FX + PIIX, 1996)',
        },
      ]);
      expect(f.machines.find((m) => m.alias === 'q35')?.name).toBe(`pc-q35-${release}`);
      expect(f.accelerators).toEqual(['kvm', 'tcg']);
      for (const d of [
        'virtio-blk-pci',
        'virtio-net-pci',
        'ide-hd',
        'scsi-hd',
        'e1000',
        'VGA',
        'usb-tablet',
      ]) {
        expect(f.devices).toContain(d);
      }
      expect(f.deviceProperties['virtio-blk-pci']).toContain('write-cache');
      expect(f.cpuModels).toContain('qemu64');
      expect(f.commands).toContain('migrate-incoming');
      expect(f.options.machine).toBe(true);
    },
  );

  it('tracks removed and new options per release', () => {
    const [v52, v72, v100, v111] = ['5.2', '7.2', '10.0', '11.1'].map(recordedFeatures) as [
      ReturnType<typeof recordedFeatures>,
      ReturnType<typeof recordedFeatures>,
      ReturnType<typeof recordedFeatures>,
      ReturnType<typeof recordedFeatures>,
    ];
    expect([v52, v72, v100, v111].map((f) => f.options.soundhw === true)).toEqual([
      true,
      false,
      false,
      false,
    ]);
    expect([v52, v72, v100, v111].map((f) => f.options['no-acpi'] === true)).toEqual([
      true,
      true,
      false,
      false,
    ]);
    expect([v52, v72, v100, v111].map((f) => f.options.audio === true)).toEqual([false, true, true, true]);
    expect([v52, v72, v100, v111].map((f) => f.options.runas === true)).toEqual([true, true, false, false]);
    expect(v52.runWith).toEqual([]);
    expect(v100.runWith).toEqual(['async-teardown', 'chroot', 'user']);
    // 10.2 made the entry multi-line: `user=` is on the second line.
    expect(v111.runWith).toContain('user');
  });
});

describe('probe reply parsers', () => {
  it('reads query-version and refuses other shapes, quoting them', () => {
    expect(parseQueryVersion({ qemu: { major: 7, minor: 2, micro: 22 }, package: ' Debian ' })).toEqual({
      version: { major: 7, minor: 2, micro: 22 },
      package: 'Debian',
    });
    expect(() => parseQueryVersion({ qemu: { major: '7' }, package: '' })).toThrow(UnrecognizedOutputError);
    expect(() => parseQueryVersion({ qemu: { major: '7' }, package: '' })).toThrow(/query-version.*major.*7/);
  });

  it('reads query-machines sorted by name, with alias and default', () => {
    const m = parseQueryMachines([
      { name: 'pc-q35-7.2', alias: 'q35' },
      { name: 'pc-i440fx-7.2', alias: 'pc', 'is-default': true, deprecated: false },
      { name: 'isapc', deprecated: true },
    ]);
    expect(m.map((x) => x.name)).toEqual(['isapc', 'pc-i440fx-7.2', 'pc-q35-7.2']);
    expect(m[1]).toEqual({ name: 'pc-i440fx-7.2', alias: 'pc', isDefault: true, deprecated: false });
    expect(m[0]!.deprecated).toBe(true);
    expect(() => parseQueryMachines({})).toThrow(UnrecognizedOutputError);
    expect(() => parseQueryMachines([{ name: 1 }])).toThrow(UnrecognizedOutputError);
  });

  it('takes DeviceNotFound as absent and refuses any other error', () => {
    expect(
      parseTypeProbes('device-list-properties', {
        b: { return: [{ name: 'y' }, { name: 'x' }] },
        a: { error: { class: 'DeviceNotFound', desc: "Device 'a' not found" } },
      }),
    ).toEqual({ b: ['x', 'y'] });
    expect(() =>
      parseTypeProbes('device-list-properties', { a: { error: { class: 'GenericError', desc: 'boom' } } }),
    ).toThrow(/boom/);
  });

  it('reads option names from -help and refuses text that is not QEMU help', () => {
    expect(parseHelpOptions('-machine x\n-m size\n  -indented no\n-no-acpi        disable ACPI\n')).toEqual([
      'm',
      'machine',
      'no-acpi',
    ]);
    expect(() => parseHelpOptions('usage: something else')).toThrow(UnrecognizedOutputError);
    expect(parseRunWithKeys('-machine\n-run-with [chroot=dir]\n          [,user=u]\n-msg [a=b]\n')).toEqual([
      'chroot',
      'user',
    ]);
  });

  it('a recorded probe with one broken reply is refused, not defaulted', () => {
    const replies = recordedReplies('7.2');
    expect(() => featuresFromProbe('/x', { ...replies, machines: 'nonsense' })).toThrow(
      UnrecognizedOutputError,
    );
  });
});

describe('probeQemuFeatures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-probe-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fails within its deadline on a binary that never answers', async () => {
    const fake = join(dir, 'frozen-qemu');
    writeFileSync(fake, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(fake, 0o755);
    await expect(probeQemuFeatures(fake, { timeoutMs: 1500 })).rejects.toThrow(QemuProbeError);
  });

  it('fails with QEMU-like stderr when the process exits', async () => {
    const fake = join(dir, 'dying-qemu');
    writeFileSync(fake, '#!/bin/sh\necho "qemu: cannot start: boom" >&2\nexit 1\n');
    chmodSync(fake, 0o755);
    await expect(probeQemuFeatures(fake, { timeoutMs: 10_000 })).rejects.toThrow(/boom/);
  });

  it('refuses a missing binary', async () => {
    await expect(probeQemuFeatures(join(dir, 'nope'))).rejects.toThrow(QemuProbeError);
  });

  it('keeps the replies in a cache file that another process (a fresh memory cache) reuses', async () => {
    const fake = join(dir, 'counting-qemu');
    const real = qemuReleases()[0];
    if (!real) return;
    // A wrapper that counts its runs: the cache file must spare the second probe.
    writeFileSync(fake, `#!/bin/sh\necho run >> ${join(dir, 'runs')}\nexec ${real.binary} "$@"\n`);
    chmodSync(fake, 0o755);
    const cacheDir = join(dir, 'cache');
    mkdirSync(cacheDir);
    const first = await probeQemuFeatures(fake, { cacheDir, timeoutMs: 60_000 });
    const runs = readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length;
    expect(runs).toBe(3); // the QMP probe, -help and -machine help
    const again = await probeQemuFeatures(fake, { cacheDir, refresh: false, timeoutMs: 60_000 });
    expect(again).toBe(first);
    // A new process has an empty memory cache: the file answers.
    clearQemuFeaturesCache();
    const fromFile = await probeQemuFeatures(fake, { cacheDir, timeoutMs: 60_000 });
    expect(fromFile).not.toBe(first);
    expect(fromFile).toEqual(first);
    expect(readFileSync(join(dir, 'runs'), 'utf8').split('\n').filter(Boolean).length).toBe(runs);
  });

  const releases = qemuReleases();
  it.runIf(releases.length > 0).each(releases.map((r) => [r.release, r] as const))(
    'probes real QEMU %s once and caches it',
    async (_release, r) => {
      const first = await probeQemuFeatures(r.binary, { timeoutMs: 60_000 });
      expect(`${first.version.major}.${first.version.minor}`).toBe(r.release);
      expect(first.machines.some((m) => m.isDefault && m.alias === 'pc')).toBe(true);
      expect(first.devices).toContain('virtio-blk-pci');
      const again = await probeQemuFeatures(r.binary);
      expect(again).toBe(first);
    },
  );
});
