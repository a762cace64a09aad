/**
 * Prints one plain closing line, `N passed, N failed` (`, N skipped` when any), after
 * vitest's own summary, so any CI that reads the plain form counts the run.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (mod.state() === 'failed' && [...mod.children.allTests()].length === 0) failed++;
    }
    const tail = skipped > 0 ? `, ${skipped} skipped` : '';
    // After vitest's own summary, which it prints in this same hook.
    setImmediate(() => process.stdout.write(`\n${passed} passed, ${failed} failed${tail}\n`));
  }
}
