/**
 * Device hotplug on a running instance (Ganeti's `HotAddDevice`, `HotDelDevice`,
 * `HotModDevice`, `VerifyHotplugSupport`, `HotplugSupported`): QMP `blockdev-add` /
 * `netdev_add` + `device_add`, and `device_del` (waiting for the guest to let the device
 * go: `DEVICE_DELETED`) + `blockdev-del` / `netdev_del`. The bus slot comes from the
 * runtime and goes back to it; the runtime is saved after each change, so a migration
 * (which carries the runtime) renders the new devices on the target. One hotplug at a time
 * per instance (`<conf>/<n>.hotplug.lock`). The rules and commands are in hotplug-model.ts.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { HypervisorError, QmpError, UnrecognizedOutputError } from '../errors.js';
import type { MonitorEvent } from '../monitor/types.js';
import { versionAtLeast } from '../qemu/version.js';
import { diskDriver, nicDriver } from './device-model.js';
import {
  allocateBus,
  backendRemoveCommand,
  diskAddCommands,
  findDevice,
  type HotplugAction,
  HotplugError,
  type HotplugQemuFacts,
  type HotplugTarget,
  hotplugDisk,
  hotplugModel,
  hotplugNic,
  hotplugRefusals,
  newDeviceProblems,
  nicAddCommands,
  type QmpCommand,
  withDevice,
  withNicReplaced,
  withoutDevice,
} from './hotplug-model.js';
import type { InstancePaths } from './layout.js';
import type { InstanceLifecycle } from './lifecycle.js';
import { readProcStat } from './process.js';
import * as qmp from './qmp-actions.js';
import { serializeRuntime } from './runtime.js';
import type { DeviceBus, InstanceRuntime, RuntimeDisk, RuntimeNic } from './runtime-schema.js';
import type { InstanceDisk, InstanceNic, InstanceNicNetwork } from './spec.js';
import { type InstanceState, STATE_FILE_MODE, writeFileAtomic } from './state.js';

/** Default limit of one hotplug call, ms. */
export const DEFAULT_HOTPLUG_TIMEOUT_MS = 30_000;
/** Default wait for the guest to release an unplugged device (`DEVICE_DELETED`), ms (Ganeti: 5 s). */
export const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;

