/**
 * A plain, JSON-serializable JSON Schema of the KVM hvparams (for editors, config validation
 * and other languages).
 */
import { KvmHvParamsSchema } from './registry.js';

/** JSON Schema dialect the exported schema declares. */
export const JSON_SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema';

/**
 * JSON Schema of a filled set of KVM hvparams: every property with its type, description,
 * default and, where a per-key check allows it, `enum` or `minimum`/`maximum`. A fresh deep
 * copy each call, without TypeBox's internal markers.
 */
export function hvParamsJsonSchema(): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(KvmHvParamsSchema)) as Record<string, unknown>;
  return { $schema: JSON_SCHEMA_DIALECT, ...copy };
}
