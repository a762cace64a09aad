/**
 * Monitor round-trip benchmark: `npm run bench [-- N [M]] [--quick]`.
 *
 * Against one real QEMU (TCG, -m 64) it measures, in one run, interleaved in blocks of
 * 100 round trips so that load changes hit both alike (ratios use medians):
 *  (a) our persistent `QmpMonitor` doing N `query-status` round trips;
 *  (b) the floor: one persistent raw socket doing the same JSON round trips by hand;
 *  (c) Ganeti's way: one `socat` process per HMP command
 *      (`echo 'info status' | socat - UNIX-CONNECT:hmp.sock`), M times.
 * socat is installed with apt-get when missing and possible; otherwise (c) is skipped.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { QemuVm } from '../src/testing/qemu-vm.js';
import { ensureSocat, socatHmp } from './lib/qemu-pair.js';
import { openRawQmp } from './lib/raw-qmp.js';
import { QUICK, runMain, writeResults } from './lib/report.js';

const positional = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const N = Number(positional[0] ?? (QUICK ? 200 : 4000));
const M = Number(positional[1] ?? (QUICK ? 3 : 20));
const BLOCK = 100;

interface Stats {
  label: string;
  count: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
}

function stats(label: string, samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  const pick = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return {
    label,
    count: samples.length,
    meanMs: samples.reduce((a, b) => a + b, 0) / samples.length,
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
  };
}

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Our client: `rounds` timed `query-status` round trips. */
async function oursBlock(mon: QmpMonitor, rounds: number, out: number[]): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    const t = now();
    await mon.execute('query-status');
    out.push(now() - t);
  }
}

/** The floor: a raw persistent socket, JSON written and lines split by hand. */
async function rawClient(
  path: string,
): Promise<{ block: (rounds: number, out: number[]) => Promise<void>; close: () => void }> {
  // The same bytes QmpMonitor sends: `oob` where offered, no id, no newline.
  const qmp = await openRawQmp(path, (greeting) =>
    greeting.includes('"oob"')
      ? '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}'
      : '{"execute":"qmp_capabilities"}',
  );
  return {
    async block(rounds, out) {
      for (let i = 0; i < rounds; i++) {
        const t = now();
        qmp.write('{"execute":"query-status"}');
        await qmp.next();
        out.push(now() - t);
      }
    },
    close: qmp.close,
  };
}

async function ganeti(hmpPath: string): Promise<number[]> {
  const first = await socatHmp(hmpPath, 'info status');
  if (!first.includes('VM status')) throw new Error(`unexpected socat output: ${JSON.stringify(first)}`);
  const out: number[] = [];
  for (let i = 0; i < M; i++) {
    const t = now();
    await socatHmp(hmpPath, 'info status');
    out.push(now() - t);
  }
  return out;
}

function row(s: Stats): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toFixed(3));
  return `${s.label.padEnd(44)} ${String(s.count).padStart(6)} ${f(s.meanMs).padStart(10)} ${f(s.p50Ms).padStart(10)} ${f(s.p99Ms).padStart(10)}`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-'));
  const vm = await QemuVm.start({ name: 'bench', dir, qmpSockets: 2, hmp: true, memoryMiB: 64 });
  try {
    console.log(
      `QEMU pid ${vm.pid} (${vm.accel}); N=${N} QMP round trips each, interleaved in blocks of ${BLOCK}; M=${M} socat runs\n`,
    );
    const mon = await QmpMonitor.connect({ path: vm.qmpPaths[0]! });
    const raw = await rawClient(vm.qmpPaths[1]!);
    const oursMs: number[] = [];
    const rawMs: number[] = [];
    try {
      await oursBlock(mon, 200, []); // warm-up: JIT, socket buffers
      await raw.block(200, []);
      for (let done = 0; done < N; done += BLOCK) {
        const n = Math.min(BLOCK, N - done);
        // Alternate which goes first so neither always follows the other.
        if ((done / BLOCK) % 2 === 0) {
          await oursBlock(mon, n, oursMs);
          await raw.block(n, rawMs);
        } else {
          await raw.block(n, rawMs);
          await oursBlock(mon, n, oursMs);
        }
      }
    } finally {
      await mon.close();
      raw.close();
    }
    const a = stats('(a) QmpMonitor, persistent, query-status', oursMs);
    const b = stats('(b) raw socket floor, persistent', rawMs);
    let c: Stats | undefined;
    if (ensureSocat()) c = stats("(c) Ganeti: socat per HMP 'info status'", await ganeti(vm.hmpPath!));
    else console.log('(c) skipped: socat is not installed and could not be installed');
    console.log(
      `${'client'.padEnd(44)} ${'count'.padStart(6)} ${'mean ms'.padStart(10)} ${'p50 ms'.padStart(10)} ${'p99 ms'.padStart(10)}`,
    );
    for (const s of [a, b, c]) if (s) console.log(row(s));
    console.log('');
    const ratio = a.p50Ms / b.p50Ms;
    console.log(
      `ours / floor   (p50): ${ratio.toFixed(2)}x   (mean ${(a.meanMs / b.meanMs).toFixed(2)}x)   target <= 1.1x`,
    );
    if (c) console.log(`ganeti / ours  (p50): ${(c.p50Ms / a.p50Ms).toFixed(0)}x`);
    const path = writeResults(QUICK ? 'roundtrip-quick' : 'roundtrip', {
      n: N,
      m: M,
      accel: vm.accel,
      ours: a,
      floor: b,
      socat: c ?? null,
      ratios: {
        oursOverFloorP50: ratio,
        oursOverFloorMean: a.meanMs / b.meanMs,
        socatOverOursP50: c ? c.p50Ms / a.p50Ms : null,
      },
    });
    console.log(`results: ${path}`);
  } finally {
    await vm.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
