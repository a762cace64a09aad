/**
 * KVM hvparams: registry, coercion, checks, `-H` parsing and helpers.
 * @packageDocumentation
 */
export { ASSESSMENT_RULES, type AssessmentRule, assessHvParams } from './assess.js';
export {
  checkHvParamsNotGlobal,
  checkHvParamsSyntax,
  fillHvParamDefaults,
  hvParamsNodeProblems,
  hvParamsSyntaxProblems,
  validateHvParams,
} from './check.js';
export { type HvParamsSpec, parseHvParams } from './cli-spec.js';
export { type CoerceOptions, coerceHvParams, forceDictType } from './coerce.js';
export {
  type CpuMaskEntry,
  CpuMaskError,
  MAX_CPU_MASK_TOTAL,
  MAX_CPU_NUMBER,
  parseCpuMask,
  parseMultiCpuMask,
} from './cpu-mask.js';
export {
  CROSS_PARAMETER_RULES,
  type CrossParameterRule,
  SPICE_ADDITIONAL_PARAMETERS,
} from './cross-checks.js';
export { hvParamsJsonSchema, JSON_SCHEMA_DIALECT } from './json-schema.js';
export { MIGRATION_CAPS_SEP, migrationCapsProblems, parseMigrationCaps } from './migration-caps.js';
export { DEFAULT_PASSWD_FILE, NODE_PARAMETER_RULES, type NodeParameterRule } from './node-checks.js';
export { parseUnit, UnitParseError } from './parse-unit.js';

export {
  defaultHvParams,
  findHvParameter,
  GLOBAL_HV_PARAMETERS,
  HV_PARAMETER_NAMES,
  HV_PARAMETERS,
  type HvParameterName,
  type KvmHvParams,
  type KvmHvParamsInput,
  KvmHvParamsSchema,
  REQUIRED_HV_PARAMETERS,
} from './registry.js';
export type { HvParamDefinition, HvParamType, NodeCheck, SyntaxCheck, ValidationContext } from './types.js';
export * from './value-sets.js';
