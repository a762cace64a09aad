/**
 * Monitor reader limits benchmark (not run in CI): `npx tsx bench/monitor-limits.ts`.
 *
 * Each case runs in a fresh child process (so peak RSS belongs to that case alone) against
 * a fake monitor on a UNIX socket that writes with backpressure:
 *  - `hmp-reply <MiB>`: one HMP command whose reply is <MiB> of 80-byte lines, then the prompt;
 *    prints how long the reply took. Linear readers take ~4× as long for 16 MiB as for 4 MiB.
 *  - `hmp-flood <MiB>` / `qmp-flood <MiB>`: after the handshake the server streams up to
 *    <MiB> without a prompt (HMP) or newline (QMP); prints when and how the command failed,
 *    and how far the process's peak RSS grew.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HmpMonitor } from '../src/monitor/hmp.js';
import { QmpMonitor } from '../src/monitor/qmp.js';

const MiB = 1024 * 1024;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const LINE = Buffer.from(`${'x'.repeat(78)}\r\n`);
const BLOCK = Buffer.concat(Array.from({ length: (64 * 1024) / LINE.length }, () => LINE));

/** Writes `total` bytes of `block` to `socket`, waiting for drain; stops when the socket closes. */
async function stream(socket: Socket, total: number, block: Buffer): Promise<void> {
  let sent = 0;
  while (sent < total && !socket.destroyed) {
    const piece = block.subarray(0, Math.min(block.length, total - sent));
    sent += piece.length;
    if (!socket.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    }
  }
}

function listen(path: string, onCommand: (socket: Socket, line: string) => void, greeting: string): Server {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        onCommand(socket, line);
      }
    });
    socket.write(greeting);
  });
  server.listen(path);
  return server;
}

const HMP_BANNER = "QEMU 9.2.0 monitor - type 'help' for more information\r\n(qemu) ";
const QMP_GREETING =
  '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 9}, "package": ""}, "capabilities": []}}\r\n';

async function runCase(kind: string, mib: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-limits-'));
  const path = join(dir, 'mon.sock');
  const bytes = mib * MiB;
  try {
    if (kind === 'hmp-reply') {
      const server = listen(
        path,
        (socket, line) => {
          socket.write(`${line}\x1b[K\r\n`);
          // Whole lines only, so the prompt starts a line.
          const whole = bytes - (bytes % LINE.length);
          void stream(socket, whole, BLOCK).then(() => socket.write('(qemu) '));
        },
        HMP_BANNER,
      );
      const mon = await HmpMonitor.connect({ path }, { timeoutMs: 600_000 });
      const t = now();
      const text = await mon.command('info big');
      const ms = now() - t;
      await mon.close();
      server.close();
      return { case: `${kind} ${mib} MiB`, ms: Math.round(ms), replyChars: text.length };
    }
    const flood = Buffer.alloc(64 * 1024, 0x78);
    const server = listen(
      path,
      (socket, line) => {
        if (kind === 'qmp-flood' && line.includes('qmp_capabilities')) {
          socket.write('{"return": {}, "id": "kvmhv-1"}\r\n');
          return;
        }
        void stream(socket, bytes, flood);
      },
      kind === 'hmp-flood' ? HMP_BANNER : QMP_GREETING,
    );
    const mon =
      kind === 'hmp-flood'
        ? await HmpMonitor.connect({ path }, { timeoutMs: 600_000 })
        : await QmpMonitor.connect({ path }, { timeoutMs: 600_000 });
    const rssBefore = process.resourceUsage().maxRSS * 1024;
    let closeError: Error | undefined;
    mon.on('close', (e) => {
      closeError = e;
    });
    const t = now();
    let outcome: string;
    try {
      await mon.humanCommand('info flood');
      outcome = 'resolved';
    } catch (e) {
      const err = e as Error;
      outcome = `${err.name}: ${err.message.slice(0, 90)}`;
    }
    const ms = now() - t;
    const rssPeak = process.resourceUsage().maxRSS * 1024;
    await mon.close();
    server.close();
    const cause = closeError as (Error & { reason?: string }) | undefined;
    return {
      case: `${kind} ${mib} MiB`,
      ms: Math.round(ms),
      outcome,
      cause: cause ? `${cause.name} ${cause.reason ?? ''}` : undefined,
      peakRssGrowthMiB: Math.round((rssPeak - rssBefore) / MiB),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const [kind, mibArg] = process.argv.slice(2);
if (kind) {
  console.log(JSON.stringify(await runCase(kind, Number(mibArg))));
} else {
  const cases: [string, number][] = [
    ['hmp-reply', 4],
    ['hmp-reply', 16],
    ['hmp-flood', 256],
    ['qmp-flood', 256],
  ];
  for (const [k, m] of cases) {
    const r = spawnSync(process.execPath, [...process.execArgv, process.argv[1]!, k, String(m)], {
      encoding: 'utf8',
      timeout: 600_000,
    });
    process.stdout.write(r.stdout || `${k} ${m}: exit ${r.status} ${r.stderr.slice(0, 500)}\n`);
  }
}
