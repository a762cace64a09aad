/**
 * Type-checks every ```ts code block of README.md and docs/*.md against the built package,
 * as a user's project would see it: `import … from 'kvm-hypervisor'` resolves through
 * package.json `exports` to dist/*.d.ts (run `npm run build` first).
 *
 *   npx tsx scripts/check-doc-examples.ts
 *
 * Each block is its own ES module (strict, `module: nodenext`, top-level await allowed), so
 * a block declares or imports everything it uses. A block fenced as ```ts nocheck is skipped.
 * Errors are printed as `docs/file.md:LINE:COL: error TS…`; exit code 1 if any.
 */
import { execFile as execFileCb } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFile = promisify(execFileCb);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/** One fenced TypeScript block of a Markdown file. */
export interface DocBlock {
  /** Markdown file, relative to the repository. */
  file: string;
  /** 1-based line of the block's first code line. */
  line: number;
  code: string;
}

/** The ```ts / ```typescript blocks of a Markdown text, without those marked `nocheck`. */
export function extractTsBlocks(file: string, markdown: string): DocBlock[] {
  const blocks: DocBlock[] = [];
  const lines = markdown.split('\n');
  let open: { fence: string; info: string; line: number; code: string[] } | undefined;
  for (const [i, text] of lines.entries()) {
    // A CommonMark backtick fence: up to 3 spaces, 3+ backticks, an info string without
    // backticks; it is closed by a fence at least as long with no info string.
    const fence = /^ {0,3}(`{3,})([^`]*)$/.exec(text);
    if (!open) {
      if (fence) open = { fence: fence[1] as string, info: (fence[2] ?? '').trim(), line: i + 2, code: [] };
      continue;
    }
    if (!fence || (fence[1] as string).length < open.fence.length || (fence[2] ?? '').trim() !== '') {
      open.code.push(text);
      continue;
    }
    const [lang, ...flags] = open.info.split(/\s+/);
    if ((lang === 'ts' || lang === 'typescript') && !flags.includes('nocheck')) {
      blocks.push({ file, line: open.line, code: open.code.join('\n') });
    }
    open = undefined;
  }
  return blocks;
}

function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs];
}

/**
 * A project in a temp folder whose node_modules holds `kvm-hypervisor` (a link to this
 * repository, so its package.json `exports` decide what resolves) and links to this
 * repository's own node_modules entries (pino, vitest, @types/node, …).
 */
function makeProject(work: string): void {
  const modules = join(work, 'node_modules');
  mkdirSync(modules);
  for (const name of readdirSync(join(ROOT, 'node_modules'))) {
    if (name.startsWith('.') || name === 'kvm-hypervisor') continue;
    symlinkSync(join(ROOT, 'node_modules', name), join(modules, name));
  }
  symlinkSync(ROOT, join(modules, 'kvm-hypervisor'));
  writeFileSync(
    join(work, 'package.json'),
    JSON.stringify({ name: 'doc-examples', type: 'module', private: true }),
  );
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'index.d.ts'))) {
    console.error('check-doc-examples: dist/index.d.ts is missing; run `npm run build` first');
    process.exit(1);
  }
  const blocks = markdownFiles().flatMap((f) => extractTsBlocks(f, readFileSync(join(ROOT, f), 'utf8')));
  const work = mkdtempSync(join(tmpdir(), 'kvm-hv-doc-examples-'));
  try {
    makeProject(work);
    const byFile = new Map<string, DocBlock>();
    blocks.forEach((block, i) => {
      const name = `block${i}.ts`;
      // `export {}` makes every block a module: its own scope, top-level await allowed.
      writeFileSync(join(work, name), `${block.code}\nexport {};\n`);
      byFile.set(name, block);
    });
    const compilerOptions = {
      module: 'nodenext',
      target: 'ES2022',
      lib: ['ES2022'],
      types: ['node'],
      strict: true,
      noEmit: true,
      // The package's own declarations are checked by scripts/check-package.ts.
      skipLibCheck: true,
    };
    writeFileSync(
      join(work, 'tsconfig.json'),
      JSON.stringify({ compilerOptions, files: [...byFile.keys()] }),
    );
    let output = '';
    try {
      await execFile(process.execPath, [TSC, '-p', work, '--pretty', 'false'], { cwd: work });
    } catch (err) {
      output = (err as { stdout?: string }).stdout ?? String(err);
      if (!output.trim()) throw err;
    }
    const errors: string[] = [];
    for (const line of output.split('\n')) {
      const m = /^(block\d+\.ts)\((\d+),(\d+)\): (.*)$/.exec(line);
      const block = m ? byFile.get(m[1] as string) : undefined;
      if (m && block) {
        errors.push(`${block.file}:${block.line + Number(m[2]) - 1}:${m[3]}: ${m[4]}`);
      } else if (line.trim()) {
        // Anything not in a block (a continuation line, an error in a library): show as is.
        errors.push(line.replaceAll(`${work}/`, ''));
      }
    }
    const files = new Set(blocks.map((b) => b.file));
    for (const e of errors) console.log(e);
    const failed = new Set(errors.map((e) => e.split(':')[0]));
    const counted = `${blocks.length} ts blocks in ${files.size} files`;
    if (errors.length === 0) console.log(`doc examples: PASS (${counted})`);
    else console.log(`doc examples: FAIL (errors in ${[...failed].join(', ')}; ${counted})`);
    if (errors.length > 0) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// Run as a script, not when a test imports extractTsBlocks.
if (process.argv[1] && relative(process.argv[1], fileURLToPath(import.meta.url)) === '') await main();
