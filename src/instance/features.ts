/**
 * What one QEMU binary can do, asked once per binary: one short probe process
 * (`-machine none -qmp stdio`) answers `query-version`, `query-machines`, `qom-list-types`,
 * `query-commands` and `query-cpu-definitions`, `-help` gives the option names and
 * `-machine help` the machine types' descriptions (which name their chipset). The
 * result is cached per binary path, modification time and size, so a start does not spawn
 * QEMU again (Ganeti runs `--help` up to seven times per start).
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { HypervisorError } from '../errors.js';
import { formatVersion, type QemuVersion } from '../qemu/version.js';
import {
  PROBED_ACCELERATORS,
  PROBED_DEVICES,
  parseCpuDefinitions,
  parseHelpOptions,
  parseMachineHelp,
  parseQueryCommands,
  parseQueryMachines,
  parseQueryVersion,
  parseRunWithKeys,
  parseTypeProbes,
  type QemuMachineType,
  type QemuProbeReplies,
  withDescriptions,
} from './features-parse.js';

export type { QemuMachineType, QemuProbeReplies } from './features-parse.js';

/** Everything the runtime resolver and the argv renderer need to know about one QEMU binary. */
export interface QemuFeatures {
  /** The executable (argv[0] of the rendered command line). */
  binary: string;
  version: QemuVersion;
  /** Distribution package string of `query-version` (`Debian 1:7.2+dfsg-…`), may be empty. */
  package: string;
  /**
   * Machine types, sorted by name: `query-machines`, with the descriptions of
   * `-machine help` where the probe recorded it.
   */
  machines: QemuMachineType[];
  /** The device types of {@link PROBED_DEVICES} this QEMU has, sorted. */
  devices: string[];
  /** Property names of each device in {@link QemuFeatures.devices}. */
  deviceProperties: Record<string, string[]>;
  /** Accelerators compiled in (`kvm`, `tcg`, …), sorted. */
  accelerators: string[];
  /** QMP commands, sorted. */
  commands: string[];
  /** CPU models (`-cpu` names), sorted. */
  cpuModels: string[];
  /**
   * Command-line options `-help` lists, without the dash (`no-acpi`, `run-with`, `audio`,
   * `soundhw`, …): every listed name maps to true; an absent key means "not supported".
   */
  options: Record<string, boolean>;
  /** Keys `-run-with` accepts (`chroot`, `user`, …); empty when QEMU has no `-run-with`. */
  runWith: string[];
}

/** Builds {@link QemuFeatures} from recorded probe replies (pure; used by tests on fixtures). */
export function featuresFromProbe(binary: string, replies: QemuProbeReplies): QemuFeatures {
  const { version, package: pkg } = parseQueryVersion(replies.version);
  const options: Record<string, boolean> = {};
  for (const name of parseHelpOptions(replies.help)) options[name] = true;
  const deviceProperties = parseTypeProbes('device-list-properties', replies.devices);
  return {
    binary,
    version,
    package: pkg,
    machines:
      replies.machineHelp === undefined
        ? parseQueryMachines(replies.machines)
        : withDescriptions(parseQueryMachines(replies.machines), parseMachineHelp(replies.machineHelp)),
    devices: Object.keys(deviceProperties),
    deviceProperties,
    accelerators: Object.keys(parseTypeProbes('qom-list-properties', replies.accelerators)),
    commands: parseQueryCommands(replies.commands),
    cpuModels: parseCpuDefinitions(replies.cpuDefinitions),
    options,
    runWith: parseRunWithKeys(replies.help),
  };
}

/** True when `features` lists command-line option `-name`. */
export function hasOption(features: QemuFeatures, name: string): boolean {
  return features.options[name] === true;
}

/** True when `features` lists device type `name`. */
export function hasDevice(features: QemuFeatures, name: string): boolean {
  return features.devices.includes(name);
}

/** Options of {@link probeQemuFeatures}. */
export interface ProbeOptions {
  /** Deadline for the whole probe (default 30 s); the probe process is killed after it. */
  timeoutMs?: number;
  /** Environment of the probe processes (default: this process's), e.g. `QEMU_MODULE_DIR`. */
  env?: NodeJS.ProcessEnv;
  /** Skip the caches and probe again. */
  refresh?: boolean;
  /**
   * A folder for a cache file per binary (`qemu-features-<hash>.json`: the raw replies with
   * the binary's mtime and size), so that other processes skip the probe too. The replies
   * are parsed again on every read; an unreadable or stale file means a new probe, and a
   * file that cannot be written is left out (the probe result is still returned).
   */
  cacheDir?: string;
}

