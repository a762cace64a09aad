/**
 * Catalogue of QEMU migration capabilities (`MigrationCapability` in QEMU's QAPI schema):
 * when each appeared, under which name, when it was removed, which side of a migration
 * needs it, and which combinations QEMU refuses.
 *
 * Facts come from QEMU's git history 1.7 → 11.0 (see docs/migration.md), checked against
 * the real releases of the QEMU matrix (5.2, 7.2, 10.0, 11.1) by
 * test/qemu/catalogue-releases.test.ts. QEMU's own
 * answer (`query-migrate-capabilities`, the error `desc`) stays final; this table gives
 * early, precise errors before anything is changed on a VM.
 */
import { compareVersions, formatVersion, type QemuVersion, versionAtLeast } from './version.js';

/** Which QEMU of a migration a capability must be set on. */
export type CapabilityScope = 'source' | 'destination' | 'both';

/** One row of the capability catalogue. */
export interface MigrationCapabilityInfo {
  /** Today's name (the one QEMU ≥ 4.0 uses). */
  readonly name: string;
  /** First version that has it, under any name. */
  readonly since: QemuVersion;
  /** Older experimental name and the version where QEMU dropped the `x-` prefix. */
  readonly renamedFrom?: { readonly name: string; readonly until: QemuVersion };
  /** First version that no longer has it. */
  readonly removedIn?: QemuVersion;
  /** First version that warns it is deprecated. */
  readonly deprecatedIn?: QemuVersion;
  /** Where it must be turned on. */
  readonly scope: CapabilityScope;
  /** One line for humans. */
  readonly description: string;
}

const v = (major: number, minor: number, micro = 0): QemuVersion => ({ major, minor, micro });

/** Every migration capability QEMU has had from 1.7 to 11.0, by today's name. */
export const MIGRATION_CAPABILITIES: readonly MigrationCapabilityInfo[] = [
  {
    name: 'xbzrle',
    since: v(1, 2),
    scope: 'source',
    description: 'XOR-based delta compression of dirtied pages',
  },
  {
    name: 'rdma-pin-all',
    since: v(1, 7),
    renamedFrom: { name: 'x-rdma-pin-all', until: v(2, 0) },
    scope: 'both',
    description: 'pin all guest memory up front (rdma: transport only)',
  },
  {
    name: 'auto-converge',
    since: v(1, 6),
    scope: 'source',
    description: 'throttle vCPUs so that precopy converges',
  },
  {
    name: 'zero-blocks',
    since: v(1, 6),
    deprecatedIn: v(9, 2),
    removedIn: v(11, 0),
    scope: 'source',
    description: 'skip zero blocks in block migration',
  },
  {
    name: 'compress',
    since: v(2, 4),
    deprecatedIn: v(8, 2),
    removedIn: v(9, 1),
    scope: 'both',
    description: 'old multi-threaded page compression',
  },
  {
    name: 'events',
    since: v(2, 4),
    scope: 'source',
    description: 'emit MIGRATION and MIGRATION_PASS events',
  },
  {
    name: 'postcopy-ram',
    since: v(2, 5),
    renamedFrom: { name: 'x-postcopy-ram', until: v(2, 6) },
    scope: 'both',
    description: 'allow switching to post-copy',
  },
  {
    // Not deprecated: real QEMU 11.1.3 neither marks it `deprecated` in the schema nor warns.
    name: 'x-colo',
    since: v(2, 8),
    scope: 'both',
    description: 'COLO fault tolerance',
  },
  { name: 'release-ram', since: v(2, 9), scope: 'source', description: 'free source pages during post-copy' },
  {
    name: 'block',
    since: v(2, 10),
    deprecatedIn: v(8, 2),
    removedIn: v(9, 1),
    scope: 'both',
    description: 'old-style block migration',
  },
  { name: 'return-path', since: v(2, 10), scope: 'both', description: 'destination-to-source return path' },
  {
    name: 'pause-before-switchover',
    since: v(2, 11),
    scope: 'source',
    description: 'pause before the device state is sent',
  },
  {
    name: 'multifd',
    since: v(2, 11),
    renamedFrom: { name: 'x-multifd', until: v(4, 0) },
    scope: 'both',
    description: 'send pages over several channels',
  },
  {
    name: 'dirty-bitmaps',
    since: v(2, 12),
    scope: 'both',
    description: 'migrate dirty bitmaps of block devices',
  },
  {
    name: 'postcopy-blocktime',
    since: v(3, 0),
    scope: 'destination',
    description: 'measure post-copy blocktime',
  },
  {
    name: 'late-block-activate',
    since: v(3, 0),
    scope: 'destination',
    description: 'activate block devices late',
  },
  { name: 'x-ignore-shared', since: v(4, 0), scope: 'both', description: 'do not migrate shared memory' },
  { name: 'validate-uuid', since: v(4, 2), scope: 'source', description: 'check the destination VM UUID' },
  {
    name: 'background-snapshot',
    since: v(6, 0),
    scope: 'source',
    description: 'snapshot without stopping the VM',
  },
  { name: 'zero-copy-send', since: v(7, 1), scope: 'source', description: 'zero-copy multifd sends (Linux)' },
  {
    name: 'postcopy-preempt',
    since: v(7, 1),
    scope: 'both',
    description: 'separate channel for post-copy faults',
  },
  {
    name: 'switchover-ack',
    since: v(8, 1),
    scope: 'both',
    description: 'destination acknowledges switchover',
  },
  {
    name: 'dirty-limit',
    since: v(8, 1),
    scope: 'source',
    description: 'dirty page rate limit per vCPU (KVM)',
  },
  { name: 'mapped-ram', since: v(9, 0), scope: 'both', description: 'fixed-offset RAM in file migration' },
];

