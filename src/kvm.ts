/**
 * The KVM hypervisor: Ganeti's `KVMHypervisor` class, ported piece by piece. For now it holds
 * the hvparam registry and its checks; migration methods come later.
 */

// For TSDoc links only.
import type { HvParamError } from './errors.js';
import {
  assessHvParams,
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  fillHvParamDefaults,
  HV_PARAMETERS,
  hvParamsJsonSchema,
  type KvmHvParams,
  type ValidationContext,
  validateHvParams,
} from './hvparams/index.js';

/**
 * Ganeti's KVM hypervisor. The static members describe and check hvparams the way Ganeti's
 * `KVMHypervisor.PARAMETERS`, `CheckParameterSyntax`, `ValidateParameters` and
 * `AssessParameters` do, except that every problem is reported at once in one
 * {@link HvParamError}.
 *
 * Typical flow: `coerceHvParams(raw)` → `fillDefaults(coerced)` → `checkParameterSyntax(filled)`
 * (no I/O) → `await validateParameters(filled)` on the node that will run the instance.
 *
 * Subclass or extend it freely: the static members only read the registry.
 */
// biome-ignore lint/complexity/noStaticOnlyClass: the public API is Ganeti's class; instance methods (migration) follow.
export class KVMHypervisor {
  /** The hvparam registry: type, default, required, global, description, schema and checks per key. */
  static readonly PARAMETERS = HV_PARAMETERS;

  /**
   * Returns a new object holding `params` with every missing key set to its default. Unknown
   * keys are kept, so that {@link KVMHypervisor.checkParameterSyntax} reports them.
   */
  static fillDefaults(params: Partial<KvmHvParams>): KvmHvParams;
  static fillDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown>;
  static fillDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown> {
    return fillHvParamDefaults(params);
  }

  /**
   * Checks a filled set of hvparams without touching the world: unknown and missing keys,
   * types, required values (only `null` and `""` count as unspecified), per-key checks, then
   * the six cross-parameter rules. Throws {@link HvParamError} listing every problem.
   */
  static checkParameterSyntax(filled: Readonly<Record<string, unknown>>): void {
    checkHvParamsSyntax(filled);
  }

  /**
   * Node-side checks: files and directories exist, users and network interfaces exist, and,
   * when `context` supplies QEMU's `--help` text, machine list or version, what depends on
   * them. Rejects with {@link HvParamError} listing every problem.
   */
  static validateParameters(
    filled: Readonly<Record<string, unknown>>,
    context?: ValidationContext,
  ): Promise<void> {
    return validateHvParams(filled, context);
  }

  /** Warnings about valid but doubtful settings (generic CPU model, default bandwidth, …); `[]` when none. */
  static assessParameters(filled: Readonly<Record<string, unknown>>): string[] {
    return assessHvParams(filled);
  }

  /** JSON Schema of a filled set of hvparams, as a plain JSON-serializable object. */
  static jsonSchema(): Record<string, unknown> {
    return hvParamsJsonSchema();
  }

  /**
   * Throws {@link HvParamError} when instance-level hvparams contain a cluster-level-only key
   * (`migration_bandwidth`, `migration_mode`, `migration_port`), naming all of them.
   */
  static checkParamsNotGlobal(instanceParams: Readonly<Record<string, unknown>>): void {
    checkHvParamsNotGlobal(instanceParams);
  }
}
