/**
 * The TypeBox 1.x schema types that kvm-hypervisor's public declarations use, written out so
 * the published .d.ts / .d.cts import nothing from typebox (scripts/build-types.ts puts this
 * file where 'typebox' is imported).
 *
 * Why: typebox's own declarations are ESM only (.d.mts): a .d.cts importing them fails under
 * TypeScript `module: node16` (TS1479), and they are ~630 kB of type-level machinery that a
 * consumer without skipLibCheck type-checks for half a minute. The interfaces below are
 * copied from typebox 1.x (`~kind` and `type` are what typebox itself keys on), so values
 * remain usable with typebox's own API; test/typebox-types.test.ts fails if this file and
 * typebox disagree on a schema or on `Static`.
 *
 * TypeBox is MIT-licensed, Copyright (c) 2017-2025 Haydn Paterson (sinclair).
 */

/** Any TypeBox schema (typebox's `TSchema`). */
// biome-ignore lint/suspicious/noEmptyInterface: typebox's TSchema is this empty interface.
export interface TSchema {}

/** `Type.String()`. */
export interface TString extends TSchema {
  '~kind': 'String';
  type: 'string';
}

/** `Type.Integer()`. */
export interface TInteger extends TSchema {
  '~kind': 'Integer';
  type: 'integer';
}

/** `Type.Boolean()`. */
export interface TBoolean extends TSchema {
  '~kind': 'Boolean';
  type: 'boolean';
}

/** `Type.Null()`. */
export interface TNull extends TSchema {
  '~kind': 'Null';
  type: 'null';
}

/** `Type.Union([...])`. */
export interface TUnion<Types extends TSchema[] = TSchema[]> extends TSchema {
  '~kind': 'Union';
  anyOf: Types;
}

/** The properties of an object schema. */
export type TProperties = Record<PropertyKey, TSchema>;

/** `Type.Object({...})`. */
export interface TObject<Properties extends TProperties = TProperties> extends TSchema {
  '~kind': 'Object';
  type: 'object';
  properties: Properties;
  required: (keyof Properties & string)[];
}

/** `Type.Literal(value)`. */
export interface TLiteral<
  Value extends string | number | boolean | bigint = string | number | boolean | bigint,
> extends TSchema {
  '~kind': 'Literal';
  type: Value extends bigint
    ? 'bigint'
    : Value extends boolean
      ? 'boolean'
      : Value extends number
        ? 'number'
        : Value extends string
          ? 'string'
          : never;
  const: Value;
}

/** `Type.Array(items)`. */
export interface TArray<Items extends TSchema = TSchema> extends TSchema {
  '~kind': 'Array';
  type: 'array';
  items: Items;
}

/** `Type.Record(Type.String(), value)`. */
export interface TRecord<Key extends string = string, Value extends TSchema = TSchema> extends TSchema {
  '~kind': 'Record';
  type: 'object';
  patternProperties: { [_ in Key]: Value };
}

/** `Type.Unknown()`. */
export interface TUnknown extends TSchema {
  '~kind': 'Unknown';
}

/** `Type.Optional(schema)`: a property that may be absent. */
export type TOptional<Type extends TSchema = TSchema> = Type & { '~optional': true };

type OptionalKeys<Properties extends TProperties> = {
  [K in keyof Properties]: Properties[K] extends TOptional<TSchema> ? K : never;
}[keyof Properties];

type Flatten<T> = { [K in keyof T]: T[K] };

type StaticObject<Properties extends TProperties> = Flatten<
  { [K in Exclude<keyof Properties, OptionalKeys<Properties>>]: Static<Properties[K]> } & {
    [K in OptionalKeys<Properties>]?: Static<Properties[K]>;
  }
>;

/** The value type a schema describes (typebox's `Static`, for the schema kinds above). */
export type Static<T extends TSchema> = T extends TString
  ? string
  : T extends TInteger
    ? number
    : T extends TBoolean
      ? boolean
      : T extends TNull
        ? null
        : T extends TLiteral<infer Value>
          ? Value
          : T extends TArray<infer Items>
            ? Static<Items>[]
            : T extends TRecord<string, infer Value>
              ? Record<string, Static<Value>>
              : T extends TUnknown
                ? unknown
                : T extends TUnion<infer Types>
                  ? Static<Types[number]>
                  : T extends TObject<infer Properties>
                    ? StaticObject<Properties>
                    : unknown;

type ObjectSchema<Properties extends TProperties> = TObject<Properties>;

/** typebox's `Type` namespace, as far as the declarations refer to it. */
export declare namespace Type {
  export type TObject<Properties extends TProperties = TProperties> = ObjectSchema<Properties>;
}
