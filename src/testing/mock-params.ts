/**
 * Migration parameters by QEMU version, for `MockMonitor`: which members
 * `query-migrate-parameters` has on a version, their defaults and value kinds.
 * Defaults match QEMU 7.2's reply (docs: shared notes §3).
 */
import { type QemuVersion, versionAtLeast } from '../qemu/version.js';

/** Value kind of a migration parameter. */
export type MockParamKind = 'int' | 'bool' | 'string';

/** One migration parameter known to the mock. */
export interface MockParamInfo {
  readonly name: string;
  readonly since: readonly [number, number];
  readonly until?: readonly [number, number];
  readonly kind: MockParamKind;
  readonly def: (v: QemuVersion) => number | boolean | string;
  /** Inclusive range for integers, with QEMU's message. */
  readonly range?: { min: number; max: number; message: string };
}

const c = (x: number | boolean | string) => () => x;

/** Every parameter the mock knows, in the order QEMU 7.2 lists them in HMP. */
export const MOCK_PARAMS: readonly MockParamInfo[] = [
  { name: 'announce-initial', since: [4, 0], kind: 'int', def: c(50) },
  { name: 'announce-max', since: [4, 0], kind: 'int', def: c(550) },
  { name: 'announce-rounds', since: [4, 0], kind: 'int', def: c(5) },
  { name: 'announce-step', since: [4, 0], kind: 'int', def: c(100) },
  { name: 'compress-level', since: [2, 4], until: [9, 1], kind: 'int', def: c(1) },
  { name: 'compress-threads', since: [2, 4], until: [9, 1], kind: 'int', def: c(8) },
  { name: 'compress-wait-thread', since: [3, 1], until: [9, 1], kind: 'bool', def: c(true) },
  { name: 'decompress-threads', since: [2, 4], until: [9, 1], kind: 'int', def: c(2) },
  { name: 'throttle-trigger-threshold', since: [5, 0], kind: 'int', def: c(50) },
  {
    name: 'cpu-throttle-initial',
    since: [2, 7],
    kind: 'int',
    def: c(20),
    range: {
      min: 1,
      max: 99,
      message: "Parameter 'cpu_throttle_initial' expects an integer in the range of 1 to 99",
    },
  },
  {
    name: 'cpu-throttle-increment',
    since: [2, 7],
    kind: 'int',
    def: c(10),
    range: {
      min: 1,
      max: 99,
      message: "Parameter 'cpu_throttle_increment' expects an integer in the range of 1 to 99",
    },
  },
  { name: 'cpu-throttle-tailslow', since: [5, 1], kind: 'bool', def: c(false) },
  { name: 'max-cpu-throttle', since: [3, 1], kind: 'int', def: c(99) },
  { name: 'tls-creds', since: [2, 7], kind: 'string', def: c('') },
  { name: 'tls-hostname', since: [2, 7], kind: 'string', def: c('') },
  {
    name: 'max-bandwidth',
    since: [2, 8],
    kind: 'int',
    def: (v) => (versionAtLeast(v, 5, 2) ? 134217728 : 33554432),
  },
  {
    name: 'downtime-limit',
    since: [2, 8],
    kind: 'int',
    def: c(300),
    range: {
      min: 0,
      max: 2_000_000,
      message: "Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms",
    },
  },
  { name: 'x-checkpoint-delay', since: [2, 8], kind: 'int', def: c(20000) },
  { name: 'block-incremental', since: [2, 10], until: [9, 1], kind: 'bool', def: c(false) },
  { name: 'x-multifd-channels', since: [2, 11], until: [4, 0], kind: 'int', def: c(2) },
  { name: 'x-multifd-page-count', since: [2, 11], until: [4, 0], kind: 'int', def: c(16) },
  { name: 'multifd-channels', since: [4, 0], kind: 'int', def: c(2) },
  { name: 'multifd-compression', since: [5, 0], kind: 'string', def: c('none') },
  { name: 'multifd-zlib-level', since: [5, 0], kind: 'int', def: c(1) },
  { name: 'multifd-zstd-level', since: [5, 0], kind: 'int', def: c(1) },
  { name: 'xbzrle-cache-size', since: [2, 11], kind: 'int', def: c(67108864) },
  { name: 'max-postcopy-bandwidth', since: [3, 0], kind: 'int', def: c(0) },
  { name: 'tls-authz', since: [4, 0], kind: 'string', def: c('') },
  { name: 'vcpu-dirty-limit', since: [8, 1], kind: 'int', def: c(1) },
  { name: 'x-vcpu-dirty-limit-period', since: [8, 1], kind: 'int', def: c(1000) },
  { name: 'avail-switchover-bandwidth', since: [8, 2], kind: 'int', def: c(0) },
  { name: 'mode', since: [8, 2], kind: 'string', def: c('normal') },
  { name: 'zero-page-detection', since: [9, 0], kind: 'string', def: c('multifd') },
  { name: 'direct-io', since: [9, 1], kind: 'bool', def: c(false) },
];

/** The parameters `query-migrate-parameters` has on `v` (empty before 2.4). */
export function paramsForVersion(v: QemuVersion): MockParamInfo[] {
  return MOCK_PARAMS.filter(
    (p) =>
      versionAtLeast(v, p.since[0], p.since[1]) && !(p.until && versionAtLeast(v, p.until[0], p.until[1])),
  );
}

/**
 * Parses an HMP size the way `qemu_strtosz_MiB` does: a number with an optional suffix
 * B, K, M, G, T, P, E (powers of 1024); a bare number means `defaultUnit` bytes.
 */
export function parseHmpSize(text: string, defaultUnit: number): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([bBkKmMgGtTpPeE])?$/.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const suffix = m[2]?.toUpperCase();
  const mult =
    suffix === undefined
      ? defaultUnit
      : { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4, P: 1024 ** 5, E: 1024 ** 6 }[suffix]!;
  return Math.round(n * mult);
}
