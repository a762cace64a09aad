/**
 * Which accelerator a local QEMU runs with: KVM where `/dev/kvm` opens read-write, TCG
 * (QEMU's emulator) otherwise, and how to ask a running QEMU which one it got.
 */
import { closeSync, openSync } from 'node:fs';
import { HypervisorError, UnrecognizedOutputError } from '../errors.js';

/** An accelerator QEMU runs a guest with. */
export type Accelerator = 'kvm' | 'tcg';

/** What a caller asks for: one accelerator, or `auto` (KVM when usable, else TCG). */
export type AcceleratorChoice = Accelerator | 'auto';

const CHOICES: readonly AcceleratorChoice[] = ['kvm', 'tcg', 'auto'];

/**
 * True when this process can use KVM: `device` (default `/dev/kvm`) opens read-write.
 * That is exactly what QEMU needs; a device that exists but is not writable (no `kvm`
 * group) or a kernel without KVM gives false.
 */
export function kvmUsable(device = '/dev/kvm'): boolean {
  try {
    closeSync(openSync(device, 'r+'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Turns a choice into the accelerator to start QEMU with. Without an argument the choice
 * comes from `$KVMHV_ACCEL` (`kvm`, `tcg` or `auto`; default `auto`), so a whole test run
 * can be forced onto one accelerator.
 * @throws HypervisorError when `$KVMHV_ACCEL` (or the argument) is not one of the three.
 */
export function resolveAccelerator(choice?: AcceleratorChoice, device = '/dev/kvm'): Accelerator {
  const wanted = choice ?? (process.env.KVMHV_ACCEL?.trim() || 'auto');
  if (!CHOICES.includes(wanted as AcceleratorChoice)) {
    throw new HypervisorError(
      `accelerator must be one of ${CHOICES.join(', ')}${choice === undefined ? ' (KVMHV_ACCEL)' : ''}, got '${wanted}'`,
    );
  }
  if (wanted === 'auto') return kvmUsable(device) ? 'kvm' : 'tcg';
  return wanted as Accelerator;
}

/**
 * Reads a QMP `query-kvm` reply (`{enabled, present}`): `kvm` when KVM is enabled, else
 * `tcg` (this library starts QEMU with one of the two only).
 * @throws UnrecognizedOutputError when the reply has no boolean `enabled`.
 */
export function acceleratorFromQueryKvm(reply: unknown): Accelerator {
  const enabled = (reply as { enabled?: unknown } | null)?.enabled;
  if (typeof enabled !== 'boolean') {
    throw new UnrecognizedOutputError('query-kvm', JSON.stringify(reply) ?? String(reply), 'reply');
  }
  return enabled ? 'kvm' : 'tcg';
}

/**
 * Reads HMP `info kvm` (`kvm support: enabled`, `kvm support: disabled`,
 * `kvm support: not compiled`).
 * @throws UnrecognizedOutputError for any other text.
 */
export function acceleratorFromInfoKvm(text: string): Accelerator {
  const m = /^\s*kvm support:\s*(enabled|disabled|not compiled)\s*$/im.exec(text);
  if (!m) throw new UnrecognizedOutputError('info kvm', text);
  return m[1]!.toLowerCase() === 'enabled' ? 'kvm' : 'tcg';
}

/**
 * What {@link queryAccelerator} needs of a monitor (any `Monitor` of src/monitor/ has it;
 * `qemu/` sits below `monitor/`, so it names no monitor class).
 */
export interface AcceleratorQueryMonitor {
  readonly protocol: 'qmp' | 'hmp';
  execute(command: string): Promise<unknown>;
  humanCommand(commandLine: string): Promise<string>;
}

/** Asks a running QEMU which accelerator it uses (`query-kvm` or `info kvm`). */
export async function queryAccelerator(monitor: AcceleratorQueryMonitor): Promise<Accelerator> {
  if (monitor.protocol === 'qmp') return acceleratorFromQueryKvm(await monitor.execute('query-kvm'));
  return acceleratorFromInfoKvm(await monitor.humanCommand('info kvm'));
}