const BY_NAME = new Map<string, MigrationCapabilityInfo>();
for (const cap of MIGRATION_CAPABILITIES) {
  BY_NAME.set(cap.name, cap);
  if (cap.renamedFrom) BY_NAME.set(cap.renamedFrom.name, cap);
}

/** Every name that `migration_caps` accepts: today's names plus the old `x-` spellings. */
export const KNOWN_CAPABILITY_NAMES: readonly string[] = [...BY_NAME.keys()].sort();

/** Looks a capability up by today's name or by its old `x-` name. */
export function findCapability(name: string): MigrationCapabilityInfo | undefined {
  return BY_NAME.get(name);
}

/** Today's name for `name` (`x-postcopy-ram` → `postcopy-ram`); unknown names come back unchanged. */
export function canonicalCapabilityName(name: string): string {
  return BY_NAME.get(name)?.name ?? name;
}

/** True when QEMU `version` has the capability (under either name). */
export function capabilityAvailable(cap: MigrationCapabilityInfo, version: QemuVersion): boolean {
  return (
    compareVersions(version, cap.since) >= 0 &&
    !(cap.removedIn && compareVersions(version, cap.removedIn) >= 0)
  );
}

/** The name QEMU `version` knows the capability by (`x-multifd` on 3.1, `multifd` on 4.0). */
export function capabilityWireName(cap: MigrationCapabilityInfo, version: QemuVersion): string {
  return cap.renamedFrom && compareVersions(version, cap.renamedFrom.until) < 0
    ? cap.renamedFrom.name
    : cap.name;
}

/** The wire names of every capability QEMU `version` has, in catalogue order. */
export function capabilitiesForVersion(version: QemuVersion): string[] {
  return MIGRATION_CAPABILITIES.filter((c) => capabilityAvailable(c, version)).map((c) =>
    capabilityWireName(c, version),
  );
}

/**
 * A combination QEMU refuses. `from`/`until` bound the versions that refuse it
 * (`until` exclusive); a rule without bounds holds in every version that has both names.
 */
export interface CapabilityRule {
  /** Canonical capability that triggers the rule. */
  readonly cap: string;
  /** `requires`: `other` must be on too; `conflicts`: `other` must be off. */
  readonly kind: 'requires' | 'conflicts';
  /** Canonical name of the other capability. */
  readonly other: string;
  readonly from?: QemuVersion;
  readonly until?: QemuVersion;
  /** QEMU's own words for it, when known. */
  readonly qemuMessage: string;
}

const BG_SNAPSHOT_CONFLICTS = [
  'postcopy-ram',
  'dirty-bitmaps',
  'postcopy-blocktime',
  'late-block-activate',
  'return-path',
  'multifd',
  'pause-before-switchover',
  'auto-converge',
  'release-ram',
  'rdma-pin-all',
  'compress',
  'xbzrle',
  'x-colo',
  'validate-uuid',
  'zero-copy-send',
];

