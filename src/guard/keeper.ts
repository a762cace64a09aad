/**
 * How `KVMHypervisor` uses the migration guard: where its sockets and records live, which
 * URI QEMU gets instead of the network address, and ending it at finalize. Kept out of
 * kvm.ts so the hypervisor only calls four methods.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorText } from '../core/error-text.js';
import { MigrationError } from '../errors.js';
import type { LoggerLike } from '../logger.js';
import { migrationUri } from '../migration/uri.js';
import type { MigrationTlsOptions } from '../tls/config.js';
import { dnOrders } from '../tls/dn.js';
import {
  endGuard,
  type GuardRecord,
  guardTimings,
  type MigrationGuardOptions,
  readGuardRecord,
  startGuard,
  writeGuardRecord,
} from './guard.js';

/** What the keeper needs to know about an instance. */
export interface GuardPlace {
  /** Folder for the records (and, under `guard/`, the sockets); undefined: a private temporary folder. */
  dir: string | undefined;
  /** Log file the guard appends to; undefined: `<dir>/<name>.guard.log`. */
  log: string | undefined;
  /** QEMU's pid, when known: the guard exits when it is gone. */
  qemuPid: number | undefined;
}

/** A guard started for a step: the URI to give QEMU. */
export interface GuardedUri {
  uri: string;
  record: GuardRecord;
}

/**
 * Whether the guard is on: `migrationGuard: false` turns it off (QEMU-native TLS, the
 * behaviour before issue 22); an object turns it on; undefined: on when `tls` is set (the
 * TLS handshake is what a silent peer freezes), off for migrations in clear (there QEMU does
 * not freeze, and admission needs the source addresses, which only the caller knows).
 */
export function guardEnabled(
  option: MigrationGuardOptions | boolean | undefined,
  tls: MigrationTlsOptions | undefined,
): boolean {
  if (option === false) return false;
  if (option === undefined) return tls !== undefined;
  return true;
}

/** Starts, records and ends the guards of one `KVMHypervisor`. */
export class GuardKeeper {
  private privateDir: string | undefined;
  private readonly options: MigrationGuardOptions;

  constructor(
    option: MigrationGuardOptions | boolean | undefined,
    private readonly tls: MigrationTlsOptions | undefined,
    private readonly log: LoggerLike,
  ) {
    this.options = typeof option === 'object' ? option : {};
  }

  private folder(place: GuardPlace): string {
    if (place.dir !== undefined) return place.dir;
    this.privateDir ??= mkdtempSync(join(tmpdir(), 'kvmhv-guard-'));
    return this.privateDir;
  }

  /** The 0700 folder of the sockets: QEMU's incoming socket is reachable by this user only. */
  private socketDir(place: GuardPlace): string {
    const dir = join(this.folder(place), 'guard');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
    return dir;
  }

  /**
   * Destination: the `unix:` URI QEMU listens on (pass it to `migrate-incoming`), after
   * which {@link startDestination} puts the guard on `listen:port`.
   */
  destinationSocket(name: string, place: GuardPlace): string {
    return join(this.socketDir(place), `${name}.in.sock`);
  }

  /**
   * Destination, once QEMU listens on `socket`: starts the guard on `listen:port`
   * relaying admitted connections to it, and records it.
   * @throws MigrationError (nothing changed on the source) when it cannot listen.
   */
  async startDestination(
    name: string,
    listen: string,
    port: number,
    socket: string,
    place: GuardPlace,
  ): Promise<GuardRecord> {
    // QEMU made the socket with its umask; only this user may connect to it.
    try {
      chmodSync(socket, 0o600);
    } catch (e) {
      this.log.warn({ instance: name, err: errorText(e) }, 'cannot restrict the incoming socket');
    }
    const host = hostOf(name, listen, port);
    const tls = this.tls && {
      dir: this.tls.dir,
      ...(this.tls.allowedPeers ? { allowedDns: this.tls.allowedPeers.flatMap(dnOrders) } : {}),
    };
    const started = await this.start(name, place, {
      role: 'destination',
      listenHost: host,
      listenPort: port,
      qemuSocket: socket,
      ...(this.options.allowedAddresses ? { allowedAddresses: [...this.options.allowedAddresses] } : {}),
      ...(tls ? { tls } : {}),
    });
    const record: GuardRecord = { formatVersion: 1, role: 'destination', ...started, socket };
    this.record(name, place, record);
    this.log.info(
      { instance: name, pid: started.pid, listen: `${host}:${port}`, tls: tls !== undefined },
      'migration guard listening for the source',
    );
    return record;
  }

  /**
   * Source: starts a guard on a local socket that relays to `target:port` (TLS with the
   * client certificate when `tls` is set) and returns the `unix:` URI to migrate to.
   */
  async startSource(name: string, target: string, port: number, place: GuardPlace): Promise<GuardedUri> {
    const host = hostOf(name, target, port);
    const socket = join(this.socketDir(place), `${name}.out.sock`);
    const tls = this.tls && { dir: this.tls.dir, hostname: this.tls.hostname ?? host };
    const started = await this.start(name, place, {
      role: 'source',
      socket,
      targetHost: host,
      targetPort: port,
      ...(tls ? { tls } : {}),
    });
    const record: GuardRecord = { formatVersion: 1, role: 'source', ...started, socket };
    this.record(name, place, record);
    this.log.info(
      { instance: name, pid: started.pid, target: `${host}:${port}` },
      'migration guard relaying to the destination',
    );
    return { uri: `unix:${socket}`, record };
  }

  /** Ends the recorded guard of `name` in `role`, if any; never throws (problems are logged). */
  async end(name: string, role: 'source' | 'destination', place: GuardPlace): Promise<void> {
    // Never create a folder just to look into it: finalize calls this with the guard off too.
    const dir = place.dir ?? this.privateDir;
    if (dir === undefined) return;
    try {
      const record = readGuardRecord(dir, name, role);
      if (record) await endGuard(record, { dir, name });
      // The private folder goes with its last guard (sockets and records are gone by now).
      if (dir === this.privateDir && !readdirSync(dir).some((f) => f.endsWith('.guard'))) {
        rmSync(dir, { recursive: true, force: true });
        this.privateDir = undefined;
      }
    } catch (e) {
      this.log.error({ instance: name, role, err: errorText(e) }, 'ending the migration guard failed');
    }
  }

  private async start(
    name: string,
    place: GuardPlace,
    config: Omit<
      Parameters<typeof startGuard>[0],
      'connectMs' | 'handshakeMs' | 'lifetimeMs' | 'idleExitMs' | 'drainMs'
    >,
  ) {
    const log = place.log ?? join(this.folder(place), `${name}.guard.log`);
    try {
      return await startGuard(
        { ...config, ...guardTimings(this.options), ...(place.qemuPid ? { qemuPid: place.qemuPid } : {}) },
        log,
      );
    } catch (e) {
      throw new MigrationError(`instance '${name}': ${errorText(e)}`, { instance: name, changedVm: false });
    }
  }

  private record(name: string, place: GuardPlace, record: GuardRecord): void {
    writeGuardRecord(this.folder(place), name, record);
  }
}

/** The bare host of `host` (IPv6 without brackets), checked as a migration target is. */
function hostOf(name: string, host: string, port: number): string {
  try {
    migrationUri(host, port);
  } catch (e) {
    throw new MigrationError(`instance '${name}': ${errorText(e)}`, { instance: name, changedVm: false });
  }
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}
