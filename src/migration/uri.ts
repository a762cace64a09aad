/** Checking a migration target and building the `tcp:` URI QEMU gets. */
import { isIP } from 'node:net';
import { MigrationError } from '../errors.js';

const HOST_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/**
 * Checks `host` (a host name, an IPv4 address, or an IPv6 address with or without
 * brackets) and `port` (1–65535), and returns `tcp:HOST:PORT` with IPv6 bracketed.
 * Throws a `MigrationError` naming the bad value before anything is sent to QEMU.
 */
export function migrationUri(host: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new MigrationError(
      `invalid migration port ${JSON.stringify(port)}: must be an integer from 1 to 65535`,
    );
  }
  if (typeof host !== 'string' || host.length === 0) {
    throw new MigrationError(`invalid migration target ${JSON.stringify(host)}: empty host`);
  }
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(bare) === 6) return `tcp:[${bare}]:${port}`;
  if (bare !== host) {
    throw new MigrationError(
      `invalid migration target ${JSON.stringify(host)}: brackets hold an IPv6 address only`,
    );
  }
  if (isIP(host) === 4) return `tcp:${host}:${port}`;
  // Anything else must be a DNS name: this also keeps ',', ':', spaces and newlines
  // (HMP and URI syntax) out of the command.
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length > 253 || !name.split('.').every((l) => HOST_LABEL.test(l)) || /^[\d.]+$/.test(name)) {
    throw new MigrationError(
      `invalid migration target ${JSON.stringify(host)}: not a host name, an IPv4 address or an IPv6 address`,
    );
  }
  return `tcp:${host}:${port}`;
}
