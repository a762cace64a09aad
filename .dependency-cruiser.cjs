/**
 * The module layers of src/, lowest first: a module may import its own folder and the
 * layers below it, never one above (`npm run deps:check`, in CI). `src/testing/` (test
 * doubles, the test guest, QemuVm) sits on top and nothing in the library imports it;
 * `src/index.ts` and `src/internal.ts` are the barrels.
 */
const LAYERS = [
  ['errors.ts', 'logger.ts', 'core'],
  ['qemu'],
  ['hvparams'],
  ['monitor', 'tls'],
  ['monitor-pool'],
  ['migration'],
  ['instance', 'node', 'guard'],
  ['migration-controller'],
  ['kvm.ts'],
  ['cli'],
];
const re = (names) => `^src/(${names.map((n) => n.replace('.', '\\.')).join('|')})(/|$)`;

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import cycle: two modules that need each other belong together or need a lower module.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-test-code-in-library',
      severity: 'error',
      comment: 'The library does not import test-only code (src/testing/, test/).',
      from: { path: '^src/', pathNot: '^src/(testing|internal\\.ts|cli/demo)' },
      to: { path: '^(src/testing|test)/' },
    },
    ...LAYERS.slice(0, -1).map((layer, i) => ({
      name: `layer-${layer.join('+')}`,
      severity: 'error',
      comment: `${layer.join(', ')} may not import a higher layer (${LAYERS.slice(i + 1)
        .flat()
        .join(', ')})`,
      from: { path: re(layer) },
      to: {
        path: re(
          LAYERS.slice(i + 1)
            .flat()
            .concat(['testing', 'index.ts', 'internal.ts']),
        ),
      },
    })),
    {
      name: 'no-barrel-import',
      severity: 'error',
      comment: 'Library modules import the module that defines a name, not the package barrels.',
      from: { path: '^src/', pathNot: '^src/(index|internal)\\.ts$' },
      to: { path: '^src/(index|internal)\\.ts$' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
