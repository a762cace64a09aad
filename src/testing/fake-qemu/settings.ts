/**
 * The migration settings of a fake QEMU: capabilities and parameters of its version
 * (from the capability catalogue and the parameter table), with QEMU's refusals.
 */
import { capabilitiesForVersion, checkCapabilityCombination } from '../../qemu/capabilities.js';
import { type QemuVersion, versionAtLeast } from '../../qemu/version.js';
import { type MockParamInfo, paramsForVersion } from '../mock-params.js';

/** Capabilities and parameters as one QEMU version has them. */
export class FakeMigrationSettings {
  /** Bandwidth limit in bytes/s (`max-bandwidth`, `migrate_set_speed`). */
  bandwidth: number;
  /** Downtime limit in ms (`downtime-limit`, `migrate_set_downtime`). */
  downtimeMs: number;
  private readonly version: QemuVersion;
  private readonly caps = new Map<string, boolean>();
  private readonly params = new Map<string, number | boolean | string>();

  constructor(version: QemuVersion, capabilities: Record<string, boolean> = {}) {
    this.version = version;
    for (const name of capabilitiesForVersion(version)) this.caps.set(name, capabilities[name] ?? false);
    for (const p of paramsForVersion(version)) this.params.set(p.name, p.def(version));
    this.bandwidth = versionAtLeast(version, 5, 2) ? 134217728 : 33554432;
    this.downtimeMs = versionAtLeast(version, 2, 1) ? 300 : 30;
  }

  /** Capability states by wire name (a copy). */
  get capabilities(): Record<string, boolean> {
    return Object.fromEntries(this.caps);
  }

  /** True when capability `name` (wire name) exists on this version. */
  hasCapability(name: string): boolean {
    return this.caps.has(name);
  }

  /** True when capability `name` is on. */
  capabilityOn(name: string): boolean {
    return this.caps.get(name) === true;
  }

  /** Current parameters, as `query-migrate-parameters` returns them (a copy). */
  get parameters(): Record<string, number | boolean | string> {
    const out: Record<string, number | boolean | string> = {};
    for (const [k, v] of this.params) out[k] = v;
    if (this.params.has('max-bandwidth')) out['max-bandwidth'] = this.bandwidth;
    if (this.params.has('downtime-limit')) out['downtime-limit'] = this.downtimeMs;
    return out;
  }

  /**
   * Turns capabilities on or off, all or nothing; returns QEMU's error text, or undefined.
   * `migrating`: a migration runs (QEMU then refuses any change).
   */
  setCapabilities(
    list: ReadonlyArray<{ capability: string; state: boolean }>,
    migrating: boolean,
  ): string | undefined {
    const next = new Map(this.caps);
    for (const item of list) {
      if (!this.caps.has(item.capability)) {
        return versionAtLeast(this.version, 2, 3)
          ? `Parameter 'capability' does not accept value '${item.capability}'`
          : `Invalid parameter '${item.capability}'`;
      }
      next.set(item.capability, item.state);
    }
    if (migrating) return "There's a migration process in progress";
    if (versionAtLeast(this.version, 2, 12)) {
      const on = [...next].filter(([, s]) => s).map(([n]) => n);
      const violation = checkCapabilityCombination(on, this.version)[0];
      if (violation) return violation.rule.qemuMessage;
    }
    for (const [k, s] of next) this.caps.set(k, s);
    return undefined;
  }

  /** Sets one parameter; returns QEMU's error text, or undefined. */
  setParameter(p: MockParamInfo, value: unknown): string | undefined {
    const field = p.name;
    if (p.kind === 'bool' && typeof value !== 'boolean')
      return `Invalid parameter type for '${field}', expected: boolean`;
    if (p.kind === 'string' && typeof value !== 'string')
      return `Invalid parameter type for '${field}', expected: string`;
    if (p.kind === 'int') {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
        return `Parameter '${field}' expects uint64`;
      if (p.range && (value < p.range.min || value > p.range.max)) return p.range.message;
    }
    if (field === 'max-bandwidth') this.bandwidth = value as number;
    else if (field === 'downtime-limit') this.downtimeMs = value as number;
    else this.params.set(field, value as number | boolean | string);
    return undefined;
  }

  /** Sets several parameters at once, all or nothing; returns QEMU's error text, or undefined. */
  setParameters(values: Record<string, unknown>): string | undefined {
    const known = new Map(paramsForVersion(this.version).map((p) => [p.name, p]));
    for (const key of Object.keys(values)) {
      if (!known.has(key)) return `Parameter '${key}' is unexpected`;
    }
    const savedParams = new Map(this.params);
    const saved = [this.bandwidth, this.downtimeMs] as const;
    for (const [key, value] of Object.entries(values)) {
      const err = this.setParameter(known.get(key)!, value);
      if (err) {
        for (const [k, v] of savedParams) this.params.set(k, v);
        [this.bandwidth, this.downtimeMs] = saved;
        return err;
      }
    }
    return undefined;
  }
}