/** Combinations that QEMU refuses (`migrate_caps_check`), with the versions that refuse them. */
export const CAPABILITY_RULES: readonly CapabilityRule[] = [
  {
    cap: 'postcopy-ram',
    kind: 'conflicts',
    other: 'compress',
    until: v(5, 0),
    qemuMessage: 'Postcopy is not currently compatible with compression',
  },
  {
    cap: 'postcopy-ram',
    kind: 'conflicts',
    other: 'x-ignore-shared',
    qemuMessage: 'Postcopy is not compatible with ignore-shared',
  },
  {
    cap: 'postcopy-ram',
    kind: 'conflicts',
    other: 'multifd',
    from: v(8, 1),
    until: v(10, 1),
    qemuMessage: 'Postcopy is not yet compatible with multifd',
  },
  ...BG_SNAPSHOT_CONFLICTS.map(
    (other): CapabilityRule => ({
      cap: 'background-snapshot',
      kind: 'conflicts',
      other,
      qemuMessage: `Background-snapshot is not compatible with ${other}`,
    }),
  ),
  {
    cap: 'zero-copy-send',
    kind: 'requires',
    other: 'multifd',
    qemuMessage: 'Zero copy only available for non-compressed non-TLS multifd migration',
  },
  {
    cap: 'zero-copy-send',
    kind: 'conflicts',
    other: 'xbzrle',
    qemuMessage: 'Zero copy only available for non-compressed non-TLS multifd migration',
  },
  {
    cap: 'zero-copy-send',
    kind: 'conflicts',
    other: 'compress',
    qemuMessage: 'Zero copy only available for non-compressed non-TLS multifd migration',
  },
  {
    cap: 'postcopy-preempt',
    kind: 'requires',
    other: 'postcopy-ram',
    qemuMessage: 'Postcopy preempt requires postcopy-ram',
  },
  {
    cap: 'postcopy-preempt',
    kind: 'conflicts',
    other: 'compress',
    from: v(7, 2),
    until: v(9, 1),
    qemuMessage: 'Postcopy preempt not compatible with compress',
  },
  {
    cap: 'multifd',
    kind: 'conflicts',
    other: 'compress',
    from: v(7, 1),
    until: v(9, 1),
    qemuMessage: 'Multifd is not compatible with compress',
  },
  {
    cap: 'multifd',
    kind: 'conflicts',
    other: 'xbzrle',
    from: v(8, 1),
    qemuMessage: 'Multifd is not compatible with xbzrle',
  },
  {
    cap: 'compress',
    kind: 'conflicts',
    other: 'xbzrle',
    from: v(8, 1),
    until: v(9, 1),
    qemuMessage: 'Compression is not compatible with xbzrle',
  },
  {
    cap: 'switchover-ack',
    kind: 'requires',
    other: 'return-path',
    qemuMessage: "Capability 'switchover-ack' requires capability 'return-path'",
  },
  {
    // Observed on real releases: 10.0.13 accepts x-colo alone, 11.1.3 refuses it. The first
    // refusing release in between is not verified, so the rule starts where it was seen.
    cap: 'x-colo',
    kind: 'requires',
    other: 'return-path',
    from: v(11, 1),
    qemuMessage: "Capability 'x-colo' requires capability 'return-path'",
  },
  {
    cap: 'dirty-limit',
    kind: 'conflicts',
    other: 'auto-converge',
    qemuMessage: 'dirty-limit conflicts with auto-converge either of then available currently',
  },
  {
    cap: 'mapped-ram',
    kind: 'conflicts',
    other: 'xbzrle',
    qemuMessage: 'Mapped-ram migration is incompatible with xbzrle',
  },
  {
    cap: 'mapped-ram',
    kind: 'conflicts',
    other: 'postcopy-ram',
    qemuMessage: 'Mapped-ram migration is incompatible with postcopy',
  },
  {
    cap: 'mapped-ram',
    kind: 'conflicts',
    other: 'compress',
    qemuMessage: 'Mapped-ram migration is incompatible with compression',
  },
];

/** A rule broken by a requested set of capabilities. */
export interface CapabilityViolation {
  readonly rule: CapabilityRule;
  /** Readable message naming both capabilities. */
  readonly message: string;
}

function ruleApplies(rule: CapabilityRule, version: QemuVersion | undefined): boolean {
  if (version === undefined) return rule.from === undefined && rule.until === undefined;
  if (rule.from && compareVersions(version, rule.from) < 0) return false;
  if (rule.until && compareVersions(version, rule.until) >= 0) return false;
  return true;
}

/**
 * Checks a set of capabilities (any spelling) against {@link CAPABILITY_RULES}.
 * Without `version`, only the rules that hold in every QEMU version are applied
 * (what can be said before the QEMU version is known); with it, the rules of that version.
 */
export function checkCapabilityCombination(
  names: readonly string[],
  version?: QemuVersion,
): CapabilityViolation[] {
  const set = new Set(names.map(canonicalCapabilityName));
  const out: CapabilityViolation[] = [];
  for (const rule of CAPABILITY_RULES) {
    if (!set.has(rule.cap) || !ruleApplies(rule, version)) continue;
    const has = set.has(rule.other);
    const where = version ? ` on QEMU ${formatVersion(version)}` : '';
    if (rule.kind === 'requires' && !has) {
      out.push({
        rule,
        message: `capability '${rule.cap}' requires '${rule.other}'${where} (QEMU: ${rule.qemuMessage})`,
      });
    } else if (rule.kind === 'conflicts' && has) {
      out.push({
        rule,
        message: `capability '${rule.cap}' cannot be combined with '${rule.other}'${where} (QEMU: ${rule.qemuMessage})`,
      });
    }
  }
  return out;
}

/** True when a capability is deprecated (but still present) in `version`. */
export function capabilityDeprecated(cap: MigrationCapabilityInfo, version: QemuVersion): boolean {
  return (
    cap.deprecatedIn !== undefined && versionAtLeast(version, cap.deprecatedIn.major, cap.deprecatedIn.minor)
  );
}
