#!/usr/bin/env node
/**
 * Entry point of the `kvm-hv` command (built to dist/cli/main.js). See docs/cli.md.
 */
import { runCli } from './program.js';

runCli(process.argv).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(
      `kvm-hv: internal error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
    process.exit(1);
  },
);
