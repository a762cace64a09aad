/**
 * Pure parsing of HMP `info migrate`, in every layout QEMU has printed:
 *
 * - **classic** (1.7 … 10.0): `Migration status: active`, then one `key: value` line per
 *   statistic (`transferred ram: 12324 kbytes`, `expected downtime: 300 ms`, …), preceded
 *   by a `capabilities:` line (≤ 2.x) or a `globals:` block (later releases).
 * - **sectioned** (after 10.0; seen on 11.1): `Status: \t\tactive`,
 *   `Time (ms): \t\ttotal=1501, setup=0, exp_down=300`, `Remaining: \t\t114 MiB`, and a
 *   `RAM info:` section (`Sizes:`, `Transfers:`, `Page Rates (pps):`, `Others:`) with sizes
 *   in human units rounded to three significant digits (`13.2 MiB`).
 *
 * Both appear on the source and on the destination (`socket address: [` / `Sockets: [`).
 * Text that is empty, or holds only the globals block or the list of reasons that block an
 * outgoing migration, means no migration yet (`none`). Anything else without a readable
 * status line is an {@link UnrecognizedOutputError}, never `none`: reading a new layout as
 * "nothing happened" is how a completed migration gets resumed on the source.
 */
import { UnrecognizedOutputError } from '../errors.js';
import { finishProgress, firstPassDone, speedBytesPerSec } from './progress-fields.js';
import type { MigrationProgress } from './types.js';

const COMMAND = 'info migrate';

const KBYTES_UNITS: Record<string, number> = {
  bytes: 1,
  kbytes: 1024,
  mbytes: 1024 ** 2,
  gbytes: 1024 ** 3,
};

const HUMAN_UNITS: Record<string, number> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  PiB: 1024 ** 5,
  EiB: 1024 ** 6,
};

/**
 * Reads a size as QEMU's `size_to_str` prints it (`0 B`, `4 KiB`, `13.2 MiB`, `0.98 GiB`)
 * into bytes, or undefined when the text is not such a size.
 */
export function parseHumanSize(text: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?(?:e[+-]?\d+)?)\s*(B|[KMGTPE]iB)$/.exec(text?.trim() ?? '');
  if (!m) return undefined;
  const n = Number(m[1]);
  return Number.isFinite(n) ? Math.round(n * HUMAN_UNITS[m[2]!]!) : undefined;
}

/** `total=1501, setup=0, exp_down=300` → a map of the pairs. */
function pairs(text: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (text ?? '').split(',')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  return out;
}

