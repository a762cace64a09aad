/**
 * Writes the package's declarations: dist/index.d.ts + dist/testing/index.d.ts (ESM) and the
 * same as .d.cts (CommonJS), shared declarations in one chunk each. Run by `npm run build`
 * after tsup.
 *
 * Why not tsup's `dts`: typebox 1.x ships its declarations as ESM only (.d.mts), so a .d.cts
 * that imports 'typebox' fails under TypeScript `module: node16` (TS1479); and inlining
 * typebox's own declarations (tsup `dts.resolve` cannot follow .d.mts files; rollup-plugin-dts
 * can, but garbles typebox's namespace re-exports) would ship ~180 kB of type machinery. So
 * 'typebox' resolves to scripts/typebox-types.d.ts, the few schema types the API uses,
 * which is inlined: the declarations import only real dependencies (pino) and Node's own
 * modules. typebox is bundled into the JavaScript (tsup `noExternal`), hence a devDependency.
 */

import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { fileURLToPath } from 'node:url';
import { rollup } from 'rollup';
import { dts } from 'rollup-plugin-dts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TYPEBOX_TYPES = `${ROOT}scripts/typebox-types.d.ts`;

const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as {
  dependencies?: Record<string, string>;
};
const dependencies = Object.keys(pkg.dependencies ?? {});
const builtins = new Set(builtinModules);

/** Node's modules and the package's runtime dependencies stay imports; everything else is inlined. */
function isExternal(id: string): boolean {
  if (id.startsWith('node:') || builtins.has(id)) return true;
  return dependencies.some((dep) => id === dep || id.startsWith(`${dep}/`));
}

const started = Date.now();
// Declarations of an earlier build (chunk names carry a hash); tsup's clean leaves them.
for (const file of readdirSync(`${ROOT}dist`, { recursive: true, encoding: 'utf8' })) {
  if (/\.d\.c?ts$/.test(file)) rmSync(`${ROOT}dist/${file}`);
}
const bundle = await rollup({
  input: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' },
  external: isExternal,
  plugins: [
    {
      name: 'typebox-types',
      resolveId: (id) => (id === 'typebox' || id.startsWith('typebox/') ? TYPEBOX_TYPES : null),
    },
    dts({
      respectExternal: true,
      tsconfig: `${ROOT}tsconfig.json`,
      compilerOptions: { noEmit: false, declaration: true, emitDeclarationOnly: true },
    }),
  ],
  onwarn(warning) {
    // A warning here means a declaration was dropped or mangled: fail the build.
    throw new Error(`declaration bundle: ${warning.message}`);
  },
});
// rollup-plugin-dts writes a chunk import as `./chunk.js` / `./chunk.cjs`, which TypeScript
// maps to `./chunk.d.ts` / `./chunk.d.cts`.
await bundle.write({
  dir: `${ROOT}dist`,
  format: 'es',
  entryFileNames: '[name].d.ts',
  chunkFileNames: '[name]-[hash].d.ts',
});
await bundle.write({
  dir: `${ROOT}dist`,
  format: 'es',
  entryFileNames: '[name].d.cts',
  chunkFileNames: '[name]-[hash].d.cts',
});
await bundle.close();
console.log(`types: dist/**/*.d.ts and *.d.cts written in ${Date.now() - started} ms`);
