/**
 * Whether this node can run instances: Ganeti's `Verify`, which checks that the KVM
 * binary and socat exist and joins the problems with `; `. Here each check is a typed
 * result: the QEMU binary (exists, executable, answers `--version`), socat (the serial
 * console needs it), the run directory (created as the life cycle creates it, each folder
 * written to), and `/dev/kvm`
 * when asked for (`requireKvm`, or `kvm_flag=enabled`).
 */
import { accessSync, constants, rmSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { RunLayout } from '../instance/layout.js';
import { ensureRunLayout } from '../instance/state.js';
import { kvmUsable } from '../qemu/accel.js';
import { formatVersion } from '../qemu/version.js';
import { qemuBinaryVersion } from './info.js';

/** One check of {@link verifyNode}. */
export interface NodeVerifyCheck {
  /** `kvm_path`, `socat`, `run-dir`, `/dev/kvm`. */
  check: string;
  ok: boolean;
  /** What was found (`QEMU 7.2.22`, the path), or the problem. */
  detail: string;
}

/** What {@link verifyNode} reports. */
export interface NodeVerification {
  ok: boolean;
  checks: NodeVerifyCheck[];
  /** The failed checks' details; Ganeti's `Verify` result is `problems.join('; ')`. */
  problems: string[];
}

/** What {@link verifyNode} checks. */
export interface VerifyNodeOptions {
  /** The QEMU binary (`kvm_path`). */
  kvmPath: string;
  layout: RunLayout;
  /** Check that KVM is usable (`/dev/kvm` opens read-write). */
  requireKvm?: boolean;
  /** The KVM device (default `/dev/kvm`). */
  kvmDevice?: string;
  /** The socat binary: a path, or a name looked up on `PATH` (default `socat`). */
  socat?: string;
  /** `PATH` to look socat up in (default `process.env.PATH`). */
  path?: string;
}

/** The first executable `name` on `path` (a name with a `/` is taken as it is), or undefined. */
export function findExecutable(name: string, path = process.env.PATH ?? ''): string | undefined {
  const candidates = name.includes('/')
    ? [name]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      if (statSync(c).isFile()) {
        accessSync(c, constants.X_OK);
        return c;
      }
    } catch {
      // not here
    }
  }
  return undefined;
}

async function checkQemu(kvmPath: string): Promise<NodeVerifyCheck> {
  const check = 'kvm_path';
  try {
    if (!statSync(kvmPath).isFile())
      return { check, ok: false, detail: `The KVM binary ('${kvmPath}') is not a file` };
  } catch {
    return { check, ok: false, detail: `The KVM binary ('${kvmPath}') does not exist` };
  }
  try {
    accessSync(kvmPath, constants.X_OK);
  } catch {
    return { check, ok: false, detail: `The KVM binary ('${kvmPath}') is not executable` };
  }
  try {
    return { check, ok: true, detail: `${kvmPath}: QEMU ${formatVersion(await qemuBinaryVersion(kvmPath))}` };
  } catch (e) {
    return { check, ok: false, detail: (e as Error).message };
  }
}

/**
 * Creates the run directory's folders as the life cycle does (Ganeti's constructor does the
 * same with `EnsureDirs`), then writes and removes a file in each: permission bits alone
 * do not tell (root passes `access()` on a read-only mount or in `/proc`).
 */
function checkRunDir(layout: RunLayout): string | undefined {
  try {
    ensureRunLayout(layout);
  } catch (e) {
    return `cannot create ${layout.root}: ${(e as Error).message}`;
  }
  for (const dir of [layout.pid, layout.ctrl, layout.conf, layout.chroot, layout.log]) {
    const probe = join(dir, `.verify-${process.pid}`);
    try {
      writeFileSync(probe, '');
      rmSync(probe, { force: true });
    } catch (e) {
      return `${dir} is not writable: ${(e as Error).message}`;
    }
  }
  return undefined;
}

/** Runs every check; never throws for a failed check (each is reported). */
export async function verifyNode(opts: VerifyNodeOptions): Promise<NodeVerification> {
  const checks: NodeVerifyCheck[] = [await checkQemu(opts.kvmPath)];
  const socatName = opts.socat ?? 'socat';
  const socat = findExecutable(socatName, opts.path);
  checks.push(
    socat
      ? { check: 'socat', ok: true, detail: socat }
      : { check: 'socat', ok: false, detail: `The socat binary ('${socatName}') does not exist` },
  );
  const runDirProblem = checkRunDir(opts.layout);
  checks.push(
    runDirProblem === undefined
      ? { check: 'run-dir', ok: true, detail: opts.layout.root }
      : { check: 'run-dir', ok: false, detail: `run directory: ${runDirProblem}` },
  );
  if (opts.requireKvm) {
    const dev = opts.kvmDevice ?? '/dev/kvm';
    checks.push(
      kvmUsable(dev)
        ? { check: '/dev/kvm', ok: true, detail: `${dev} opens read-write` }
        : { check: '/dev/kvm', ok: false, detail: `KVM is not usable: ${dev} does not open read-write` },
    );
  }
  const problems = checks.filter((c) => !c.ok).map((c) => c.detail);
  return { ok: problems.length === 0, checks, problems };
}
