/**
 * Hostile middlemen for the fault matrix: a UNIX-socket proxy between the library and a
 * QEMU monitor whose connections can be cut under the library, and a TCP server that holds
 * a migration port and answers with garbage, like a foreign service would.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A UNIX-socket proxy in front of a monitor socket. */
export class MonitorProxy {
  /** The path the library connects to. */
  readonly path: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(path: string, server: Server) {
    this.path = path;
    this.server = server;
  }

  /**
   * Listens on `path` and forwards each connection to `upstream`. `rewrite`, when given,
   * edits what QEMU sends (chunk by chunk: QEMU writes each HMP line in one go).
   */
  static async start(
    path: string,
    upstream: string,
    rewrite?: (text: string) => string,
  ): Promise<MonitorProxy> {
    rmSync(path, { force: true });
    const server = createServer();
    const proxy = new MonitorProxy(path, server);
    server.on('connection', (client) => {
      proxy.accepted++;
      const qemu = connect(upstream);
      for (const s of [client, qemu]) {
        proxy.sockets.add(s);
        s.on('close', () => proxy.sockets.delete(s));
        s.on('error', () => {});
      }
      client.pipe(qemu);
      if (rewrite) qemu.on('data', (d: Buffer) => client.write(rewrite(d.toString('latin1')), 'latin1'));
      else qemu.pipe(client);
      client.on('close', () => qemu.destroy());
      qemu.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    return proxy;
  }

  /** Cuts every open connection (both directions); new connections are still accepted. */
  cut(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** Cuts every connection and stops listening: the monitor is unreachable from now on. */
  async kill(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}

/**
 * A TCP server on a migration port that is not QEMU: it greets like an SSH server, sends
 * random bytes, and after reading some of the migration stream says "Protocol mismatch."
 * and resets the connection.
 */
export class GarbageServer {
  readonly port: number;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  /** Bytes received from the migration source. */
  received = 0;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
  }

  static async start(host = '127.0.0.1'): Promise<GarbageServer> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    const addr = server.address();
    const g = new GarbageServer(server, typeof addr === 'object' && addr ? addr.port : 0);
    server.on('connection', (s) => {
      g.sockets.add(s);
      s.on('close', () => g.sockets.delete(s));
      s.on('error', () => {});
      s.write('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n');
      s.write(randomBytes(64 * 1024));
      let mine = 0;
      s.on('data', (d: Buffer) => {
        g.received += d.length;
        mine += d.length;
        if (mine > 256 * 1024 && !s.destroyed) {
          s.write('Protocol mismatch.\n');
          s.resetAndDestroy();
        }
      });
    });
    return g;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