/** A leading decimal number (`300 ms`, `67.31 mbps`, `20`), or undefined. */
function leadingNumber(text: string | undefined): number | undefined {
  const m = /^(\d+(?:\.\d+)?)/.exec(text?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

/** Blocks that carry no migration state: skipped wherever they appear. */
type Block = 'globals' | 'blocked' | 'addresses';

interface Scan {
  status?: string;
  errorDesc?: string;
  layout?: 'classic' | 'sectioned';
  /** `key: value` lines, key lower-cased (`transferred ram`, `time (ms)`, `sizes`). */
  fields: Map<string, string>;
  /** Lines outside every known block when no status line came (these make it an error). */
  stray: number;
}

function scan(text: string): Scan {
  const out: Scan = { fields: new Map(), stray: 0 };
  let block: Block | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    if (block === 'addresses') {
      if (line === ']') block = undefined;
      continue;
    }
    // `store-global-state: on`: one hyphenated lower-case key and one value.
    if (block === 'globals' && /^[a-z][a-z0-9-]*:\s*\S+$/.test(line)) continue;
    // The reasons under `Outgoing migration blocked:` are indented.
    if (block === 'blocked' && /^\s/.test(raw)) continue;
    block = undefined;
    if (/^globals:$/i.test(line)) block = 'globals';
    else if (line === 'Outgoing migration blocked:') block = 'blocked';
    else if (/^(socket address|sockets):\s*\[$/i.test(line)) block = 'addresses';
    if (block) continue;

    const st = /^(Migration status|Status):(.*)$/.exec(line);
    if (st) {
      const m = /^\s*([a-z][a-z0-9-]*)(?:\s+\((.*)\))?\s*$/i.exec(st[2]!);
      // Two status lines, or one whose value is not a status word: nothing can be trusted.
      if (!m || out.status !== undefined) throw new UnrecognizedOutputError(COMMAND, text, 'status line');
      out.status = m[1]!.toLowerCase();
      if (m[2] !== undefined) out.errorDesc = m[2];
      out.layout = st[1] === 'Status' ? 'sectioned' : 'classic';
      continue;
    }
    const kv = /^([^:]+?):\s*(.*)$/.exec(line);
    if (kv && !/^capabilities$/i.test(kv[1]!)) out.fields.set(kv[1]!.toLowerCase(), kv[2]!.trim());
    else out.stray++;
  }
  if (out.status === undefined) out.stray += out.fields.size;
  return out;
}

function classic(s: Scan, p: MigrationProgress): void {
  const size = (key: string): number | undefined => {
    const m = /^(\d+)\s*(bytes|kbytes|mbytes|gbytes)?$/.exec(s.fields.get(key) ?? '');
    return m ? Number(m[1]) * KBYTES_UNITS[m[2] ?? 'bytes']! : undefined;
  };
  const plain = (key: string) => leadingNumber(s.fields.get(key));
  const pageSize = size('page size') ?? 4096;
  p.transferredBytes = size('transferred ram');
  p.remainingBytes = size('remaining ram');
  p.totalBytes = size('total ram');
  p.speedBytesPerSec = speedBytesPerSec(plain('throughput'), plain('pages-per-second'), pageSize);
  const dirty = plain('dirty pages rate');
  p.dirtyRateBytesPerSec = dirty === undefined ? undefined : dirty * pageSize;
  p.expectedDowntimeMs = plain('expected downtime');
  p.downtimeMs = plain('downtime');
  p.totalTimeMs = plain('total time');
  p.pass = plain('dirty sync count');
  p.firstPassDone = firstPassDone(plain('normal'), plain('duplicate'), pageSize, p.totalBytes);
  p.throttlePercent = plain('cpu throttle percentage');
}

function sectioned(s: Scan, p: MigrationProgress): void {
  const time = pairs(s.fields.get('time (ms)'));
  const sizes = pairs(s.fields.get('sizes'));
  const transfers = pairs(s.fields.get('transfers'));
  const rates = pairs(s.fields.get('page rates (pps)'));
  const others = pairs(s.fields.get('others'));
  const pageSize = parseHumanSize(sizes.get('pagesize')) ?? 4096;
  p.transferredBytes = parseHumanSize(transfers.get('transferred'));
  p.remainingBytes = parseHumanSize(s.fields.get('remaining')) ?? parseHumanSize(transfers.get('remain'));
  p.totalBytes = parseHumanSize(sizes.get('total'));
  p.speedBytesPerSec = speedBytesPerSec(
    leadingNumber(s.fields.get('throughput (mbps)')),
    leadingNumber(rates.get('transfer')),
    pageSize,
  );
  const dirty = leadingNumber(rates.get('dirty'));
  p.dirtyRateBytesPerSec = dirty === undefined ? undefined : dirty * pageSize;
  p.expectedDowntimeMs = leadingNumber(time.get('exp_down'));
  p.downtimeMs = leadingNumber(time.get('down'));
  p.totalTimeMs = leadingNumber(time.get('total'));
  p.pass = leadingNumber(others.get('dirty_syncs'));
  // Page counts are exact, the total is rounded to three significant digits (±0.5 %).
  const pages = pairs(s.fields.get('page types'));
  p.firstPassDone = firstPassDone(
    leadingNumber(pages.get('normal')),
    leadingNumber(pages.get('zero')),
    pageSize,
    p.totalBytes,
    0.005,
  );
  p.throttlePercent = leadingNumber(s.fields.get('cpu throttle (%)'));
}

/**
 * Parses HMP `info migrate` text from any QEMU release (see the module comment for the
 * layouts) into a {@link MigrationProgress}. Sizes become bytes.
 * @throws UnrecognizedOutputError when the text has no readable status line and is not
 *   one of the known "no migration" outputs, or when a status line cannot be read.
 */
export function parseInfoMigrate(text: string): MigrationProgress {
  const s = scan(text);
  if (s.status === undefined) {
    if (s.stray > 0) throw new UnrecognizedOutputError(COMMAND, text);
    return { status: 'none' };
  }
  const p: MigrationProgress = { status: s.status };
  if (s.layout === 'sectioned') sectioned(s, p);
  else classic(s, p);
  if (s.errorDesc !== undefined) p.errorDesc = s.errorDesc;
  return finishProgress(p);
}
