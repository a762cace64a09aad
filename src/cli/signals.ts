/**
 * Ctrl-C handling: the first SIGINT (or SIGTERM) asks the running command to stop
 * cleanly (cancel the migration, kill the demo VMs); a second one exits at once.
 */
import { EXIT } from './errors.js';

/**
 * Calls `handler` on the first SIGINT/SIGTERM; on a second one, writes a line to stderr and
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
  process.on('SIGINT', listener);
  process.on('SIGTERM', listener);
  return () => {
    process.off('SIGINT', listener);
    process.off('SIGTERM', listener);
  };
}