/** Options of every hotplug call. */
export interface HotplugOptions {
  /** Limit of the whole call, ms (default 30 000). */
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** Options of a removal (and of the removal half of a modify). */
export interface HotDelOptions extends HotplugOptions {
  /** How long the guest gets to release the device (`DEVICE_DELETED`), ms (default 10 000). */
  unplugTimeoutMs?: number;
}

/** What a NIC modify changes: the MAC and/or the network; the model, UUID and slot stay. */
export interface NicChanges {
  mac?: string;
  network?: InstanceNicNetwork;
}

/** What the owner (`KVMHypervisor`) knows that QEMU does not: a migration it drives. */
export interface HotplugGuard {
  /** A reason this instance must not change now (a migration this object runs), or undefined. */
  busy?: (name: string) => string | undefined;
}

type Step = qmp.QmpStep & { state: InstanceState };
type Where = { instance: string; action: HotplugAction; target: HotplugTarget; device?: string };

/** QMP run states in which the device set must not change (a migration holds it). */
const MIGRATION_RUN_STATES = new Set(['inmigrate', 'postmigrate', 'finish-migrate']);
/** `query-migrate` statuses of a migration that is not over. */
const MIGRATION_ACTIVE = new Set([
  'setup',
  'active',
  'pre-switchover',
  'device',
  'wait-unplug',
  'cancelling',
  'postcopy-active',
  'postcopy-paused',
  'postcopy-recover',
  'postcopy-recover-setup',
]);

async function call(s: qmp.QmpStep, c: QmpCommand): Promise<unknown> {
  return s.deadline.race(s.monitor.execute(c.execute, c.arguments), `'${c.execute}'`);
}

const asText = (v: unknown): string => JSON.stringify(v) ?? String(v);

/** Reads `query-commands` (`[{name}]`) into a set of names. */
export function parseQueryCommands(reply: unknown): Set<string> {
  if (!Array.isArray(reply)) throw new UnrecognizedOutputError('query-commands', asText(reply), 'reply');
  const names = reply.map((c: { name?: unknown } | null) => c?.name);
  if (!names.every((n): n is string => typeof n === 'string')) {
    throw new UnrecognizedOutputError('query-commands', asText(reply), 'reply');
  }
  return new Set(names);
}

/** Reads `qom-list` (`[{name, type}]`) of `/machine/peripheral`: the ids of the devices added with an id. */
export function parsePeripheralIds(reply: unknown): Set<string> {
  if (!Array.isArray(reply)) throw new UnrecognizedOutputError('qom-list', asText(reply), 'reply');
  const out = new Set<string>();
  for (const p of reply as Array<{ name?: unknown; type?: unknown } | null>) {
    if (typeof p?.name !== 'string' || typeof p.type !== 'string') {
      throw new UnrecognizedOutputError('qom-list', asText(reply), 'reply');
    }
    if (p.type.startsWith('child<')) out.add(p.name);
  }
  return out;
}

/** Reads `device-list-properties` (`[{name, type}]`): the property names. */
export function parseDeviceProperties(reply: unknown): string[] {
  if (!Array.isArray(reply))
    throw new UnrecognizedOutputError('device-list-properties', asText(reply), 'reply');
  return reply.map((p: { name?: unknown } | null) => {
    if (typeof p?.name !== 'string') {
      throw new UnrecognizedOutputError('device-list-properties', asText(reply), 'reply');
    }
    return p.name;
  });
}

/** Reads `query-migrate`'s `status` (absent before any migration). */
function migrateStatus(reply: unknown): string | undefined {
  if (reply === null || typeof reply !== 'object') {
    throw new UnrecognizedOutputError('query-migrate', asText(reply), 'reply');
  }
  const status = (reply as { status?: unknown }).status;
  if (status !== undefined && typeof status !== 'string') {
    throw new UnrecognizedOutputError('query-migrate', asText(reply), 'reply');
  }
  return status;
}

async function qemuFacts(s: qmp.QmpStep): Promise<HotplugQemuFacts> {
  return { commands: parseQueryCommands(await call(s, { execute: 'query-commands', arguments: {} })) };
}

/** The ids of the devices QEMU has under `/machine/peripheral` (everything added with an id). */
async function peripheralIds(s: qmp.QmpStep): Promise<Set<string>> {
  return parsePeripheralIds(
    await call(s, { execute: 'qom-list', arguments: { path: '/machine/peripheral' } }),
  );
}

/** Refuses while a migration holds the instance: the runtime it carries must not change under it. */
async function refuseDuringMigration(s: Step, where: Where, guard: HotplugGuard): Promise<void> {
  const busy = guard.busy?.(where.instance);
  if (busy) throw new HotplugError(where, [busy]);
  if (s.state.incoming !== undefined) {
    throw new HotplugError(where, [
      'it is a migration destination not yet finalized (finalizeMigrationDst first)',
    ]);
  }
  const status = await qmp.queryStatus(s);
  if (MIGRATION_RUN_STATES.has(status.status)) {
    throw new HotplugError(where, [`QEMU is in run state '${status.status}' (a migration holds the VM)`]);
  }
  const mig = migrateStatus(await call(s, { execute: 'query-migrate', arguments: {} }));
  if (mig !== undefined && MIGRATION_ACTIVE.has(mig)) {
    throw new HotplugError(where, [`a migration is in progress (status '${mig}')`]);
  }
}

/** The hotplug lock of an instance: `<conf>/<n>.hotplug.lock` holding this process's pid. */
function acquireHotplugLock(paths: InstancePaths, where: Where): () => void {
  const lock = `${paths.state.slice(0, -'.state'.length)}.hotplug.lock`;
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, String(process.pid), { flag: 'wx', mode: STATE_FILE_MODE });
      return () => rmSync(lock, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw e;
    }
    let holder = Number.NaN;
    try {
      holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
    } catch {
      // Released meanwhile: try again.
    }
    const st = Number.isInteger(holder) && holder > 0 ? readProcStat(holder) : undefined;
    if (holder === process.pid || (st && st.state !== 'Z' && st.state !== 'X')) {
      throw new HotplugError(where, [
        `another hotplug of this instance is in progress (process ${holder}, ${lock})`,
      ]);
    }
    rmSync(lock, { force: true }); // left by a process that is gone
  }
}

