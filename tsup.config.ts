import { defineConfig, type Options } from 'tsup';

/** Library entries: built as ESM and CJS (their .d.ts / .d.cts come from scripts/build-types.ts). */
const libraryEntries = {
  index: 'src/index.ts',
  'testing/index': 'src/testing/index.ts',
};

/** Left to scripts/build-types.ts by tsup's `clean`. */
const DECLARATIONS = ['!**/*.d.ts', '!**/*.d.cts'];

const shared: Options = {
  target: 'node20',
  platform: 'node',
  splitting: true,
  // Without it esbuild (and tsup's CJS chunk rewrite) renames classes that refer to
  // themselves: `HvParamError.name` was `_class2` in CJS, `KVMHypervisor.name` was
  // `_KVMHypervisor` in ESM, and errors printed under those names.
  keepNames: true,
  // Source maps are opt-in (`KVM_HV_SOURCEMAP=1 npm run build`): they were ~2 MB of the
  // 3.2 MB package and point at src/, which is not shipped.
  sourcemap: process.env.KVM_HV_SOURCEMAP === '1',
  // typebox 1.x ships ESM only; bundling it keeps the CJS build loadable by every Node 20.
  // Its declarations are inlined by scripts/build-types.ts (tsup's `dts` cannot follow
  // typebox's .d.mts files), so typebox is a devDependency, not a dependency.
  noExternal: ['typebox'],
  dts: false,
};

export default defineConfig([
  // ESM: the library plus the `kvm-hv` CLI (package.json `bin` points at dist/cli/main.js),
  // so the CLI shares chunks with the library instead of carrying its own copy.
  {
    ...shared,
    format: ['esm'],
    // The two configs build in parallel: each empties dist/ of everything but the other's
    // output and the declarations, which scripts/build-types.ts replaces (tsup's `clean`
    // list adds exclusions to `**/*`).
    clean: ['!**/*.cjs', '!**/*.cjs.map', ...DECLARATIONS],
    entry: { ...libraryEntries, 'cli/main': 'src/cli/main.ts' },
  },
  // CJS: the library only; nothing points at a CJS CLI.
  {
    ...shared,
    format: ['cjs'],
    clean: ['!**/*.js', '!**/*.js.map', ...DECLARATIONS],
    entry: libraryEntries,
  },
]);
