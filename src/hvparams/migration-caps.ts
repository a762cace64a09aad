/**
 * `migration_caps`: a `:`-separated list of QEMU migration capability names. Ganeti passes it
 * to QEMU unchecked; here every item is checked, because the value ends up in monitor
 * commands (a newline in it would start a second HMP command).
 */
import { HvParamError } from '../errors.js';
import {
  canonicalCapabilityName,
  checkCapabilityCombination,
  findCapability,
  KNOWN_CAPABILITY_NAMES,
} from '../qemu/capabilities.js';
import { displayValue, syntaxProblem } from './messages.js';

/** The hvparam key this module checks. */
const PARAM = 'migration_caps';
/** Separator between capability names. */
export const MIGRATION_CAPS_SEP = ':';
/**
 * Problems reported one by one; the rest are counted. Each is later framed with the whole
 * value, so an unbounded list would make the messages quadratic in the value's length.
 */
const MAX_REPORTED_PROBLEMS = 10;

/**
 * Every problem with a `migration_caps` value, as Ganeti-style syntax-check details
 * (without the `Parameter … fails syntax check:` frame). `""` has none. Past the first 10,
 * problems are only counted (`and N more problems in the same value`).
 */
export function migrationCapsProblems(value: string): string[] {
  if (value === '') return [];
  const problems: string[] = [];
  const seen = new Map<string, string>(); // canonical name → spelling first seen
  const items = value.split(MIGRATION_CAPS_SEP);
  items.forEach((item, index) => {
    if (item === '') {
      problems.push(`empty capability name at position ${index + 1}`);
      return;
    }
    if (!/^[a-z0-9-]+$/.test(item)) {
      problems.push(
        `capability name '${displayValue(item)}' may contain only lowercase letters, digits and '-' ` +
          `(items are separated by '${MIGRATION_CAPS_SEP}')`,
      );
      return;
    }
    if (!findCapability(item)) {
      problems.push(`unknown migration capability '${item}' (known: ${KNOWN_CAPABILITY_NAMES.join(', ')})`);
      return;
    }
    const canonical = canonicalCapabilityName(item);
    const earlier = seen.get(canonical);
    if (earlier === undefined) {
      seen.set(canonical, item);
    } else if (earlier === item) {
      problems.push(`capability '${item}' is listed twice`);
    } else {
      problems.push(`capabilities '${earlier}' and '${item}' are the same capability`);
    }
  });
  // Combination rules only make sense for a list whose every item is valid.
  if (problems.length === 0) {
    for (const violation of checkCapabilityCombination(items)) problems.push(violation.message);
  }
  if (problems.length > MAX_REPORTED_PROBLEMS) {
    const more = problems.length - MAX_REPORTED_PROBLEMS;
    problems.length = MAX_REPORTED_PROBLEMS;
    problems.push(`and ${more} more problem${more === 1 ? '' : 's'} in the same value`);
  }
  return problems;
}

/**
 * Parses a `migration_caps` value into its capability names, in the order and spelling given
 * (`""` gives `[]`). Throws {@link HvParamError} listing every problem: unknown or empty names,
 * characters outside `[a-z0-9-]`, duplicates (also one capability under both spellings, such as
 * `multifd:x-multifd`) and combinations QEMU refuses in every version.
 */
export function parseMigrationCaps(value: string): string[] {
  if (typeof value !== 'string') {
    throw new HvParamError([syntaxProblem(PARAM, 'must be a string', value)]);
  }
  const problems = migrationCapsProblems(value);
  if (problems.length > 0) throw new HvParamError(problems.map((p) => syntaxProblem(PARAM, p, value)));
  return value === '' ? [] : value.split(MIGRATION_CAPS_SEP);
}
