/**
 * The text of any thrown value, for log lines and the messages of errors that wrap
 * another one. On the floor of the layers: `instance/`, `migration/` and the CLI use it.
 */

/** The message of any thrown value. */
export const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));
