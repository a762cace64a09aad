/**
 * Shapes shared by the hvparam registry and its checks.
 */
import type { Static, TSchema } from 'typebox';
import type { QemuVersion } from '../qemu/version.js';

/** Ganeti's value types (`VType`): how a raw value is coerced and what type it has afterwards. */
export type HvParamType = 'string' | 'maybe-string' | 'bool' | 'int' | 'size' | 'float';

/**
 * A check that needs no I/O (Ganeti's syntax check). It runs only on a value that has the
 * parameter's type and counts as specified (not `null`, not `""`).
 */
export interface SyntaxCheck<V> {
  /** What the check demands, in a few words, for the generated docs. */
  readonly summary: string;
  /** The failure details (Ganeti's `errmsg`); an empty list means the value passes. */
  problems(value: V): string[];
}

/**
 * A check that looks at the node (Ganeti's validation): files, directories and the like.
 * Runs under the same conditions as {@link SyntaxCheck}.
 */
export interface NodeCheck<V> {
  /** What the check demands, in a few words, for the generated docs. */
  readonly summary: string;
  /** The failure details; an empty list means the value passes. */
  problems(value: V): Promise<string[]>;
}

/** One row of the hvparam registry. */
export interface HvParamDefinition<S extends TSchema = TSchema, V = Static<S>> {
  /** Value type, which decides coercion ({@link HvParamType}). */
  readonly type: HvParamType;
  /** Value used when neither the cluster nor the instance sets the parameter. */
  readonly default: V;
  /** When true, `null` and `""` are rejected. */
  readonly required: boolean;
  /** Cluster-level only: refused in instance-level hvparams. */
  readonly global: boolean;
  /** One sentence for humans, with units. */
  readonly description: string;
  /** TypeBox schema of the coerced value; it carries the description and the default. */
  readonly schema: S;
  /** Per-key check without I/O, if any. */
  readonly syntax?: SyntaxCheck<NonNullable<V>>;
  /** Per-key node check, if any. */
  readonly node?: NodeCheck<NonNullable<V>>;
}

/**
 * What the node-side checks may use besides the file system. Checks that need a field are
 * skipped when it is absent, so a caller without QEMU at hand still gets every other check.
 */
export interface ValidationContext {
  /** Output of `kvm --help`; enables the `-spice` support check. */
  kvmHelp?: string;
  /** Output of `kvm -machine ?`; enables the `machine_version` check. */
  machineList?: string;
  /** Version of the QEMU binary; enables the `disk_aio=io_uring` check (QEMU ≥ 5). */
  qemuVersion?: QemuVersion;
  /** Password database used for `security_domain` (default `/etc/passwd`). */
  passwdFile?: string;
  /** Network interface names to accept; default: `os.networkInterfaces()` and `/sys/class/net`. */
  interfaces?: readonly string[];
}
