/**
 * Building blocks for the per-key checks (Ganeti's check tuples in `hv_base.py`), with
 * Ganeti's failure messages.
 */
import { stat } from 'node:fs/promises';
import { CpuMaskError, parseMultiCpuMask } from './cpu-mask.js';
import { migrationCapsProblems } from './migration-caps.js';
import { isNormAbsPath, isUrl } from './paths.js';
import type { NodeCheck, SyntaxCheck } from './types.js';
import { MAX_VIRTIO_NET_QUEUES, MIGRATION_MODES, QEMU_PCI_SLOTS, SPICE_IP_VERSIONS } from './value-sets.js';

/** A syntax check from a predicate and Ganeti's one fixed message. */
function predicateCheck<V>(summary: string, ok: (value: V) => boolean, message: string): SyntaxCheck<V> {
  return { summary, problems: (value) => (ok(value) ? [] : [message]) };
}

/** A node check from an async predicate and one fixed message. */
function nodePredicateCheck<V>(
  summary: string,
  ok: (value: V) => Promise<boolean>,
  message: string,
): NodeCheck<V> {
  return { summary, problems: async (value) => ((await ok(value)) ? [] : [message]) };
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Absolute normalized path (`_FILE_CHECK` / `_DIR_CHECK` syntax part). */
export const NORM_ABS_PATH_CHECK = predicateCheck<string>(
  'absolute normalized path',
  isNormAbsPath,
  'must be an absolute normalized path',
);

/** Absolute normalized path or an http(s)/ftp(s) URL. */
export const NORM_ABS_PATH_OR_URL_CHECK = predicateCheck<string>(
  'absolute normalized path or http(s)/ftp(s) URL',
  (value) => isNormAbsPath(value) || isUrl(value),
  'must be an absolute normalized path or a URL',
);

/** The path names an existing regular file (following symlinks). */
export const IS_FILE_CHECK = nodePredicateCheck<string>('existing file', isFile, 'not found or not a file');

/** The path names an existing file, or the value is a URL. */
export const IS_FILE_OR_URL_CHECK = nodePredicateCheck<string>(
  'existing file or URL',
  async (value) => isUrl(value) || (await isFile(value)),
  'not found or not a file or URL',
);

/** The path names an existing directory. */
export const IS_DIR_CHECK = nodePredicateCheck<string>(
  'existing directory',
  isDirectory,
  'not found or not a directory',
);

/** Ganeti's `ParamInSet`: the value must be one of `values` (`""` passes when not required). */
export function inSetCheck(values: readonly string[]): SyntaxCheck<string> {
  return predicateCheck<string>(
    `one of: ${values.join(', ')}`,
    (value) => values.includes(value),
    `The value must be one of: ${values.join(', ')}`,
  );
}

/** `0 < port < 65535`; Ganeti rejects 65535 itself. */
export const NET_PORT_CHECK = predicateCheck<number>(
  '1 ≤ port ≤ 65534',
  (value) => value > 0 && value < 65535,
  'invalid port number',
);

/** `x >= 0` (0 counts as specified, so it is checked and accepted). */
export const NONNEGATIVE_INT_CHECK = predicateCheck<number>(
  '≥ 0',
  (value) => value >= 0,
  'cannot be negative',
);

/** `0 < queues <= 32`. */
export const VIRTIO_NET_QUEUES_CHECK = predicateCheck<number>(
  `1 ≤ queues ≤ ${MAX_VIRTIO_NET_QUEUES}`,
  (value) => value > 0 && value <= MAX_VIRTIO_NET_QUEUES,
  'invalid number of queues',
);

/** `0 <= reservations <= 32`. */
export const PCI_RESERVATIONS_CHECK = predicateCheck<number>(
  `0 ≤ slots ≤ ${QEMU_PCI_SLOTS}`,
  (value) => value >= 0 && value <= QEMU_PCI_SLOTS,
  `The number of PCI slots managed by QEMU (max: ${QEMU_PCI_SLOTS})`,
);

/** 0 (unspecified), 4 or 6. */
export const SPICE_IP_VERSION_CHECK = predicateCheck<number>(
  '0, 4 or 6',
  (value) => (SPICE_IP_VERSIONS as readonly number[]).includes(value),
  'The SPICE IP version should be 4 or 6',
);

/** `live` or `non-live`. */
export const MIGRATION_MODE_CHECK = predicateCheck<string>(
  `one of: ${MIGRATION_MODES.join(', ')}`,
  (value) => (MIGRATION_MODES as readonly string[]).includes(value),
  'invalid migration mode',
);

const MULTI_CPU_MASK_MESSAGE = 'Multiple CPU mask definition is not well-formed';

/**
 * `all`, a CPU mask, or `:`-separated per-vCPU masks (`_MULTI_CPU_MASK_CHECK`). A malformed
 * mask gets Ganeti's message; one that is well-formed but over a limit (a CPU number above
 * 8191, too many CPUs in total) gets Ganeti's message followed by the limit.
 */
export const MULTI_CPU_MASK_CHECK: SyntaxCheck<string> = {
  summary:
    "'all', a CPU mask such as 0-2,5 (CPUs 0 to 8191), or per-vCPU masks such as all:1,3-5:0 (at most 1048576 CPUs in all)",
  problems: (value) => {
    try {
      parseMultiCpuMask(value);
      return [];
    } catch (error) {
      if (!(error instanceof CpuMaskError)) throw error;
      return [error.overLimit ? `${MULTI_CPU_MASK_MESSAGE}: ${error.message}` : MULTI_CPU_MASK_MESSAGE];
    }
  },
};

/** Known QEMU capability names, no duplicates, no combination QEMU always refuses. */
export const MIGRATION_CAPS_CHECK: SyntaxCheck<string> = {
  summary: "':'-separated known capability names, no duplicates, no combination QEMU always refuses",
  problems: migrationCapsProblems,
};