/** A QMP refusal as a hotplug error that quotes QEMU. */
function refused(where: Where, c: QmpCommand, e: unknown): HotplugError {
  const why =
    e instanceof QmpError ? `QEMU refused ${c.execute}: ${e.desc}` : `${c.execute} failed: ${errorText(e)}`;
  return new HotplugError(where, [why], { cause: e });
}

/**
 * Runs `fn` with the instance's hotplug lock, a checked QMP step (UUID), no migration,
 * and its runtime.
 */
async function withInstance<T>(
  lc: InstanceLifecycle,
  where: Where,
  options: HotplugOptions,
  guard: HotplugGuard,
  fn: (s: Step, runtime: InstanceRuntime) => Promise<T>,
): Promise<T> {
  const paths = lc.paths(where.instance);
  const deadline = Deadline.after(options.timeoutMs ?? DEFAULT_HOTPLUG_TIMEOUT_MS, options.signal);
  const release = acquireHotplugLock(paths, where);
  try {
    const s = await lc.step(where.instance, deadline);
    await refuseDuringMigration(s, where, guard);
    return await fn(s, lc.runtime(where.instance));
  } finally {
    release();
  }
}

function saveRuntime(lc: InstanceLifecycle, name: string, runtime: InstanceRuntime): void {
  writeFileAtomic(lc.paths(name).runtime, serializeRuntime(runtime));
}

/**
 * Runs `fn` (a `device_add`) with the vCPUs stopped on QEMU 5.1 and 5.2 under TCG: their
 * `device_add` first waits for every RCU reader (`drain_call_rcu`), and a TCG vCPU that
 * never halts (a busy guest) stays one, so `device_add` never answered and QEMU hung.
 * A VM that was running is resumed (`cont`) afterwards, also when `fn` fails.
 */
async function pausedIfNeeded<T>(s: Step, fn: () => Promise<T>): Promise<T> {
  const v = s.monitor.version;
  const affected = s.state.accel === 'tcg' && versionAtLeast(v, 5, 1) && !versionAtLeast(v, 6, 0);
  if (!affected || !(await qmp.queryStatus(s)).running) return fn();
  await call(s, { execute: 'stop', arguments: {} });
  try {
    return await fn();
  } finally {
    await qmp.cont(s);
  }
}

/** Plugs `dev` in at its bus (back end, then device; the back end is removed again if the device fails). */
async function plugIn(
  s: Step,
  runtime: InstanceRuntime,
  target: HotplugTarget,
  dev: RuntimeDisk | RuntimeNic,
  where: Where,
) {
  let writeCache = false;
  try {
    const props = parseDeviceProperties(
      await call(s, { execute: 'device-list-properties', arguments: { typename: dev.driver } }),
    );
    writeCache = props.includes('write-cache');
  } catch (e) {
    if (e instanceof QmpError)
      throw new HotplugError(where, [`this QEMU has no device '${dev.driver}'`], { cause: e });
    throw e;
  }
  const [backend, device] =
    target === 'disk'
      ? diskAddCommands(runtime, dev as RuntimeDisk, writeCache)
      : nicAddCommands(runtime, dev as RuntimeNic);
  try {
    await call(s, backend);
  } catch (e) {
    throw refused(where, backend, e);
  }
  try {
    await pausedIfNeeded(s, () => call(s, device));
  } catch (e) {
    const undo = backendRemoveCommand(target, dev.id);
    await call(s, undo).catch(() => undefined);
    throw refused(where, device, e);
  }
}

