/**
 * Shared pieces of the argv renderer: QEMU option syntax (commas doubled inside values,
 * long-form booleans) and the context a rendering part writes into.
 */
import { HvParamError, type HvParamProblem } from '../errors.js';
import type { KvmHvParams } from '../hvparams/registry.js';
import type { QemuFeatures } from './features.js';
import type { InstancePaths } from './layout.js';
import type { InstanceRuntime } from './runtime-schema.js';

/** Addresses of one network interface, in the shape of `os.networkInterfaces()`. */
export interface InterfaceAddress {
  address: string;
  family: string | number;
  internal?: boolean;
}

/** Node-side facts the argv depends on; everything else comes from the runtime. */
export interface LaunchContext {
  /** The instance's files on this node. */
  paths: InstancePaths;
  /** The accelerator the life cycle chose (`kvm_flag` and `/dev/kvm`). */
  accel: 'kvm' | 'tcg';
  /** `-incoming` value for a migration target: `defer`, `tcp:0.0.0.0:8102`, … */
  incoming?: string;
  /**
   * This node's interfaces (`os.networkInterfaces()`), used when `vnc_bind_address` or
   * `spice_bind` names an interface; without it such a bind is an error.
   */
  interfaces?: Record<string, InterfaceAddress[] | undefined>;
  /** The user of a `security_model=pool` instance (the life cycle reserves it). */
  poolUser?: string;
  /** SPICE TLS files (`spice_use_tls`): Ganeti's `spice-ca.pem` and `spice.pem` (certificate and key). */
  spiceTls?: { caCert: string; cert: string; key: string };
  /**
   * Start with the vCPUs paused (`-S`; default true). A migration destination may leave it
   * out (`false`, with `incoming`) so that QEMU runs the guest as soon as the state is loaded.
   */
  paused?: boolean;
  /**
   * `-no-shutdown`: a guest that powers off leaves QEMU in run state `shutdown` instead of
   * exiting (default false).
   */
  noShutdown?: boolean;
  /**
   * Whether `/dev/vhost-net` is usable on this node. `false` refuses a NIC with vhost
   * (`vhost_net`) with an `HvParamError` instead of a QEMU that exits at start; absent: not
   * checked.
   */
  vhostNet?: boolean;
  /**
   * This node's values of the hvparams Ganeti takes from the current config at every start
   * rather than from the saved runtime (`keymap`, `security_model`, `security_domain`,
   * `use_chroot`), and this node's `kvm_path`: on a migration target they may differ from
   * the source's. Absent keys come from the runtime. `kvm_path` is informational here:
   * argv[0] is always `features.binary`, so probe this node's `kvm_path`.
   */
  nodeHvParams?: Partial<Pick<KvmHvParams, NodeHvParamName>>;
}

/** The hvparams a node may override at start ({@link LaunchContext.nodeHvParams}). */
export const NODE_HV_PARAMS = [
  'keymap',
  'security_model',
  'security_domain',
  'use_chroot',
  'kvm_path',
] as const;
/** Name of one of {@link NODE_HV_PARAMS}. */
export type NodeHvParamName = (typeof NODE_HV_PARAMS)[number];

/** The runtime's hvparams with this node's {@link LaunchContext.nodeHvParams} applied. */
export function effectiveHvParams(runtime: InstanceRuntime, ctx: LaunchContext): KvmHvParams {
  const out = { ...runtime.hvparams };
  for (const key of NODE_HV_PARAMS) {
    const value = ctx.nodeHvParams?.[key];
    if (value !== undefined) (out as Record<string, unknown>)[key] = value;
  }
  return out;
}

/** A QEMU option value: commas doubled (QemuOpts/keyval escaping). */
export function esc(value: string | number): string {
  return String(value).replaceAll(',', ',,');
}

/** A long-form boolean (`on`/`off`; the short forms are deprecated since QEMU 6.0). */
function onOff(value: boolean): string {
  return value ? 'on' : 'off';
}

/** `key=value` pairs joined with commas, values escaped, `undefined` values left out. */
export function opts(pairs: ReadonlyArray<readonly [string, string | number | boolean | undefined]>): string {
  return pairs
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'boolean' ? onOff(v) : esc(v as string | number)}`)
    .join(',');
}

/** What a rendering part gets: the runtime, the target QEMU, the node context, and where to put things. */
export interface RenderState {
  runtime: InstanceRuntime;
  /** `runtime.hvparams` with the node's overrides ({@link effectiveHvParams}). */
  hv: KvmHvParams;
  features: QemuFeatures;
  ctx: LaunchContext;
  argv: string[];
  problems: HvParamProblem[];
  /** Device drivers used, checked against the target QEMU at the end. */
  drivers: Map<string, string>;
}

/** Records that `driver` is needed because of hvparam `param`. */
export function useDriver(state: RenderState, driver: string, param: string): void {
  if (!state.drivers.has(driver)) state.drivers.set(driver, param);
}

/** `bus=…,addr=0x…` or the SCSI address, for a device at `bus`. */
export function busOpts(
  runtime: InstanceRuntime,
  bus: InstanceRuntime['disks'][number]['bus'],
): Array<readonly [string, string | number]> {
  switch (bus.type) {
    case 'pci':
      return [
        ['bus', runtime.machine.pciBus],
        ['addr', `0x${bus.slot.toString(16)}`],
      ];
    case 'scsi':
      return [
        ['bus', 'scsi.0'],
        ['channel', 0],
        ['scsi-id', bus.target],
        ['lun', 0],
      ];
    default:
      return [];
  }
}

/** The first address of `family` (4 or 6; 0: IPv4, else IPv6) of interface `name`, or undefined. */
export function interfaceAddress(ctx: LaunchContext, name: string, family: number): string | undefined {
  const list = ctx.interfaces?.[name] ?? [];
  const of = (v: 4 | 6) => list.find((a) => a.family === `IPv${v}` || a.family === v)?.address;
  if (family === 4 || family === 6) return of(family);
  return of(4) ?? of(6);
}

/** An {@link HvParamError} whose messages say which parameter cannot be honoured. */
export function cannotHonour(problems: readonly HvParamProblem[]): HvParamError {
  return new HvParamError(
    problems.map((p) => ({
      param: p.param,
      message: `Parameter '${p.param}' cannot be honoured: ${p.message}`,
    })),
  );
}
