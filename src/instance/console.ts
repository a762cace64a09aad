/**
 * How a user reaches an instance's console: Ganeti's `GetInstanceConsole`. Pure: the
 * runtime, the instance's files and this node's interfaces in, a typed answer out.
 *
 * Ganeti's order: the serial console when `serial_console` is on (socat on the serial
 * socket, run on the primary node over ssh); else VNC when it listens on an address with a
 * display; else SPICE; else a message. Differences: Ganeti wraps socat in
 * `kvm-console-wrapper`, which resumes a VM paused by `startup_paused` first; here the
 * command is plain socat (this library never leaves a VM paused unless asked); a VNC
 * server on a UNIX socket (`vnc_bind_address` a folder), which Ganeti reports as a
 * message, is a `vnc` console with its socket; interface binds are resolved to the
 * address QEMU listens on.
 */
import { isIP } from 'node:net';
import { HypervisorError } from '../errors.js';
import { type InterfaceAddress, interfaceAddress } from './argv-common.js';
import type { InstancePaths } from './layout.js';
import type { InstanceRuntime } from './runtime.js';

/** Ganeti's `VNC_BASE_PORT`: display N listens on TCP port 5900 + N. */
export const VNC_BASE_PORT = 5900;

/**
 * socat's options for the local end of a serial console (Ganeti's
 * `_SocatUnixConsoleParams` for socat ≥ 1.7): raw terminal, no echo, Ctrl-] (0x1d) quits.
 */
export const SOCAT_CONSOLE_STDIO = 'STDIO,raw,echo=0,escape=0x1d';

/** The serial console: a UNIX socket QEMU serves, reached with socat on the node. */
export interface SerialConsole {
  kind: 'serial';
  instance: string;
  /** QEMU's `-serial unix:…` socket. */
  socket: string;
  /** What a user runs on this node to attach (exit with Ctrl-]). */
  command: string[];
}

/** A VNC server on TCP (`host`, `port`, `display`) or on a UNIX socket (`socket`). */
export interface VncConsole {
  kind: 'vnc';
  instance: string;
  host?: string;
  port?: number;
  /** `port − 5900`, what `vncviewer host:display` takes. */
  display?: number;
  socket?: string;
  /** The server wants a password (`vnc_password_file`). */
  password: boolean;
  /** The server speaks TLS (`vnc_tls`). */
  tls: boolean;
}

/** A SPICE server. */
export interface SpiceConsole {
  kind: 'spice';
  instance: string;
  host: string;
  port: number;
  password: boolean;
}

/** No console (Ganeti's `CONS_MESSAGE`). */
export interface MessageConsole {
  kind: 'message';
  instance: string;
  message: string;
}

/** What `getInstanceConsole` returns. */
export type InstanceConsole = SerialConsole | VncConsole | SpiceConsole | MessageConsole;

/** What {@link instanceConsole} needs from the node. */
export interface ConsoleContext {
  /** The socat binary (Ganeti's `SOCAT_PATH`; default `socat` from the PATH). */
  socat?: string;
  /** This node's interfaces (`os.networkInterfaces()`), for interface binds. */
  interfaces?: Record<string, InterfaceAddress[] | undefined>;
}

/** `host` as a URL or socat host part: IPv6 addresses in brackets. */
function hostPart(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/**
 * The console of an instance, from its runtime (see the module comment for the order).
 * @throws HypervisorError when VNC or SPICE is bound to an interface that has no address
 * on this node (QEMU could not have listened there either).
 */
export function instanceConsole(
  runtime: InstanceRuntime,
  paths: InstancePaths,
  ctx: ConsoleContext = {},
): InstanceConsole {
  const instance = runtime.instance.name;
  if (runtime.hvparams.serial_console) {
    return {
      kind: 'serial',
      instance,
      socket: paths.serial,
      command: [ctx.socat ?? 'socat', SOCAT_CONSOLE_STDIO, `UNIX-CONNECT:${paths.serial}`],
    };
  }
  const d = runtime.display;
  const resolve = (name: string, family: number, param: string): string => {
    const ip = interfaceAddress({ paths, accel: 'tcg', interfaces: ctx.interfaces ?? {} }, name, family);
    if (!ip) {
      throw new HypervisorError(
        `instance '${instance}': ${param} names interface '${name}', which has no IPv${family === 6 ? 6 : 4} address on this node`,
      );
    }
    return ip;
  };
  if (d.type === 'vnc') {
    const common = { kind: 'vnc' as const, instance, password: d.password, tls: d.tls !== undefined };
    if (d.bind.type === 'socket') return { ...common, socket: d.bind.path };
    if (d.display !== undefined) {
      const host = d.bind.type === 'ip' ? d.bind.address : resolve(d.bind.name, 4, 'vnc_bind_address');
      return { ...common, host, port: VNC_BASE_PORT + d.display, display: d.display };
    }
  }
  if (d.type === 'spice') {
    const host = d.bind.type === 'ip' ? d.bind.address : resolve(d.bind.name, d.bind.ipVersion, 'spice_bind');
    return { kind: 'spice', instance, host, port: d.port, password: d.password };
  }
  return { kind: 'message', instance, message: `No serial shell for instance ${instance}` };
}

/** One line that tells a user how to reach the console. */
export function describeConsole(c: InstanceConsole): string {
  switch (c.kind) {
    case 'serial':
      return `serial console of '${c.instance}' on ${c.socket}: run ${c.command.join(' ')} (Ctrl-] leaves)`;
    case 'vnc': {
      const extras = [c.password ? 'password' : '', c.tls ? 'TLS' : ''].filter(Boolean).join(', ');
      const where =
        c.socket !== undefined
          ? `on the UNIX socket ${c.socket}`
          : `on ${hostPart(c.host ?? '')}:${c.port} (display ${c.display}): vncviewer ${hostPart(c.host ?? '')}::${c.port}`;
      return `VNC console of '${c.instance}' ${where}${extras ? ` (${extras})` : ''}`;
    }
    case 'spice':
      return `SPICE console of '${c.instance}' on ${hostPart(c.host)}:${c.port}: remote-viewer spice://${hostPart(c.host)}:${c.port}${c.password ? ' (password)' : ''}`;
    case 'message':
      return c.message;
  }
}
