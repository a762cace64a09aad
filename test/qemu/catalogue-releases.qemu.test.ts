/**
 * The capability catalogue (src/qemu/capabilities.ts) against every real QEMU release the
 * suite has (test/support/qemu-releases.ts: the host's QEMU plus the QEMU matrix built by
 * `bash scripts/qemu-matrix.sh`): the names `query-migrate-capabilities` lists, the
 * `MigrationCapability` enum of `query-qmp-schema` with its `deprecated` features, and
 * the combinations QEMU refuses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QmpError } from '../../src/errors.js';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import {
  CAPABILITY_RULES,
  type CapabilityRule,
  capabilitiesForVersion,
  capabilityAvailable,
  capabilityDeprecated,
  capabilityWireName,
  checkCapabilityCombination,
  findCapability,
  MIGRATION_CAPABILITIES,
} from '../../src/qemu/capabilities.js';
import { formatVersion } from '../../src/qemu/version.js';
import { QemuVm } from '../../src/testing/qemu-vm.js';
import { qemuReleases } from '../support/qemu-releases.js';

interface SchemaEntry {
  name: string;
  'meta-type': string;
  'arg-type'?: string;
  'element-type'?: string;
  members?: { name: string; type?: string; features?: string[] }[];
  values?: string[];
}

/**
 * The `MigrationCapability` enum of a `query-qmp-schema` reply. Type names are masked in
 * the introspection, so it is found by following `migrate-set-capabilities` →
 * `capabilities: [MigrationCapabilityStatus]` → `capability`.
 */
function migrationCapabilityEnum(schema: SchemaEntry[]): { names: string[]; deprecated: string[] } {
  const byName = new Map(schema.map((e) => [e.name, e]));
  const step = (name: string | undefined, what: string): SchemaEntry => {
    const e = name === undefined ? undefined : byName.get(name);
    if (!e) throw new Error(`query-qmp-schema: cannot follow ${what}`);
    return e;
  };
  const command = step('migrate-set-capabilities', 'migrate-set-capabilities');
  const args = step(command['arg-type'], 'its arguments');
  const list = step(args.members?.find((m) => m.name === 'capabilities')?.type, 'capabilities');
  const status = step(list['element-type'], 'the list element');
  const en = step(status.members?.find((m) => m.name === 'capability')?.type, 'capability');
  // `members` (with features) since QEMU 6.2; `values` before and after.
  const names = en.members?.map((m) => m.name) ?? en.values ?? [];
  const deprecated = (en.members ?? []).filter((m) => m.features?.includes('deprecated')).map((m) => m.name);
  return { names, deprecated };
}

const releases = qemuReleases();
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-catalogue-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.skipIf(releases.length === 0).each(releases)('QEMU $release ($suite, $version)', (release) => {
  let vm: QemuVm;
  let qmp: QmpMonitor;
  beforeAll(async () => {
    // TCG: only the monitor is needed, no guest; keeps several releases cheap side by side.
    vm = await QemuVm.start({
      name: `cat-${release.release}`,
      dir,
      binary: release.binary,
      hmp: false,
      accel: 'tcg',
    });
    qmp = await QmpMonitor.connect({ path: vm.qmpPath });
  }, 30_000);
  afterAll(async () => {
    await qmp?.close().catch(() => undefined);
    await vm?.kill();
  });
  it('reports the version the release was built from', () => {
    expect(formatVersion(qmp.version)).toBe(release.version);
  });

  it('query-migrate-capabilities lists exactly the catalogue’s capabilities for this version', async () => {
    const listed = await qmp.execute<{ capability: string }[]>('query-migrate-capabilities');
    expect(listed.map((c) => c.capability).sort()).toEqual(capabilitiesForVersion(qmp.version).sort());
  });

  it('the MigrationCapability enum agrees: names, since / removed, deprecated', async () => {
    const { names, deprecated } = migrationCapabilityEnum(
      await qmp.execute<SchemaEntry[]>('query-qmp-schema'),
    );
    expect([...names].sort()).toEqual(capabilitiesForVersion(qmp.version).sort());
    for (const cap of MIGRATION_CAPABILITIES) {
      const wire = capabilityWireName(cap, qmp.version);
      expect(names.includes(wire), `${wire} present`).toBe(capabilityAvailable(cap, qmp.version));
    }
    // QEMU marks deprecations in the schema from 6.2 (enum `members` with features).
    if (names.length && qmp.version.major * 100 + qmp.version.minor >= 602) {
      const catalogueDeprecated = capabilitiesForVersion(qmp.version).filter((n) =>
        capabilityDeprecated(findCapability(n)!, qmp.version),
      );
      expect(deprecated.sort()).toEqual(catalogueDeprecated.sort());
    }
  });

  /** The rules whose capabilities both exist here, and whether the catalogue applies them. */
  const rulesHere = (): { rule: CapabilityRule; applies: boolean }[] =>
    CAPABILITY_RULES.filter((r) =>
      [r.cap, r.other].every((n) => capabilityAvailable(findCapability(n)!, qmp.version)),
    ).map((rule) => {
      const set = rule.kind === 'requires' ? [rule.cap] : [rule.cap, rule.other];
      const applies = checkCapabilityCombination(set, qmp.version).some((x) => x.rule === rule);
      return { rule, applies };
    });

  const setCaps = (names: string[]) =>
    qmp
      .execute('migrate-set-capabilities', {
        capabilities: names.map((n) => ({
          capability: capabilityWireName(findCapability(n)!, qmp.version),
          state: true,
        })),
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
  const allOff = async () => {
    const listed = await qmp.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    const on = listed.filter((c) => c.state).map((c) => ({ capability: c.capability, state: false }));
    if (on.length) await qmp.execute('migrate-set-capabilities', { capabilities: on });
  };

  it('QEMU refuses every combination the catalogue refuses for this version', async () => {
    for (const { rule, applies } of rulesHere()) {
      if (!applies) continue;
      const err = await setCaps(rule.kind === 'requires' ? [rule.cap] : [rule.cap, rule.other]);
      await allOff();
      expect(err, `${rule.cap} ${rule.kind} ${rule.other}`).toBeInstanceOf(QmpError);
    }
  });

  it('QEMU accepts alone every capability the catalogue accepts alone', async () => {
    // dirty-limit also needs KVM started with a dirty ring (-accel kvm,dirty-ring-size=…):
    // a property of the VM, not a combination of capabilities.
    const environmental = new Set(['dirty-limit']);
    for (const name of capabilitiesForVersion(qmp.version)) {
      const canonical = findCapability(name)!.name;
      if (environmental.has(canonical) || checkCapabilityCombination([canonical], qmp.version).length)
        continue;
      const err = await setCaps([canonical]);
      await allOff();
      expect(err, `${name} alone`).toBeUndefined();
    }
  });
});
