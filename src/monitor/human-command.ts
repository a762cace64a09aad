/**
 * HMP over QMP: QMP's `human-monitor-command` runs one HMP command line and returns its
 * text in a *successful* reply, errors included. One helper for every QMP-side monitor
 * (the client, the mock, the transcript recorder and player), so they read that text alike.
 */
import { HmpError, UnrecognizedOutputError } from '../errors.js';
import { detectHmpError } from './hmp-parser.js';

/** The QMP command that runs an HMP command line. */
export const HUMAN_MONITOR_COMMAND = 'human-monitor-command';

/** The arguments of {@link HUMAN_MONITOR_COMMAND} for `commandLine`. */
function humanCommandArguments(commandLine: string): { 'command-line': string } {
  return { 'command-line': commandLine };
}

/**
 * The HMP text of a `human-monitor-command` reply: `\r` removed; error text (see
 * `detectHmpError`) throws `HmpError(commandLine, text)`; a reply that is not a string
 * throws `UnrecognizedOutputError` (QEMU always answers with a string).
 */
export function humanCommandText(commandLine: string, reply: unknown): string {
  if (typeof reply !== 'string') {
    throw new UnrecognizedOutputError(
      `${HUMAN_MONITOR_COMMAND} ${commandLine}`,
      JSON.stringify(reply) ?? String(reply),
      'reply',
    );
  }
  const text = reply.replace(/\r/g, '');
  const err = detectHmpError(text);
  if (err !== undefined) throw new HmpError(commandLine, err);
  return text;
}

/** Runs `commandLine` through `execute('human-monitor-command', …)` and reads the reply with {@link humanCommandText}. */
export async function humanCommandOverQmp(
  execute: (command: string, args: Record<string, unknown>) => Promise<unknown>,
  commandLine: string,
): Promise<string> {
  return humanCommandText(
    commandLine,
    await execute(HUMAN_MONITOR_COMMAND, humanCommandArguments(commandLine)),
  );
}