/**
 * Ganeti's `_VerifyHotplugCommand`: after `device_add`, QEMU must have the device. When it
 * has not, `undo` puts the runtime back. (A reply that cannot be read is an error too; the
 * runtime then keeps the device QEMU accepted.)
 */
async function verifyPlugged(s: Step, dev: RuntimeDisk | RuntimeNic, where: Where, undo: () => void) {
  if (!(await peripheralIds(s)).has(dev.id)) {
    undo();
    throw new HotplugError(where, [
      `QEMU accepted device_add but has no device '${dev.id}' under /machine/peripheral`,
    ]);
  }
}

/** Unplugs `dev`: `device_del`, the guest's release (`DEVICE_DELETED`), then the back end. */
async function unplug(
  s: Step,
  target: HotplugTarget,
  dev: RuntimeDisk | RuntimeNic,
  where: Where,
  unplugMs: number,
) {
  if ((await peripheralIds(s)).has(dev.id)) {
    const waiter = s.monitor.waitForEvent(['DEVICE_DELETED', 'DEVICE_UNPLUG_GUEST_ERROR'], {
      filter: (ev: MonitorEvent) => ev.data.device === dev.id,
    });
    const del: QmpCommand = { execute: 'device_del', arguments: { id: dev.id } };
    try {
      await call(s, del);
    } catch (e) {
      // A repeated removal of a device the guest has not released yet: keep waiting.
      if (!(e instanceof QmpError && /already in the process of unplug/i.test(e.desc))) {
        waiter.cancel();
        throw refused(where, del, e);
      }
    }
    let ev: MonitorEvent | undefined;
    try {
      ev = await s.deadline.race(waiter.promise, 'waiting for DEVICE_DELETED', unplugMs);
    } catch (e) {
      waiter.cancel();
      // The event may have come before we listened (a second call); ask QEMU.
      if ((await peripheralIds(s)).has(dev.id)) {
        throw new HotplugError(
          where,
          [
            `the guest did not release the device within ${unplugMs / 1000} s (no DEVICE_DELETED; a guest without ACPI PCI hotplug never does): QEMU keeps it and so does the runtime; QEMU removes it when the guest acknowledges, then remove it again to finish`,
          ],
          { cause: e },
        );
      }
    }
    if (ev?.event === 'DEVICE_UNPLUG_GUEST_ERROR') {
      throw new HotplugError(where, ['the guest refused to release the device (DEVICE_UNPLUG_GUEST_ERROR)']);
    }
  }
  const back = backendRemoveCommand(target, dev.id);
  // QEMU lets go of the back end after DEVICE_DELETED (the device is finalized later, in
  // an RCU callback): "Node … is in use" for a moment. Retried until the deadline.
  for (;;) {
    try {
      await call(s, back);
      return;
    } catch (e) {
      // Gone already (an earlier removal got this far): nothing left to remove.
      if (e instanceof QmpError && /not found|no such|cannot find|failed to find/i.test(e.desc)) return;
      const busy = e instanceof QmpError && /in use/i.test(e.desc);
      if (!busy || s.deadline.remaining() < BACKEND_RETRY_MS) throw refused(where, back, e);
    }
    await new Promise((r) => setTimeout(r, BACKEND_RETRY_MS));
  }
}

/** Pause between two attempts at removing a back end still in use, ms. */
const BACKEND_RETRY_MS = 50;

/**
 * See `KVMHypervisor.hotAddDevice`. Returns the device's runtime entry (id, bus slot).
 * @throws HotplugError naming the instance, target and every reason.
 */
