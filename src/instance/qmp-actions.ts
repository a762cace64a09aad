/**
 * What the life cycle asks a running QEMU over QMP: identity (`query-uuid`), run state,
 * memory (`query-balloon`), vCPU threads (`query-cpus-fast`), and the actions of start,
 * stop and reboot (`set_password`, `balloon`, `cont`, `system_powerdown`,
 * `system_reset`, `quit`). Parsers are pure and throw `UnrecognizedOutputError` quoting
 * the reply; every call is raced against a {@link Deadline}, so a frozen QEMU cannot hold
 * a caller past its limit.
 */

import type { Deadline } from '../core/deadline.js';
import { UnrecognizedOutputError } from '../errors.js';
import type { Monitor } from '../monitor/types.js';

const MIB = 1024 * 1024;

const asText = (reply: unknown): string => JSON.stringify(reply) ?? String(reply);

/** Reads `query-uuid` (`{UUID: "…"}`): the instance's UUID, lower-case. */
export function parseQueryUuid(reply: unknown): string {
  const uuid = (reply as { UUID?: unknown } | null)?.UUID;
  if (typeof uuid !== 'string') throw new UnrecognizedOutputError('query-uuid', asText(reply), 'reply');
  return uuid.toLowerCase();
}

/** The run state from `query-status`. */
export interface RunStatus {
  running: boolean;
  /** QEMU's run state: `running`, `paused`, `prelaunch`, `shutdown`, `inmigrate`, … */
  status: string;
}

/** Reads `query-status` (`{running, status, singlestep?}`). */
export function parseQueryStatus(reply: unknown): RunStatus {
  const o = reply as { running?: unknown; status?: unknown } | null;
  if (typeof o?.running !== 'boolean' || typeof o.status !== 'string') {
    throw new UnrecognizedOutputError('query-status', asText(reply), 'reply');
  }
  return { running: o.running, status: o.status };
}

/** Reads `query-balloon` (`{actual: bytes}`): the guest's current memory in MiB. */
export function parseQueryBalloon(reply: unknown): number {
  const actual = (reply as { actual?: unknown } | null)?.actual;
  if (typeof actual !== 'number' || !Number.isFinite(actual) || actual < 0) {
    throw new UnrecognizedOutputError('query-balloon', asText(reply), 'reply');
  }
  return Math.floor(actual / MIB);
}

/** One vCPU from `query-cpus-fast`. */
export interface VcpuThread {
  /** vCPU index (`cpu-index`). */
  index: number;
  /** Host thread id of the vCPU (`thread-id`), for CPU pinning. */
  threadId: number;
}

/** Reads `query-cpus-fast` (a list of `{cpu-index, thread-id, …}`), in vCPU order. */
export function parseQueryCpusFast(reply: unknown): VcpuThread[] {
  if (!Array.isArray(reply)) throw new UnrecognizedOutputError('query-cpus-fast', asText(reply), 'reply');
  const out = reply.map((c: Record<string, unknown> | null) => {
    const index = c?.['cpu-index'];
    const threadId = c?.['thread-id'];
    if (!Number.isInteger(index) || !Number.isInteger(threadId)) {
      throw new UnrecognizedOutputError('query-cpus-fast', asText(reply), 'reply');
    }
    return { index: index as number, threadId: threadId as number };
  });
  return out.sort((a, b) => a.index - b.index);
}

/** A monitor plus the deadline every call of one life-cycle step is raced against. */
export interface QmpStep {
  monitor: Monitor;
  deadline: Deadline;
}

async function call(s: QmpStep, command: string, args?: Record<string, unknown>): Promise<unknown> {
  return s.deadline.race(s.monitor.execute(command, args), `'${command}'`);
}

/** The instance's UUID as QEMU knows it (`-uuid`). */
export async function queryUuid(s: QmpStep): Promise<string> {
  return parseQueryUuid(await call(s, 'query-uuid'));
}

/** The run state. */
export async function queryStatus(s: QmpStep): Promise<RunStatus> {
  return parseQueryStatus(await call(s, 'query-status'));
}

/** Current guest memory in MiB (needs the virtio-balloon device). */
export async function queryBalloonMiB(s: QmpStep): Promise<number> {
  return parseQueryBalloon(await call(s, 'query-balloon'));
}

/** The vCPUs and their host threads. */
export async function queryVcpus(s: QmpStep): Promise<VcpuThread[]> {
  return parseQueryCpusFast(await call(s, 'query-cpus-fast'));
}

/** Asks the balloon driver to bring the guest to `mib` MiB. */
export async function setBalloon(s: QmpStep, mib: number): Promise<void> {
  await call(s, 'balloon', { value: mib * MIB });
}

/** Sets the VNC or SPICE password (`set_password`). */
export async function setPassword(s: QmpStep, protocol: 'vnc' | 'spice', password: string): Promise<void> {
  await call(s, 'set_password', { protocol, password });
}

/** Resumes the vCPUs (`cont`). */
export async function cont(s: QmpStep): Promise<void> {
  await call(s, 'cont');
}

/** Presses the ACPI power button (`system_powerdown`). */
export async function systemPowerdown(s: QmpStep): Promise<void> {
  await call(s, 'system_powerdown');
}

/** Resets the machine, as the reset button does (`system_reset`). */
export async function systemReset(s: QmpStep): Promise<void> {
  await call(s, 'system_reset');
}

/** Asks QEMU to exit (`quit`); QEMU may close the socket before it replies. */
export async function quit(s: QmpStep): Promise<void> {
  await call(s, 'quit');
}
