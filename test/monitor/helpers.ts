/** Small helpers shared by the monitor tests. */

/** An error with whatever fields its class adds (`errorClass`, `desc`, `command`, `text`, …). */
export type AnyError = Error & { [key: string]: unknown };

/** Resolves with the error `p` rejects with; throws (failing the test) when `p` resolves. */
export async function rejectionOf(p: Promise<unknown>): Promise<AnyError> {
  try {
    const value = await p;
    throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
  } catch (e) {
    return e as AnyError;
  }
}
