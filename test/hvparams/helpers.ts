import { expect } from 'vitest';
import { HvParamError, type HvParamProblem, HypervisorError } from '../../src/internal.js';

/** Runs `fn`, expects an HvParamError, returns its problems. */
export function problemsOf(fn: () => unknown): HvParamProblem[] {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(HvParamError);
    expect(error).toBeInstanceOf(HypervisorError);
    return (error as HvParamError).problems;
  }
  throw new Error('expected an HvParamError, nothing was thrown');
}
