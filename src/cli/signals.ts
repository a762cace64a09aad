/**
 * Ctrl-C handling: the first SIGINT (or SIGTERM, or SIGHUP when the terminal closes) asks
 * the running command to stop cleanly (cancel the migration, kill the demo VMs); a second
 * one exits at once.
 */
import { EXIT } from './errors.js';

/** The signals that stop a command cleanly. */
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Calls `handler` on the first SIGINT/SIGTERM/SIGHUP; on a second one, writes a line to stderr and
 * exits with code 130 right away. Returns a function that removes the handlers.
 */
export function onInterrupt(handler: (signal: NodeJS.Signals) => void): () => void {
  let count = 0;
  const listener = (signal: NodeJS.Signals) => {
    count++;
    if (count === 1) {
      handler(signal);
      return;
    }
    process.stderr.write(`kvm-hv: ${signal} again: exiting without cleaning up\n`);
    process.exit(EXIT.interrupted);
  };
  for (const s of SIGNALS) process.on(s, listener);
  return () => {
    for (const s of SIGNALS) process.off(s, listener);
  };
}
