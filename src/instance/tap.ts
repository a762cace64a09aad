/**
 * TUN/TAP features before QEMU is asked for them (Ganeti's `_GetTunFeatures` and
 * `_ProbeTapVnetHdr`). The node creates the taps (the argv opens them by name,
 * `ifname=…`); the kernel shows each tap's flags in `/sys/class/net/<ifname>/tun_flags`.
 *
 * - `virtio_net_queues` > 1 needs a tap made with `IFF_MULTI_QUEUE`, and a multi-queue tap
 *   needs `virtio_net_queues` > 1: the kernel refuses to attach across the two, and QEMU
 *   exits with "could not configure /dev/net/tun (<tap>): Invalid argument" (measured on
 *   QEMU 7.2 here, both ways). This check refuses it first with an `HvParamError` naming
 *   `virtio_net_queues`, the NIC and the tap.
 * - `vnet_hdr` is not a property of the tap: the kernel grants `IFF_VNET_HDR` at every
 *   open (it is one of `TUN_FEATURES`), so QEMU opens a tap made without it with
 *   `vnet_hdr=on` (measured: it starts). What matters is the kernel's support, which
 *   Ganeti reads with the `TUNGETFEATURES` ioctl; Node.js cannot issue an ioctl without a
 *   native module, so it is not read here (every kernel since 2.6.27 has `IFF_VNET_HDR`,
 *   since 3.8 `IFF_MULTI_QUEUE`).
 * - A tap that does not exist yet is created by QEMU itself with the flags it asks for;
 *   then `/dev/net/tun` must open read-write.
 * - An interface of that name that is not a TAP device is refused.
 */
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { HvParamError, type HvParamProblem, UnrecognizedOutputError } from '../errors.js';
import type { RuntimeNic } from './runtime-schema.js';

/** `IFF_TAP` (linux/if_tun.h). */
export const IFF_TAP = 0x0002;
/** `IFF_MULTI_QUEUE`: the tap has one queue per open file. */
export const IFF_MULTI_QUEUE = 0x0100;
/** `IFF_VNET_HDR`: frames carry a virtio-net header (offloads); granted per open. */
export const IFF_VNET_HDR = 0x4000;

/**
 * Parses `/sys/class/net/<if>/tun_flags` (`0x5902`).
 * @throws UnrecognizedOutputError quoting the text when it is not a hex number.
 */
export function parseTunFlags(text: string, path = 'tun_flags'): number {
  const t = text.trim();
  if (!/^0x[0-9a-fA-F]+$/.test(t)) throw new UnrecognizedOutputError(path, text, 'content');
  return Number.parseInt(t, 16);
}

/** What the node says about a tap: missing, not a TUN/TAP device, or its flags. */
export type TapFlags = { kind: 'missing' } | { kind: 'not-tun' } | { kind: 'tap'; flags: number };

/**
 * The problems of `nics` on a node where `tap(ifname)` tells each tap's flags and
 * `tunUsable` whether `/dev/net/tun` opens read-write. Pure.
 */
export function tapProblems(
  nics: readonly RuntimeNic[],
  tap: (ifname: string) => TapFlags,
  tunUsable: boolean,
): HvParamProblem[] {
  const problems: HvParamProblem[] = [];
  for (const nic of nics) {
    if (nic.network.type !== 'tap') continue;
    const ifname = nic.network.ifname;
    const state = tap(ifname);
    if (state.kind === 'missing') {
      if (!tunUsable) {
        problems.push({
          param: 'nics',
          message: `NIC ${nic.id}: tap '${ifname}' does not exist and /dev/net/tun does not open read-write, so QEMU cannot create it`,
        });
      }
      continue;
    }
    if (state.kind === 'not-tun' || (state.flags & IFF_TAP) === 0) {
      problems.push({
        param: 'nics',
        message: `NIC ${nic.id}: interface '${ifname}' exists but is not a TAP device`,
      });
      continue;
    }
    const flags = `tun_flags 0x${state.flags.toString(16)}`;
    if (nic.queues > 1 && (state.flags & IFF_MULTI_QUEUE) === 0) {
      problems.push({
        param: 'virtio_net_queues',
        message: `NIC ${nic.id}: virtio_net_queues is ${nic.queues} but tap '${ifname}' was created without IFF_MULTI_QUEUE (${flags}): create it with 'ip tuntap add dev ${ifname} mode tap multi_queue' or set virtio_net_queues=1`,
      });
    } else if (nic.queues === 1 && (state.flags & IFF_MULTI_QUEUE) !== 0) {
      problems.push({
        param: 'virtio_net_queues',
        message: `NIC ${nic.id}: tap '${ifname}' is multi-queue (${flags}) but virtio_net_queues is 1: QEMU opens it single-queue, which the kernel refuses`,
      });
    }
  }
  return problems;
}

/** A tap's flags as sysfs shows them. */
export function readTapFlags(ifname: string, sysDir = '/sys'): TapFlags {
  const dir = join(sysDir, 'class/net', ifname);
  let text: string;
  try {
    text = readFileSync(join(dir, 'tun_flags'), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    try {
      readFileSync(join(dir, 'type'), 'utf8');
      return { kind: 'not-tun' };
    } catch {
      return { kind: 'missing' };
    }
  }
  return { kind: 'tap', flags: parseTunFlags(text, join(dir, 'tun_flags')) };
}

/** True when `device` (default `/dev/net/tun`) opens read-write. */
export function tunDeviceUsable(device = '/dev/net/tun'): boolean {
  try {
    closeSync(openSync(device, constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks the taps of `nics` on this node before QEMU is started.
 * @throws HvParamError naming `virtio_net_queues` or `nics`, the NIC and the tap.
 */
export function checkTapFeatures(
  nics: readonly RuntimeNic[],
  opts: { sysDir?: string; tunDevice?: string } = {},
): void {
  if (!nics.some((n) => n.network.type === 'tap')) return;
  const problems = tapProblems(
    nics,
    (ifname) => readTapFlags(ifname, opts.sysDir),
    tunDeviceUsable(opts.tunDevice),
  );
  if (problems.length > 0) throw new HvParamError(problems);
}
