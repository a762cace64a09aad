import { configDefaults, defineConfig } from 'vitest/config';

/**
 * Two projects: `unit` (no QEMU, no network namespaces; `npm run test:unit`) and `qemu`
 * (`*.qemu.test.ts`: real QEMU processes). `npm test` runs both.
 */
export default defineConfig({
  test: {
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Real QEMU tests start processes; two cores do not like many at once.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: [...configDefaults.exclude, 'test/**/*.qemu.test.ts'],
        },
      },
      { extends: true, test: { name: 'qemu', include: ['test/**/*.qemu.test.ts'] } },
    ],
  },
});
