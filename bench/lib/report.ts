/**
 * What every benchmark shares: robust statistics, a fixed-width table printer, the
 * machine description and the JSON results file under `bench/results/` (gitignored).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Milliseconds from a monotonic clock. */
export const nowMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Summary of a sample set, in the samples' unit. */
export interface Summary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
}

/** Median and friends of `samples` (nearest-rank quantiles). */
export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
  return {
    count: s.length,
    mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length),
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
  };
}

/** A number with sensible precision for a table cell. */
export function fmt(x: number | undefined, unit = ''): string {
  if (x === undefined || Number.isNaN(x)) return '-';
  const t =
    Math.abs(x) >= 100
      ? x.toFixed(0)
      : Math.abs(x) >= 10
        ? x.toFixed(1)
        : Math.abs(x) >= 1
          ? x.toFixed(2)
          : x.toFixed(3);
  return `${t}${unit}`;
}

/** Prints rows as a left-aligned first column and right-aligned others. */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** The machine a run was measured on. */
interface MachineInfo {
  cores: number;
  cpuModel: string;
  loadAvg1m: number;
  node: string;
  qemu: string;
}

/** Cores, CPU model, load, Node and the QEMU binary's version line. */
function machineInfo(binary = process.env.QEMU || 'qemu-system-x86_64'): MachineInfo {
  let qemu = 'unknown';
  try {
    qemu = execFileSync(binary, ['--version'], { encoding: 'utf8' }).split('\n')[0] ?? qemu;
  } catch {
    // reported as unknown
  }
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    loadAvg1m: loadavg()[0] ?? 0,
    node: process.version,
    qemu,
  };
}

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

/** Writes `bench/results/<name>.json` (and a timestamped copy); returns the path. */
export function writeResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const body = `${JSON.stringify({ benchmark: name, at: new Date().toISOString(), machine: machineInfo(), ...(data as object) }, null, 2)}\n`;
  const path = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(path, body);
  writeFileSync(join(RESULTS_DIR, `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`), body);
  return path;
}

/** True when `--quick` is on the command line or `BENCH_QUICK=1`: small sizes, no timing claims. */
export const QUICK = process.argv.includes('--quick') || process.env.BENCH_QUICK === '1';

/** The value of `--name=value` on the command line, else `fallback`. */
export function arg(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : fallback;
}

/** Runs `main`; a thrown error prints and exits non-zero (what the quick mode in CI checks). */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
