/**
 * Filling defaults and checking a whole set of hvparams, with Ganeti's semantics: only `null`
 * and `""` count as unspecified, every problem is collected and reported at once.
 */
import { HvParamError, type HvParamProblem } from '../errors.js';
import { CROSS_PARAMETER_RULES } from './cross-checks.js';
import {
  describeType,
  hasOwn,
  isPlainObject,
  isUnspecified,
  missingProblem,
  requiredProblem,
  syntaxProblem,
  unsupportedProblem,
  validationProblem,
} from './messages.js';
import { NODE_PARAMETER_RULES } from './node-checks.js';
import {
  defaultHvParams,
  findHvParameter,
  GLOBAL_HV_PARAMETERS,
  HV_PARAMETER_NAMES,
  HV_PARAMETERS,
  type KvmHvParams,
} from './registry.js';
import type { HvParamDefinition, HvParamType, ValidationContext } from './types.js';

/** Does `value` have the JavaScript type a coerced value of `type` has? */
function matchesParamType(type: HvParamType, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'maybe-string':
      return typeof value === 'string' || value === null;
    case 'bool':
      return typeof value === 'boolean';
    case 'int':
    case 'size':
      return Number.isInteger(value);
    case 'float':
      return typeof value === 'number' && Number.isFinite(value);
  }
}

const TYPE_DEMANDS: Record<HvParamType, string> = {
  string: 'must be a string',
  'maybe-string': 'must be a string or null',
  bool: 'must be a boolean',
  int: 'must be an integer',
  size: 'must be an integer number of MiB',
  float: 'must be a finite number',
};

/** Returns `input` as a record, or throws the "Expected dictionary" problem. */
/** The problem reported when the hvparams are not a plain object. */
function notADictionary(input: unknown): HvParamProblem {
  return { param: '', message: `Expected dictionary, got ${describeType(input)}` };
}

function asRecord(input: unknown): Readonly<Record<string, unknown>> {
  if (!isPlainObject(input)) throw new HvParamError([notADictionary(input)]);
  return input;
}

/**
 * Fills every missing parameter (absent or `undefined`) with its default. Returns a new
 * object; unknown keys are kept so that {@link checkHvParamsSyntax} can report them.
 */
export function fillHvParamDefaults(params: Partial<KvmHvParams>): KvmHvParams;
export function fillHvParamDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown>;
export function fillHvParamDefaults(params: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const filled: Record<string, unknown> = defaultHvParams();
  for (const [key, value] of Object.entries(asRecord(params))) {
    if (value === undefined) continue;
    // defineProperty, not assignment: a key such as "__proto__" must stay an ordinary key.
    Object.defineProperty(filled, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return filled;
}

/** The per-key syntax problems of one parameter value (type, required, syntax check). */
function keyProblems(name: string, definition: HvParamDefinition, value: unknown): HvParamProblem[] {
  if (!matchesParamType(definition.type, value)) {
    return [
      definition.required && isUnspecified(value)
        ? requiredProblem(name)
        : syntaxProblem(name, TYPE_DEMANDS[definition.type], value),
    ];
  }
  if (isUnspecified(value)) return definition.required ? [requiredProblem(name)] : [];
  // Specified, so neither null nor undefined.
  return (definition.syntax?.problems(value as NonNullable<unknown>) ?? []).map((detail) =>
    syntaxProblem(name, detail, value),
  );
}

/**
 * Every syntax problem of a filled set of hvparams: unknown and missing keys, wrong types,
 * required values left unspecified, failed per-key checks, then the six cross-parameter rules
 * (each only when all the parameters it reads passed). No I/O.
 */
export function hvParamsSyntaxProblems(filled: unknown): HvParamProblem[] {
  if (!isPlainObject(filled)) return [notADictionary(filled)];
  const params: Readonly<Record<string, unknown>> = filled;
  const problems: HvParamProblem[] = [];
  for (const key of Object.keys(params)) {
    if (!findHvParameter(key)) problems.push(unsupportedProblem(key));
  }
  const failed = new Set<string>();
  for (const name of HV_PARAMETER_NAMES) {
    const value = hasOwn(params, name) ? params[name] : undefined;
    const found =
      value === undefined
        ? [missingProblem(name)]
        : keyProblems(name, HV_PARAMETERS[name] as HvParamDefinition, value);
    if (found.length > 0) failed.add(name);
    problems.push(...found);
  }
  for (const rule of CROSS_PARAMETER_RULES) {
    if (rule.params.some((name) => failed.has(name))) continue;
    problems.push(...rule.problems(params as KvmHvParams));
  }
  return problems;
}

/** Throws {@link HvParamError} with every problem {@link hvParamsSyntaxProblems} finds. */
export function checkHvParamsSyntax(filled: unknown): void {
  const problems = hvParamsSyntaxProblems(filled);
  if (problems.length > 0) throw new HvParamError(problems);
}

/**
 * Every node-side problem: per-key node checks (files, directories, URLs) on specified values
 * of the right type, then the five node rules (each only when the parameters it reads have
 * the right type). Missing keys are reported; syntax is not re-checked.
 */
export async function hvParamsNodeProblems(
  filled: unknown,
  context: ValidationContext = {},
): Promise<HvParamProblem[]> {
  if (!isPlainObject(filled)) return [notADictionary(filled)];
  const params: Readonly<Record<string, unknown>> = filled;
  const problems: HvParamProblem[] = [];
  const unusable = new Set<string>();
  const keyChecks: Promise<HvParamProblem[]>[] = [];
  for (const name of HV_PARAMETER_NAMES) {
    const definition = HV_PARAMETERS[name] as HvParamDefinition;
    const value = hasOwn(params, name) ? params[name] : undefined;
    if (value === undefined) {
      problems.push(missingProblem(name));
      unusable.add(name);
      continue;
    }
    if (!matchesParamType(definition.type, value)) {
      unusable.add(name);
      continue;
    }
    const check = definition.node;
    if (check && !isUnspecified(value)) {
      keyChecks.push(
        check
          .problems(value as NonNullable<unknown>)
          .then((details) => details.map((detail) => validationProblem(name, detail, value))),
      );
    }
  }
  for (const found of await Promise.all(keyChecks)) problems.push(...found);
  for (const rule of NODE_PARAMETER_RULES) {
    if (rule.params.some((name) => unusable.has(name))) continue;
    problems.push(...(await rule.problems(params as KvmHvParams, context)));
  }
  return problems;
}

/** Throws {@link HvParamError} with every problem {@link hvParamsNodeProblems} finds. */
export async function validateHvParams(filled: unknown, context: ValidationContext = {}): Promise<void> {
  const problems = await hvParamsNodeProblems(filled, context);
  if (problems.length > 0) throw new HvParamError(problems);
}

/**
 * Throws {@link HvParamError} when instance-level hvparams set a cluster-level-only parameter
 * (`migration_bandwidth`, `migration_mode`, `migration_port`), listing all of them.
 */
export function checkHvParamsNotGlobal(instanceParams: Readonly<Record<string, unknown>>): void {
  const params = asRecord(instanceParams);
  const used = GLOBAL_HV_PARAMETERS.filter((name) => hasOwn(params, name));
  if (used.length === 0) return;
  throw new HvParamError([
    {
      param: used.length === 1 ? used[0]! : '',
      message:
        'The following hypervisor parameters are global and cannot be customized at instance level, ' +
        `please modify them at cluster level: ${used.join(', ')}`,
    },
  ]);
}
