/**
 * Bench fixtures: QEMU processes started by the library's own `QemuVm`, a TCP sink that
 * accepts a migration stream and discards it, socat runs, and a monitor wrapper that
 * counts the commands the library sends.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import type { Monitor } from '../../src/monitor/types.js';

/** A TCP listener on 127.0.0.1 that reads and drops whatever is sent (a migration target that never answers). */
export async function startSink(): Promise<{ port: number; server: Server; close: () => Promise<void> }> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.unref();
      }),
  };
}

/** Counts the commands sent through a monitor (`execute` and `humanCommand`). */
export interface CommandCounter {
  count: number;
}

/** Connects a QMP monitor whose `execute` increments `counter.count`. */
export async function countingQmp(path: string, counter: CommandCounter): Promise<Monitor> {
  const mon = await QmpMonitor.connect({ path });
  const execute = mon.execute.bind(mon);
  // humanCommand goes through execute too, so one hook counts both.
  mon.execute = ((...args: Parameters<typeof execute>) => {
    counter.count++;
    return execute(...args);
  }) as typeof mon.execute;
  return mon;
}

function haveSocat(): boolean {
  return spawnSync('socat', ['-V'], { stdio: 'ignore' }).status === 0;
}

/** True when socat is on the PATH, after trying `apt-get install socat` (and an update). */
export function ensureSocat(): boolean {
  if (haveSocat()) return true;
  console.log('socat not found; trying `apt-get install -y socat` …');
  const install = () =>
    execFileSync('apt-get', ['install', '-y', '-q', 'socat'], { stdio: 'ignore', timeout: 120_000 });
  try {
    install();
  } catch {
    try {
      execFileSync('apt-get', ['update', '-q'], { stdio: 'ignore', timeout: 120_000 });
      install();
    } catch {
      // reported below
    }
  }
  return haveSocat();
}

/**
 * Ganeti 2.x's `_CallMonitorCommand`: `echo <line> | socat - UNIX-CONNECT:<hmp>` through a
 * shell. Resolves with socat's output; rejects when socat fails or HMP reports an error.
 */
export function socatHmp(hmpPath: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `echo "$1" | socat - UNIX-CONNECT:"$2"`, 'sh', line, hmpPath]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`socat '${line}' exited with ${code}`));
      else if (/unknown command|Error|error:/.test(out.split('\n').slice(2).join('\n')))
        reject(new Error(`HMP '${line}' failed: ${out.slice(-200)}`));
      else resolve(out);
    });
  });
}