/** The probe could not run or QEMU did not answer it. */
export class QemuProbeError extends HypervisorError {
  override name = 'QemuProbeError';
  /** The binary that was probed. */
  readonly binary: string;
  constructor(binary: string, message: string, options?: { cause: unknown }) {
    super(`probing QEMU '${binary}': ${message}`, options);
    this.binary = binary;
  }
}

const PROBE_ARGS = [
  '-S',
  '-nodefaults',
  '-no-user-config',
  '-display',
  'none',
  '-machine',
  'none',
  '-qmp',
  'stdio',
];

type ProbeRequest =
  | { key: 'version' | 'machines' | 'commands' | 'cpuDefinitions'; execute: string }
  | { key: 'devices' | 'accelerators'; name: string; execute: string; arguments: object };

/** The probe's QMP requests, in order, with where each reply goes in {@link QemuProbeReplies}. */
const PROBE_REQUESTS: readonly ProbeRequest[] = [
  { key: 'version', execute: 'query-version' },
  { key: 'machines', execute: 'query-machines' },
  { key: 'commands', execute: 'query-commands' },
  { key: 'cpuDefinitions', execute: 'query-cpu-definitions' },
  ...PROBED_ACCELERATORS.map(
    (name): ProbeRequest => ({
      key: 'accelerators',
      name,
      execute: 'qom-list-properties',
      arguments: { typename: `${name}-accel` },
    }),
  ),
  ...PROBED_DEVICES.map(
    (name): ProbeRequest => ({
      key: 'devices',
      name,
      execute: 'device-list-properties',
      arguments: { typename: name },
    }),
  ),
];

/**
 * Runs the probe process, `-help` and `-machine help` (all three at once); returns the raw
 * replies (what the fixtures record).
 */
export async function recordQemuProbe(binary: string, opts: ProbeOptions = {}): Promise<QemuProbeReplies> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const [qmp, help, machineHelp] = await Promise.all([
    runQmpProbe(binary, timeoutMs, opts.env),
    runText(binary, ['-help'], timeoutMs, opts.env),
    runText(binary, ['-machine', 'help'], timeoutMs, opts.env),
  ]);
  return { ...qmp, help, machineHelp };
}

/** The standard output of `binary args` (a help text: QEMU prints it and exits 0). */
function runText(
  binary: string,
  args: string[],
  timeoutMs: number,
  env: NodeJS.ProcessEnv | undefined,
): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      binary,
      args,
      { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 4 << 20, env: env ?? process.env },
      (err, stdout, stderr) => {
        if (err)
          reject(
            new QemuProbeError(binary, `${args.join(' ')} failed: ${err.message} ${stderr}`.trim(), {
              cause: err,
            }),
          );
        else resolve(stdout);
      },
    );
  });
}

function runQmpProbe(
  binary: string,
  timeoutMs: number,
  env: NodeJS.ProcessEnv | undefined,
): Promise<Omit<QemuProbeReplies, 'help' | 'machineHelp'>> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, PROBE_ARGS, { stdio: ['pipe', 'pipe', 'pipe'], env: env ?? process.env });
    const replies: Omit<QemuProbeReplies, 'help' | 'machineHelp'> = {
      version: undefined,
      machines: undefined,
      commands: undefined,
      cpuDefinitions: undefined,
      devices: {},
      accelerators: {},
    };
    let answered = 0;
    let stdout = '';
    let stderr = '';
    let greeted = false;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      if (err) reject(err);
      else resolve(replies);
    };
    // Holds even when QEMU hangs before its greeting.
    const timer = setTimeout(
      () =>
        finish(
          new QemuProbeError(binary, `no complete answer within ${timeoutMs} ms; stderr: ${stderr.trim()}`),
        ),
      timeoutMs,
    );
    const send = (msg: object) => child.stdin.write(`${JSON.stringify(msg)}\n`);
    child.on('error', (err) => finish(new QemuProbeError(binary, err.message, { cause: err })));
    // 'close', not 'exit': stderr is complete only then.
    child.on('close', (code, signal) => {
      if (settled) return;
      finish(
        new QemuProbeError(
          binary,
          `the probe process exited (${signal ?? `code ${code}`}) before answering; stderr: ${stderr.trim()}`,
        ),
      );
    });
    child.stdin.on('error', () => {
      // QEMU exited: reported by 'exit'.
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-8000);
    });
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk;
      let nl = stdout.indexOf('\n');
      while (nl >= 0) {
        const line = stdout.slice(0, nl).trim();
        stdout = stdout.slice(nl + 1);
        nl = stdout.indexOf('\n');
        if (line === '') continue;
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch (cause) {
          finish(new QemuProbeError(binary, `not QMP: ${JSON.stringify(line.slice(0, 500))}`, { cause }));
          return;
        }
        if (!greeted) {
          if (!('QMP' in msg)) {
            finish(new QemuProbeError(binary, `no QMP greeting: ${JSON.stringify(line.slice(0, 500))}`));
            return;
          }
          greeted = true;
          send({ execute: 'qmp_capabilities', id: 'caps' });
          PROBE_REQUESTS.forEach((r, i) => {
            send({ execute: r.execute, ...('arguments' in r ? { arguments: r.arguments } : {}), id: i });
          });
          continue;
        }
        if ('event' in msg || msg.id === 'caps') continue;
        const request = typeof msg.id === 'number' ? PROBE_REQUESTS[msg.id] : undefined;
        if (!request) {
          finish(new QemuProbeError(binary, `unexpected QMP message: ${JSON.stringify(line.slice(0, 500))}`));
          return;
        }
        if ('name' in request) {
          // The whole message: "not found" is an answer too.
          const { id: _id, ...message } = msg;
          replies[request.key][request.name] = message;
        } else if ('error' in msg) {
          finish(new QemuProbeError(binary, `${request.execute} failed: ${JSON.stringify(msg.error)}`));
          return;
        } else {
          replies[request.key] = msg.return;
        }
        answered += 1;
        if (answered === PROBE_REQUESTS.length) {
          send({ execute: 'quit' });
          finish();
        }
      }
    });
  });
}

