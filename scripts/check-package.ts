/**
 * Package-shape check: what a user gets from `npm install kvm-hypervisor`.
 *
 *   npm run build && npx tsx scripts/check-package.ts
 *
 * 1. `npm pack` (of the dist/ already built) and checks the tarball: every file that
 *    package.json points to is there, every other file is reached by an import from one of
 *    them or is documentation, and no source map is shipped.
 * 2. Installs the tarball into a fresh temp project (from npm's cache when it can; without a
 *    registry, the unpacked tarball plus this repository's copies of its dependencies).
 * 3. Type-checks a consumer file, unchanged, as CommonJS (TypeScript `module` commonjs,
 *    node16, nodenext) and as ESM (node16, nodenext, bundler), with strict settings and
 *    without skipLibCheck, then runs each compiled result with node: it imports the root and
 *    `kvm-hypervisor/testing`, checks class names, parses and checks hvparams, and runs a
 *    user's orchestration against the fake migration pair (a migration over QMP; a failure
 *    over HMP and the documented recovery, `finalizeMigrationDst(…, false)` with `quit`).
 *
 * Prints `package check: PASS (N checks)` and exits 0, or `package check: FAIL …` with what
 * failed and exits 1.
 */
import { execFile as execFileCb, execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFile = promisify(execFileCb);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
/** Files shipped besides what package.json points to (and what those import). */
const DOCUMENTATION = /^(README\.md|CHANGELOG\.md|LICENSE(\.md)?|package\.json|docs\/[^/]+\.md)$/;

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  files: { path: string; size: number }[];
}

const failures: string[] = [];
let passed = 0;

function check(ok: boolean, what: string): void {
  if (ok) {
    passed++;
    console.log(`  ok    ${what}`);
  } else {
    failures.push(what);
    console.log(`  FAIL  ${what}`);
  }
}

/** Every file path named by main/module/types/bin/exports/typesVersions, without `./`. */
function pointedFiles(pkg: Record<string, unknown>): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.add(normalize(v).replace(/^\.\//, ''));
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  for (const key of ['main', 'module', 'types', 'bin', 'exports']) walk(pkg[key]);
  const versions = pkg['typesVersions'] as Record<string, Record<string, string[]>> | undefined;
  for (const map of Object.values(versions ?? {})) walk(Object.values(map));
  out.delete('package.json');
  return out;
}

/** Relative imports of a built JS or declaration file, as package paths. */
function relativeImports(path: string, text: string): string[] {
  const specifiers = text.matchAll(
    /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^import\s*)["'](\.{1,2}\/[^"']+)["']/gm,
  );
  const isDeclaration = /\.d\.[cm]?ts$/.test(path);
  return [...specifiers].map((m) => {
    let target = posix.join(posix.dirname(path), m[1] as string);
    // A declaration file's `./chunk.cjs` means `./chunk.d.cts`.
    if (isDeclaration)
      target = target.replace(/\.(c|m)?js$/, (_, k: string | undefined) => `.d.${k ?? ''}ts`);
    return target;
  });
}

function checkTarball(pack: PackResult, pkg: Record<string, unknown>, unpacked: string): void {
  const shipped = new Set(pack.files.map((f) => f.path));
  const pointed = pointedFiles(pkg);
  for (const p of pointed) check(shipped.has(p), `package.json points to ${p}, which is in the tarball`);

  const reached = new Set<string>();
  const queue = [...pointed].filter((p) => shipped.has(p));
  while (queue.length > 0) {
    const p = queue.pop() as string;
    if (reached.has(p)) continue;
    reached.add(p);
    for (const dep of relativeImports(p, readFileSync(join(unpacked, p), 'utf8'))) {
      if (!shipped.has(dep)) check(false, `${p} imports ${dep}, which is not in the tarball`);
      else queue.push(dep);
    }
  }
  const unused = [...shipped].filter((p) => !reached.has(p) && !DOCUMENTATION.test(p));
  check(
    unused.length === 0,
    `every shipped file is used or documentation${unused.length ? `: ${unused.join(', ')}` : ''}`,
  );
  const maps = [...shipped].filter((p) => p.endsWith('.map'));
  check(maps.length === 0, `no source maps shipped${maps.length ? `: ${maps.join(', ')}` : ''}`);
  const deps = Object.keys((pkg['dependencies'] as Record<string, string> | undefined) ?? {});
  const bundlesTypebox = readFileSync(join(unpacked, 'dist/index.cjs'), 'utf8').includes('sinclairzx81');
  check(!(bundlesTypebox && deps.includes('typebox')), 'typebox is either bundled or a dependency, not both');
}

