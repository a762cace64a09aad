/**
 * Helpers for the CLI tests: they run the built `kvm-hv` (dist/cli/main.js) as a user
 * would. `ensureBuilt()` rebuilds dist once when any source file is newer than it
 * (`.ci/run` and `scripts/setup.sh` build first, so in CI this is a no-op).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Repository root. */
export const ROOT = resolve(import.meta.dirname, '../..');
/** The built command. */
export const BIN = join(ROOT, 'dist/cli/main.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function builtAt(): number {
  try {
    return statSync(BIN).mtimeMs;
  } catch {
    return 0;
  }
}

/**
 * Builds dist with tsup unless dist/cli/main.js is newer than every file in src/ and
 * package.json. A lock folder keeps two test files from building at once.
 */
export async function ensureBuilt(): Promise<void> {
  const markerPrefix = '.kvm-hv-test-built.';
  const marker = join(ROOT, 'node_modules', `${markerPrefix}${process.ppid}`);
  if (existsSync(marker)) return;
  const lock = join(ROOT, 'node_modules/.kvm-hv-test-build.lock');
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`could not take ${lock}; remove it if no build runs`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    if (existsSync(marker)) return;
    const sources = Math.max(newestMtime(join(ROOT, 'src')), statSync(join(ROOT, 'package.json')).mtimeMs);
    if (builtAt() < sources) execFileSync('npx', ['tsup', '--silent'], { cwd: ROOT, stdio: 'pipe' });
    for (const f of readdirSync(join(ROOT, 'node_modules'))) {
      if (f.startsWith(markerPrefix)) rmSync(join(ROOT, 'node_modules', f), { force: true });
    }
    writeFileSync(marker, '');
  } finally {
    rmdirSync(lock);
  }
}

/** What a finished `kvm-hv` run produced. */
export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A started `kvm-hv` process: its output so far and its end. */
export interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  done: Promise<RunResult>;
}

/** Starts `node dist/cli/main.js ...args` without waiting for it. */
export function start(args: string[], env: NodeJS.ProcessEnv = {}): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const done = new Promise<RunResult>((res) => {
    child.on('close', (code, signal) => res({ code, signal, stdout: out, stderr: err }));
  });
  return { child, stdout: () => out, stderr: () => err, done };
}

/** Runs `kvm-hv ...args` to the end (killed after `timeoutMs`). */
export async function run(
  args: string[],
  timeoutMs = 60_000,
  env: NodeJS.ProcessEnv = {},
): Promise<RunResult> {
  const r = start(args, env);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
  try {
    return await r.done;
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `pred(text)` holds for the process's stderr, or rejects after `timeoutMs`. */
export async function waitForStderr(r: Running, pred: (text: string) => boolean, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!pred(r.stderr())) {
    if (r.child.exitCode !== null) throw new Error(`kvm-hv exited early: ${r.stderr()}`);
    if (Date.now() > deadline) throw new Error(`timed out; stderr so far: ${r.stderr()}`);
    await new Promise((res) => setTimeout(res, 50));
  }
}
