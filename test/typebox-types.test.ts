/**
 * scripts/typebox-types.d.ts stands in for typebox in the published declarations. The type
 * assertions fail `npm run typecheck` when it and typebox disagree; the runtime test fails
 * when the registry starts using a schema kind the stand-in does not describe.
 */
import type * as Typebox from 'typebox';
import { describe, expect, expectTypeOf, it } from 'vitest';
import type * as Published from '../scripts/typebox-types.js';
import {
  HV_PARAMETERS,
  type InstanceRuntime,
  InstanceRuntimeSchema,
  type InstanceSpec,
  InstanceSpecSchema,
  type KvmHvParams,
  KvmHvParamsSchema,
} from '../src/internal.js';

/** The `~kind`s that scripts/typebox-types.d.ts declares. */
const DESCRIBED_KINDS = new Set([
  'String',
  'Integer',
  'Boolean',
  'Null',
  'Union',
  'Object',
  'Literal',
  'Array',
  'Record',
  'Unknown',
]);

function kindsIn(schema: unknown): string[] {
  const s = schema as {
    '~kind'?: string;
    anyOf?: unknown[];
    properties?: Record<string, unknown>;
    items?: unknown;
    patternProperties?: Record<string, unknown>;
  };
  const nested = [
    ...(s.anyOf ?? []),
    ...Object.values(s.properties ?? {}),
    ...(s.items ? [s.items] : []),
    ...Object.values(s.patternProperties ?? {}),
  ];
  return [String(s['~kind']), ...nested.flatMap(kindsIn)];
}

describe('published typebox types', () => {
  it('give the same KvmHvParams as typebox', () => {
    expectTypeOf<Published.Static<typeof KvmHvParamsSchema>>().toEqualTypeOf<KvmHvParams>();
    expectTypeOf<Published.Static<typeof KvmHvParamsSchema>>().toEqualTypeOf<
      Typebox.Static<typeof KvmHvParamsSchema>
    >();
  });

  it('give the same instance spec and runtime types as typebox', () => {
    expectTypeOf<Published.Static<typeof InstanceSpecSchema>>().toEqualTypeOf<InstanceSpec>();
    expectTypeOf<Published.Static<typeof InstanceRuntimeSchema>>().toEqualTypeOf<InstanceRuntime>();
  });

  it('declare the schema interfaces as typebox does', () => {
    expectTypeOf<Published.TLiteral<1>>().toEqualTypeOf<Typebox.TLiteral<1>>();
    expectTypeOf<Published.TArray<Published.TString>>().toEqualTypeOf<Typebox.TArray<Typebox.TString>>();
    expectTypeOf<Published.TUnknown>().toEqualTypeOf<Typebox.TUnknown>();
    expectTypeOf<Published.TString>().toEqualTypeOf<Typebox.TString>();
    expectTypeOf<Published.TInteger>().toEqualTypeOf<Typebox.TInteger>();
    expectTypeOf<Published.TBoolean>().toEqualTypeOf<Typebox.TBoolean>();
    expectTypeOf<Published.TNull>().toEqualTypeOf<Typebox.TNull>();
    expectTypeOf<Published.TUnion<[Published.TString, Published.TNull]>>().toEqualTypeOf<
      Typebox.TUnion<[Typebox.TString, Typebox.TNull]>
    >();
    expectTypeOf<typeof KvmHvParamsSchema>().toExtend<Published.Type.TObject>();
    expectTypeOf<Published.TObject>().toExtend<Typebox.TSchema>();
  });

  it('describe every schema kind the registry uses', () => {
    const used = new Set(kindsIn(KvmHvParamsSchema));
    for (const def of Object.values(HV_PARAMETERS)) for (const k of kindsIn(def.schema)) used.add(k);
    for (const k of [...kindsIn(InstanceSpecSchema), ...kindsIn(InstanceRuntimeSchema)]) used.add(k);
    expect([...used].filter((k) => !DESCRIBED_KINDS.has(k))).toEqual([]);
    expect(used.has('Object')).toBe(true);
  });
});