export async function hotAddDevice(
  lc: InstanceLifecycle,
  name: string,
  target: HotplugTarget,
  device: InstanceDisk | InstanceNic,
  options: HotplugOptions = {},
  guard: HotplugGuard = {},
): Promise<RuntimeDisk | RuntimeNic> {
  const where: Where = { instance: name, action: 'add', target };
  return withInstance(lc, where, options, guard, async (s, runtime) => {
    const model = hotplugModel(runtime, target, target === 'nic' ? (device as InstanceNic).model : undefined);
    const reasons = [
      ...newDeviceProblems(runtime, target, device),
      ...hotplugRefusals(runtime, 'add', target, { model, facts: await qemuFacts(s) }),
    ];
    if (reasons.length > 0) throw new HotplugError(where, reasons);
    const driver = target === 'disk' ? (diskDriver(model) ?? model) : nicDriver(model);
    const bus = allocateBus(runtime, driver);
    if (!bus) {
      throw new HotplugError(where, [
        driver.startsWith('scsi-')
          ? 'every SCSI target is taken'
          : `no free PCI slot (kvm_pci_reservations ${runtime.hvparams.kvm_pci_reservations} to 31 are taken)`,
      ]);
    }
    const dev =
      target === 'disk'
        ? hotplugDisk(runtime, device as InstanceDisk, bus)
        : hotplugNic(runtime, device as InstanceNic, bus);
    where.device = dev.id;
    await plugIn(s, runtime, target, dev, where);
    // QEMU has it: the runtime says so before anything else can fail.
    saveRuntime(lc, name, withDevice(runtime, target, dev));
    await verifyPlugged(s, dev, where, () => saveRuntime(lc, name, runtime));
    lc.deps.log.info({ instance: name, device: dev.id, bus: dev.bus }, 'device hot-added');
    return dev;
  });
}

/**
 * See `KVMHypervisor.hotDelDevice`. `ref` is the device's UUID, QEMU id or (disks) path.
 * Returns the removed entry.
 */
export async function hotDelDevice(
  lc: InstanceLifecycle,
  name: string,
  target: HotplugTarget,
  ref: string,
  options: HotDelOptions = {},
  guard: HotplugGuard = {},
): Promise<RuntimeDisk | RuntimeNic> {
  const where: Where = { instance: name, action: 'remove', target };
  return withInstance(lc, where, options, guard, async (s, runtime) => {
    const dev = existing(runtime, target, ref, where);
    const reasons = hotplugRefusals(runtime, 'remove', target, { device: dev, facts: await qemuFacts(s) });
    if (reasons.length > 0) throw new HotplugError(where, reasons);
    await unplug(s, target, dev, where, options.unplugTimeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS);
    saveRuntime(lc, name, withoutDevice(runtime, target, dev.id));
    lc.deps.log.info({ instance: name, device: dev.id }, 'device hot-removed');
    return dev;
  });
}

function existing(
  runtime: InstanceRuntime,
  target: HotplugTarget,
  ref: string,
  where: Where,
): RuntimeDisk | RuntimeNic {
  const dev = findDevice(runtime, target, ref);
  if (!dev) {
    const have = (target === 'disk' ? runtime.disks : runtime.nics).map((d) => d.id);
    throw new HotplugError(where, [
      `the runtime has no ${target} '${ref}' (UUID, id${target === 'disk' ? ' or path' : ''}; it has ${have.length > 0 ? have.join(', ') : 'none'})`,
    ]);
  }
  where.device = dev.id;
  return dev;
}

/**
 * See `KVMHypervisor.hotModDevice`: a NIC is unplugged and plugged in again at the same
 * slot with the new MAC and/or network (Ganeti's HotModDevice re-plugs). Disks are refused.
 * When plugging the new NIC fails, the old one is plugged in again.
 */
