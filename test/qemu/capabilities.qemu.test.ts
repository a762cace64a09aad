import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { capabilitiesForVersion } from '../../src/qemu/capabilities.js';
import { formatVersion, parseVersion } from '../../src/qemu/version.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { describeEachRelease, releaseCases, versionOf, vmOptions } from '../support/real-qemu.js';

const _v = (s: string) => parseVersion(s)!;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-caps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachRelease('capability catalogue', releaseCases(), (rel) => {
  it('matches the capability list the real QEMU reports', async () => {
    const vm = await QemuVm.start({ name: `caps-${rel.release}`, dir, hmp: false, ...vmOptions(rel) });
    try {
      const qmp = await QmpMonitor.connect({ path: vm.qmpPath });
      expect(formatVersion(qmp.version)).toBe(formatVersion(versionOf(rel)));
      const listed = (await qmp.execute('query-migrate-capabilities')) as { capability: string }[];
      expect(new Set(capabilitiesForVersion(qmp.version))).toEqual(new Set(listed.map((c) => c.capability)));
      await qmp.close();
    } finally {
      await vm.kill();
    }
  });
});