/** The consumer: the same file compiled as CommonJS and as ESM. */
const CONSUMER = `import {
  coerceHvParams,
  HvParamError,
  KVMHypervisor,
  type KvmHvParams,
  type LoggerLike,
  MigrationError,
  parseHvParams,
  runMigration,
} from 'kvm-hypervisor';
import { createFakeMigrationPair, MockMonitor } from 'kvm-hypervisor/testing';

// Fails to compile if the hvparam types collapsed to \`any\` (a type that did not resolve).
type IsAny<T> = 0 extends 1 & T ? true : false;
const bandwidthIsTyped: IsAny<KvmHvParams['migration_bandwidth']> = false;

async function main(): Promise<void> {
  const { params } = parseHvParams('kvm:migration_bandwidth=64,migration_caps=auto-converge');
  const filled: KvmHvParams = KVMHypervisor.fillDefaults(coerceHvParams(params));
  KVMHypervisor.checkParameterSyntax(filled);
  let refused: unknown;
  try {
    KVMHypervisor.checkParameterSyntax({ ...filled, migration_downtime: -1 });
  } catch (err) {
    refused = err;
  }
  if (!(refused instanceof HvParamError)) throw new Error('a negative migration_downtime was accepted');
  const monitor = new MockMonitor({ protocol: 'qmp', version: '8.2.0' });
  // A logger of the application's own: pino's level methods, no pino types needed.
  const quiet = (): void => {};
  const logger: LoggerLike = { trace: quiet, debug: quiet, info: quiet, warn: quiet, error: quiet, fatal: quiet };
  const hv = new KVMHypervisor({ monitor: () => monitor, logger });
  console.log(\`names: \${HvParamError.name} \${MigrationError.name} \${KVMHypervisor.name} \${MockMonitor.name}\`);
  console.log(\`error: \${String(refused).split(':')[0]}\`);
  console.log(\`bandwidth: \${filled.migration_bandwidth} \${bandwidthIsTyped}\`);
  await hv.close();
  await monitor.close();
  await orchestrate();
}

// A user's orchestration against the linked fake pair (real monitor clients underneath):
// a migration over QMP, then a failure over HMP and the documented recovery.
async function orchestrate(): Promise<void> {
  const instance = { name: 'web1', hvparams: { migration_bandwidth: 64 } };
  const ok = createFakeMigrationPair({ version: '7.2.22', protocol: 'qmp' });
  const src = new KVMHypervisor({ monitor: ok.sourceMonitor });
  const dst = new KVMHypervisor({ monitor: ok.destinationMonitor });
  const done = await runMigration({
    source: { hypervisor: src, instance },
    destination: { hypervisor: dst, instance },
    target: '10.0.0.2',
    pollIntervalMs: 1,
  });
  console.log(\`migrate: \${done.status} \${ok.source.qemu.runState} \${ok.destination.qemu.runState}\`);
  await Promise.all([src.close(), dst.close()]);

  const bad = createFakeMigrationPair({ version: '11.1.3', protocol: 'hmp' });
  const src2 = new KVMHypervisor({ monitor: bad.sourceMonitor });
  const dst2 = new KVMHypervisor({ monitor: bad.destinationMonitor });
  await dst2.acceptInstance(instance);
  await src2.migrateInstance(instance, '10.0.0.2');
  bad.fail('Unable to write to socket: Broken pipe', { destination: 'waits' });
  const failed = await src2.waitForMigration(instance, { pollIntervalMs: 1 }).catch((e: unknown) => e);
  const reason = failed instanceof MigrationError ? failed.reason : String(failed);
  const d = await dst2.finalizeMigrationDst(instance, false);
  const s = await src2.finalizeMigrationSource(instance, false);
  console.log(\`recovery: \${reason}; \${d.action} \${s.action} \${bad.source.qemu.runState}\`);
  await Promise.all([src2.close(), dst2.close()]);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
`;

const EXPECTED_OUTPUT = [
  'names: HvParamError MigrationError KVMHypervisor MockMonitor',
  'error: HvParamError',
  'bandwidth: 64 false',
  'migrate: completed postmigrate running',
  'recovery: Unable to write to socket: Broken pipe; quit already-running running',
].join('\n');

interface Variant {
  /** `cjs` or `esm`: the consumer project's package.json `type`. */
  kind: 'cjs' | 'esm';
  module: string;
  moduleResolution?: string;
  /** Default true; false checks that the declarations need no default-import interop. */
  esModuleInterop?: boolean;
}

const VARIANTS: Variant[] = [
  { kind: 'cjs', module: 'commonjs', moduleResolution: 'node10' },
  { kind: 'cjs', module: 'commonjs', moduleResolution: 'node10', esModuleInterop: false },
  { kind: 'cjs', module: 'node16' },
  { kind: 'cjs', module: 'nodenext' },
  { kind: 'esm', module: 'node16' },
  { kind: 'esm', module: 'nodenext' },
  { kind: 'esm', module: 'esnext', moduleResolution: 'bundler' },
];

