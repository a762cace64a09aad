/**
 * The tail every docs generator shares: with `--check`, compare the file with what it
 * should be and fail naming it; otherwise write it.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** Checks (`--check` in `argv`) or writes `path`; returns the exit code. */
export function writeOrCheck(path: string, expected: string, argv: readonly string[], what = path): number {
  if (argv.includes('--check')) {
    let current: string | undefined;
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      current = undefined;
    }
    if (current !== expected) {
      console.error(
        `${what} is ${current === undefined ? 'missing' : 'out of date'}: run \`npm run docs\` and commit the result.`,
      );
      return 1;
    }
    console.log(`${path} is up to date.`);
    return 0;
  }
  writeFileSync(path, expected);
  console.log(`wrote ${path}`);
  return 0;
}
