/**
 * The byte-stream seam under both monitor clients: connect to a UNIX or TCP socket,
 * or hand the clients any other `Duplex` (an in-memory pair in tests, a proxy, …).
 */
import { createConnection, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { MonitorError, MonitorTimeoutError } from '../errors.js';
import type { MonitorAddress } from './types.js';

/**
 * A connected byte stream to a monitor. A `net.Socket` is one; any `Duplex` that emits
 * `data`/`end`/`close`/`error`/`drain` like a socket works too.
 */
export type MonitorStream = Duplex;

/** Options for {@link connectTransport}. */
export interface ConnectTransportOptions {
  /** Give up connecting after this many milliseconds (default 10 000). */
  timeoutMs?: number;
}

/** Formats an address for messages: the socket path, or `host:port`. */
export function describeAddress(address: MonitorAddress): string {
  return 'path' in address ? address.path : `${address.host}:${address.port}`;
}

/**
 * Opens a UNIX-socket (`{ path }`) or TCP (`{ host, port }`) connection to a monitor.
 * Rejects with a `MonitorError` naming the socket path or `host:port` (and the system
 * error code, e.g. `ENOENT`, `ECONNREFUSED`), or a `MonitorTimeoutError` after `timeoutMs`.
 */
export function connectTransport(
  address: MonitorAddress,
  options: ConnectTransportOptions = {},
): Promise<Socket> {
  const where = describeAddress(address);
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const socket =
      'path' in address
        ? createConnection({ path: address.path })
        : createConnection({ host: address.host, port: address.port });
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(
        new MonitorTimeoutError(
          `cannot connect to monitor socket ${where}: no connection within ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => {
      cleanup();
      socket.destroy();
      const code = err.code ? `${err.code}: ` : '';
      reject(
        new MonitorError(`cannot connect to monitor socket ${where}: ${code}${err.message}`, { cause: err }),
      );
    };
    const onConnect = () => {
      cleanup();
      resolve(socket);
    };
    function cleanup(): void {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('connect', onConnect);
    }
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}