interface CacheEntry {
  mtimeMs: number;
  size: number;
  features: Promise<QemuFeatures>;
}
const cache = new Map<string, CacheEntry>();

/**
 * Asks `binary` what it supports. Cached per path + mtime + size (in memory): a rebuilt or
 * upgraded binary is probed again.
 * @throws QemuProbeError when the binary cannot be run or does not answer within `timeoutMs`.
 * @throws UnrecognizedOutputError when an answer is not what QEMU answers.
 */
export async function probeQemuFeatures(binary: string, opts: ProbeOptions = {}): Promise<QemuFeatures> {
  let st: { mtimeMs: number; size: number };
  try {
    st = await stat(await findExecutable(binary, opts.env ?? process.env));
  } catch (cause) {
    throw new QemuProbeError(binary, 'the binary does not exist or cannot be read', { cause });
  }
  const hit = cache.get(binary);
  if (!opts.refresh && hit && hit.mtimeMs === st.mtimeMs && hit.size === st.size) return hit.features;
  const features = cachedReplies(binary, st, opts).then((r) => featuresFromProbe(binary, r));
  cache.set(binary, { mtimeMs: st.mtimeMs, size: st.size, features });
  // A failed probe is not cached.
  features.catch(() => {
    if (cache.get(binary)?.features === features) cache.delete(binary);
  });
  return features;
}

interface CacheFile {
  binary: string;
  mtimeMs: number;
  size: number;
  replies: QemuProbeReplies;
}

/** The replies from `opts.cacheDir` when they belong to this binary as it is now, else a new probe (saved there). */
async function cachedReplies(
  binary: string,
  st: { mtimeMs: number; size: number },
  opts: ProbeOptions,
): Promise<QemuProbeReplies> {
  if (!opts.cacheDir) return recordQemuProbe(binary, opts);
  const file = join(
    opts.cacheDir,
    `qemu-features-${createHash('sha256').update(resolve(binary)).digest('hex').slice(0, 16)}.json`,
  );
  if (!opts.refresh) {
    try {
      const saved = JSON.parse(await readFile(file, 'utf8')) as CacheFile;
      if (saved.binary === resolve(binary) && saved.mtimeMs === st.mtimeMs && saved.size === st.size) {
        return saved.replies;
      }
    } catch {
      // No usable cache file: probe.
    }
  }
  const replies = await recordQemuProbe(binary, opts);
  const saved: CacheFile = { binary: resolve(binary), mtimeMs: st.mtimeMs, size: st.size, replies };
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    await writeFile(tmp, JSON.stringify(saved));
    await rename(tmp, file);
  } catch {
    await rm(tmp, { force: true }).catch(() => {});
  }
  return replies;
}

/** `binary` itself when it has a slash, else the first executable of that name on `$PATH`. */
async function findExecutable(binary: string, env: NodeJS.ProcessEnv): Promise<string> {
  if (binary.includes('/')) return binary;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  throw new Error(`'${binary}' is not on PATH`);
}

/** Forgets every probe result held in memory (cache files in a `cacheDir` stay). */
export function clearQemuFeaturesCache(): void {
  cache.clear();
}

/** A one-line description (`QEMU 7.2.22 at /usr/bin/kvm`) for messages. */
export function describeQemu(features: QemuFeatures): string {
  return `QEMU ${formatVersion(features.version)} at ${features.binary}`;
}