export async function hotModDevice(
  lc: InstanceLifecycle,
  name: string,
  target: HotplugTarget,
  ref: string,
  changes: NicChanges,
  options: HotDelOptions = {},
  guard: HotplugGuard = {},
): Promise<RuntimeNic> {
  const where: Where = { instance: name, action: 'modify', target };
  return withInstance(lc, where, options, guard, async (s, runtime) => {
    const refusals = hotplugRefusals(runtime, 'modify', target);
    if (target === 'disk') throw new HotplugError(where, refusals);
    const old = existing(runtime, target, ref, where) as RuntimeNic;
    if (changes.mac === undefined && changes.network === undefined) {
      throw new HotplugError(where, ['nothing to change: give a new MAC and/or network']);
    }
    const model = old.driver === 'virtio-net-pci' ? 'paravirtual' : old.driver;
    const spec: InstanceNic = {
      uuid: old.uuid,
      mac: changes.mac ?? old.mac,
      model,
      network: changes.network ?? old.network,
    };
    const without = withoutDevice(runtime, 'nic', old.id);
    const reasons = [
      ...newDeviceProblems(without, 'nic', spec),
      ...hotplugRefusals(runtime, 'modify', 'nic', { model, device: old, facts: await qemuFacts(s) }),
    ];
    if (reasons.length > 0) throw new HotplugError(where, reasons);
    const bus: DeviceBus = old.bus;
    const fresh = hotplugNic(without, spec, bus);
    await unplug(s, 'nic', old, where, options.unplugTimeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS);
    // The runtime says what QEMU has at every point: without the old NIC, then with the new one.
    saveRuntime(lc, name, without);
    try {
      await plugIn(s, without, 'nic', fresh, where);
      saveRuntime(lc, name, withNicReplaced(runtime, old.id, fresh));
      await verifyPlugged(s, fresh, where, () => saveRuntime(lc, name, without));
    } catch (e) {
      if (e instanceof UnrecognizedOutputError) throw e;
      const back = await plugIn(s, without, 'nic', old, where).then(
        () => true,
        () => false,
      );
      if (back) saveRuntime(lc, name, runtime);
      throw new HotplugError(
        where,
        [
          `${e instanceof HotplugError ? e.reasons.join('; ') : errorText(e)}; ${back ? 'the old NIC is plugged in again' : 'the old NIC could not be plugged in again: the instance has no such NIC now'}`,
        ],
        { cause: e },
      );
    }
    lc.deps.log.info({ instance: name, device: fresh.id }, 'NIC hot-modified');
    return fresh;
  });
}

/**
 * See `KVMHypervisor.verifyHotplugSupport`: resolves when `action` of `target` can be done
 * on the running instance (Ganeti's rules, this device model's, this QEMU's commands).
 * `model` (NICs) is the model of the NIC to add; default `nic_type`.
 * @throws HotplugError listing every reason.
 */
export async function verifyHotplugSupport(
  lc: InstanceLifecycle,
  name: string,
  action: HotplugAction,
  target: HotplugTarget,
  options: HotplugOptions & { model?: string } = {},
): Promise<void> {
  const where: Where = { instance: name, action, target };
  const deadline = Deadline.after(options.timeoutMs ?? DEFAULT_HOTPLUG_TIMEOUT_MS, options.signal);
  const s = await lc.step(name, deadline);
  const runtime = lc.runtime(name);
  const reasons = hotplugRefusals(runtime, action, target, {
    model: hotplugModel(runtime, target, options.model),
    facts: await qemuFacts(s),
  });
  if (reasons.length > 0) throw new HotplugError(where, reasons);
}

/**
 * See `KVMHypervisor.hotplugSupported`: the instance runs, its QEMU answers as itself and
 * has `device_add` and `device_del` (Ganeti: the instance is up and QEMU ≥ 1.7).
 * @throws HypervisorError when it is not running; HotplugError when QEMU lacks the commands.
 */
export async function hotplugSupported(
  lc: InstanceLifecycle,
  name: string,
  options: HotplugOptions = {},
): Promise<void> {
  const deadline = Deadline.after(options.timeoutMs ?? DEFAULT_HOTPLUG_TIMEOUT_MS, options.signal);
  let s: qmp.QmpStep;
  try {
    s = await lc.step(name, deadline);
  } catch (e) {
    throw new HypervisorError(`instance '${name}': hotplug is not possible: ${errorText(e)}`, { cause: e });
  }
  const { commands } = await qemuFacts(s);
  const missing = ['device_add', 'device_del'].filter((c) => !commands.has(c));
  if (missing.length > 0) {
    throw new HotplugError({ instance: name, action: 'add', target: 'disk' }, [
      `this QEMU lacks the QMP command(s) ${missing.join(', ')}`,
    ]);
  }
}
