/**
 * The `-H hypervisor:key=value,…` option of Ganeti's command line (`_SplitIdentKeyVal` and
 * `_SplitKeyVal`).
 */
import { HvParamError } from '../errors.js';
import { displayValue } from './messages.js';

/** A parsed `-H` option: values are still raw (strings, `true`, `false`, `null`). */
export interface HvParamsSpec {
  /** Hypervisor name as given (`kvm`). */
  hypervisor: string;
  /** `k=v` → `"v"`, bare `k` → `true`, `no_k` → `false`, `-k` → `null`. */
  params: Record<string, string | boolean | null>;
}

const NO_PREFIX = 'no_';

/** An `HvParamError` with one problem; `param` is the key concerned, `''` for the whole option. */
function specError(message: string, param = ''): HvParamError {
  return new HvParamError([{ param, message }]);
}
const UNSET_PREFIX = '-';

/** Splits on `,` unless escaped as `\,`; `\\` stands for one backslash. */
function splitItems(text: string): string[] {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const char = text[i]!;
    const next = text[i + 1];
    if (char === '\\' && (next === ',' || next === '\\')) {
      current += next;
      i++;
    } else if (char === ',') {
      items.push(current);
      current = '';
    } else {
      current += char;
    }
  }
  items.push(current);
  return items;
}

/**
 * Parses a `-H` value such as `kvm:migration_caps=xbzrle:auto-converge,acpi,no_vnc_tls`.
 * The hypervisor name ends at the first `:`, so values may contain `:`; items are separated
 * by `,` (`\,` for a literal comma). `kvm` alone gives no parameters. Throws
 * {@link HvParamError} (one problem) naming the offending part: an empty or prefixed hypervisor name,
 * an empty item or key, or a key given twice.
 */
export function parseHvParams(spec: string): HvParamsSpec {
  if (typeof spec !== 'string') {
    throw specError(`Invalid hypervisor parameters '${displayValue(spec)}': expected a string`);
  }
  const colon = spec.indexOf(':');
  const hypervisor = colon === -1 ? spec : spec.slice(0, colon);
  const rest = colon === -1 ? '' : spec.slice(colon + 1);
  if (hypervisor.trim() === '') {
    throw specError(`Invalid hypervisor parameters '${spec}': the hypervisor name is empty`);
  }
  if (hypervisor.startsWith(NO_PREFIX) || hypervisor.startsWith(UNSET_PREFIX)) {
    throw specError(
      `Invalid hypervisor parameters '${spec}': resetting a whole hypervisor ('${hypervisor}') is not supported here`,
    );
  }
  const params: Record<string, string | boolean | null> = {};
  if (rest === '') return { hypervisor, params };
  for (const item of splitItems(rest)) {
    let key: string;
    let value: string | boolean | null;
    const equals = item.indexOf('=');
    if (equals !== -1) {
      key = item.slice(0, equals);
      value = item.slice(equals + 1);
    } else if (item.startsWith(NO_PREFIX)) {
      key = item.slice(NO_PREFIX.length);
      value = false;
    } else if (item.startsWith(UNSET_PREFIX)) {
      key = item.slice(UNSET_PREFIX.length);
      value = null;
    } else {
      key = item;
      value = true;
    }
    if (key === '') {
      throw specError(`Invalid item '${item}' in hypervisor parameters '${spec}': the key is empty`);
    }
    if (Object.hasOwn(params, key)) {
      throw specError(`Key '${key}' is given twice in hypervisor parameters '${spec}'`, key);
    }
    Object.defineProperty(params, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return { hypervisor, params };
}