async function checkVariant(work: string, v: Variant): Promise<void> {
  const interop = v.esModuleInterop ?? true;
  const name = `${v.kind}, module ${v.module}${v.moduleResolution ? `, moduleResolution ${v.moduleResolution}` : ''}${interop ? '' : ', no esModuleInterop'}`;
  const dir = join(work, 'consumer', `${v.kind}-${v.module}${interop ? '' : '-nointerop'}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    JSON.stringify({ type: v.kind === 'esm' ? 'module' : 'commonjs' }),
  );
  writeFileSync(join(dir, 'main.ts'), CONSUMER);
  const compilerOptions = {
    module: v.module,
    ...(v.moduleResolution ? { moduleResolution: v.moduleResolution } : {}),
    target: 'ES2022',
    strict: true,
    skipLibCheck: false,
    esModuleInterop: interop,
    // @types/node from this repository: the consumer's own install would be the same.
    typeRoots: [join(ROOT, 'node_modules', '@types')],
    types: ['node'],
    outDir: 'out',
  };
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['main.ts'] }));
  try {
    await execFile(process.execPath, [TSC, '-p', dir], { cwd: dir });
    check(true, `${name}: type-checks`);
  } catch (err) {
    const out = (err as { stdout?: string }).stdout ?? String(err);
    check(false, `${name}: type-checks\n${out.replace(/^/gm, '        ')}`);
    return;
  }
  try {
    const { stdout } = await execFile(process.execPath, [join(dir, 'out', 'main.js')], { cwd: dir });
    check(stdout.trim() === EXPECTED_OUTPUT, `${name}: runs and prints ${JSON.stringify(stdout.trim())}`);
  } catch (err) {
    check(false, `${name}: runs\n${String((err as { stderr?: string }).stderr ?? err)}`);
  }
}

/** Installs the tarball with npm; returns how, for the log. */
function npmInstall(dir: string, tarball: string, unpacked: string, pkg: Record<string, unknown>): string {
  const args = ['install', '--no-audit', '--no-fund', '--no-package-lock', '--ignore-scripts', tarball];
  try {
    execFileSync('npm', [...args, '--offline'], { cwd: dir, stdio: 'pipe' });
    return 'npm install --offline';
  } catch {
    // `npm ci` caches the dependencies' tarballs but not their registry metadata.
  }
  try {
    execFileSync('npm', [...args, '--prefer-offline'], { cwd: dir, stdio: 'pipe' });
    return 'npm install --prefer-offline';
  } catch {
    // No registry: the unpacked tarball as the package, and this repository's copies of
    // its dependencies.
  }
  const modules = join(dir, 'node_modules');
  mkdirSync(modules, { recursive: true });
  cpSync(unpacked, join(modules, 'kvm-hypervisor'), { recursive: true });
  for (const dep of Object.keys((pkg['dependencies'] as Record<string, string> | undefined) ?? {})) {
    mkdirSync(dirname(join(modules, dep)), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', dep), join(modules, dep));
  }
  return "unpacked, with this repository's dependencies: no npm registry";
}

/**
 * The root's runtime names, as a user's `require('kvm-hypervisor')` sees them, against
 * scripts/public-api.txt: the public API grows only when that list grows with it.
 */
function checkPublicApi(): void {
  const listed = readFileSync(join(ROOT, 'scripts', 'public-api.txt'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const runtime = execFileSync(
    process.execPath,
    ['-e', 'console.log(Object.keys(require("./dist/index.cjs")).join("\\n"))'],
    { cwd: ROOT, encoding: 'utf8' },
  )
    .split('\n')
    .filter(Boolean);
  const extra = runtime.filter((n) => !listed.includes(n));
  const missing = listed.filter((n) => !runtime.includes(n));
  check(
    extra.length === 0 && missing.length === 0,
    `the root exports the ${listed.length} runtime names of scripts/public-api.txt` +
      (extra.length ? `; not listed: ${extra.join(', ')}` : '') +
      (missing.length ? `; listed but not exported: ${missing.join(', ')}` : ''),
  );
}

async function main(): Promise<void> {
  checkPublicApi();
  const work = mkdtempSync(join(tmpdir(), 'kvm-hv-package-'));
  try {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>;
    // dist/ is built by the caller (CI builds it just before); prepack would build it again.
    const packJson = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const pack = (JSON.parse(packJson) as PackResult[])[0] as PackResult;
    const tarball = join(work, pack.filename);
    console.log(
      `tarball ${pack.filename}: ${pack.files.length} files, ${(pack.size / 1024).toFixed(1)} kB packed, ` +
        `${(pack.unpackedSize / 1024).toFixed(1)} kB unpacked`,
    );
    const unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked, '--strip-components=1']);
    checkTarball(pack, pkg, unpacked);

    const consumer = join(work, 'consumer');
    mkdirSync(consumer);
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    const how = npmInstall(consumer, tarball, unpacked, pkg);
    check(true, `the tarball installs into a fresh project (${how})`);
    // Two at a time: enough to overlap, not enough to swamp a small machine.
    for (let i = 0; i < VARIANTS.length; i += 2) {
      await Promise.all(VARIANTS.slice(i, i + 2).map((v) => checkVariant(work, v)));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (failures.length === 0) {
    console.log(`package check: PASS (${passed} checks)`);
  } else {
    console.log(`package check: FAIL (${failures.length} of ${passed + failures.length} checks)`);
    console.log(failures.map((f) => `  - ${f.split('\n')[0]}`).join('\n'));
    process.exitCode = 1;
  }
}

await main();
