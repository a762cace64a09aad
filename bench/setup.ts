/**
 * Migration set-up benchmark: `npm run bench:setup [-- --rounds=N] [--quick]`.
 *
 * How long from "migrate this VM" until QEMU has accepted `migrate`, on one source QEMU
 * (TCG, -m 64), interleaved round by round, four ways:
 *  - ours (persistent monitor): `KVMHypervisor.migrateInstance` on a monitor already open,
 *    with its migration journal (one atomic write before the first change, fsync after)
 *    on a tmpfs (`/dev/shm` where it exists), as Ganeti's run directory `/var/run` is on a
 *    Debian host;
 *  - ours, journal on disk: the same with the journal in the bench's folder under
 *    `os.tmpdir()` (this machine's disk);
 *  - ours without the journal: the same object without `stateDir` (the differences are
 *    the journal's cost);
 *  - ours (cold): a new `KVMHypervisor`, so the time includes opening the QMP connection;
 *  - Ganeti 3.x: one fresh QMP session per command (greeting, `qmp_capabilities`,
 *    `query-commands`, the command, close) for `migrate-set-parameters`,
 *    `migrate-set-capabilities` and `migrate`, with the bytes Python's `json.dumps`
 *    writes, on a raw Node socket (no Python start-up or parsing: a lower bound for Ganeti);
 *  - Ganeti 2.x: one `socat` per HMP command (`echo … | socat - UNIX-CONNECT:…`) for the
 *    bandwidth, the downtime, each capability and `migrate -d`.
 * The target is a TCP sink that reads and drops the stream; after each round the migration
 * is cancelled and the settings are put back (not timed). Prints medians and ratios.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVMHypervisor } from '../src/kvm.js';
import { QmpMonitor } from '../src/monitor/qmp.js';
import { writeGuestImage } from '../src/testing/guest/index.js';
import { QemuVm } from '../src/testing/qemu-vm.js';
import { type CommandCounter, countingQmp, ensureSocat, socatHmp, startSink } from './lib/qemu-pair.js';
import { arg, fmt, nowMs, printTable, QUICK, runMain, sleep, summarize, writeResults } from './lib/report.js';

const ROUNDS = Number(arg('rounds', QUICK ? '3' : '30'));
const WARMUP = QUICK ? 1 : 3;
const CAPS = arg('caps', 'auto-converge');
// Slow enough that no round's migration finishes before it is cancelled: the guest keeps
// 8 MiB of non-zero pages dirty, sent at 1 MiB/s.
const BANDWIDTH_MIB = 1;
const DOWNTIME_MS = 30;
const MiB = 1024 * 1024;

type Way = 'ours' | 'ours-diskjournal' | 'ours-nojournal' | 'ours-cold' | 'ganeti3' | 'ganeti2';

/** `json.dumps` with Python's default separators (`', '`, `': '`), as Ganeti's serializer writes. */
function pyJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`)
      .join(', ')}}`;
  }
  return JSON.stringify(v);
}

/**
 * One Ganeti 3.x `@_ensure_connection` call on a raw socket: connect, greeting,
 * `qmp_capabilities`, `query-commands`, the command, close (Ganeti's exact bytes; no ids).
 */
function ganetiSession(path: string, command: string, args?: Record<string, unknown>): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const msgs = [
      `${pyJson({ execute: 'qmp_capabilities' })}\n`,
      `${pyJson({ execute: 'query-commands' })}\n`,
      `${pyJson(args ? { execute: command, arguments: args } : { execute: command })}\n`,
    ];
    let buf = '';
    let step = 0; // 0: greeting, then one reply per message sent
    sock.setEncoding('utf8');
    sock.on('error', reject);
    sock.on('data', (d: string) => {
      buf += d;
      let nl = buf.indexOf('\n');
      while (nl !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        if (line.includes('"event"')) continue;
        if (step > 0 && line.includes('"error"')) {
          sock.destroy();
          reject(new Error(`Ganeti session '${command}': ${line}`));
          return;
        }
        if (step === msgs.length) {
          sock.end();
          sock.destroy();
          resolve();
          return;
        }
        sock.write(msgs[step++]!);
      }
    });
  });
}

async function ganeti3(path: string, port: number): Promise<void> {
  const caps = CAPS ? CAPS.split(':') : [];
  await ganetiSession(path, 'migrate-set-parameters', {
    'max-bandwidth': BANDWIDTH_MIB * MiB,
    'downtime-limit': DOWNTIME_MS,
    'max-postcopy-bandwidth': BANDWIDTH_MIB * MiB,
  });
  if (caps.length) {
    await ganetiSession(path, 'migrate-set-capabilities', {
      capabilities: caps.map((capability) => ({ capability, state: true })),
    });
  }
  await ganetiSession(path, 'migrate', { uri: `tcp:127.0.0.1:${port}` });
}

async function ganeti2(hmp: string, port: number): Promise<void> {
  // Ganeti 2.16 sent migrate_set_speed / migrate_set_downtime, removed from HMP in QEMU 6;
  // their successors take one socat run each too.
  const lines = [
    `migrate_set_parameter max-bandwidth ${BANDWIDTH_MIB}M`,
    `migrate_set_parameter downtime-limit ${DOWNTIME_MS}`,
  ];
  for (const c of CAPS ? CAPS.split(':') : []) lines.push(`migrate_set_capability ${c} on`);
  lines.push(`migrate -d tcp:127.0.0.1:${port}`);
  for (const l of lines) await socatHmp(hmp, l);
}

/**
 * Cancels whatever migration runs and puts the VM back as it was (untimed): capabilities
 * off and the parameters QEMU started with, so every way starts from the same state.
 */
async function reset(mon: QmpMonitor, initial: Record<string, unknown>): Promise<void> {
  await mon.execute('migrate_cancel');
  for (let i = 0; i < 400; i++) {
    const s = (await mon.execute('query-migrate')) as { status?: string };
    if (!s.status || ['cancelled', 'failed', 'completed', 'none'].includes(s.status)) break;
    await sleep(5);
  }
  const caps = (await mon.execute('query-migrate-capabilities')) as { capability: string; state: boolean }[];
  // 'events' stays: the library leaves it on after its first migration (as libvirt does).
  const on = caps
    .filter((c) => c.state && c.capability !== 'events')
    .map((c) => ({ capability: c.capability, state: false }));
  if (on.length) await mon.execute('migrate-set-capabilities', { capabilities: on });
  await mon.execute('migrate-set-parameters', initial);
  const st = (await mon.execute('query-status')) as { running: boolean };
  if (!st.running) await mon.execute('cont');
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kvmhv-bench-setup-'));
  const sink = await startSink();
  const accel = arg('accel', 'tcg') as 'tcg' | 'kvm';
  const image = join(dir, 'guest.img');
  writeGuestImage(image, { dirtyMiB: 8, rateMiBps: 4 });
  const vm = await QemuVm.start({
    name: 'setup',
    dir,
    memoryMiB: 64,
    qmpSockets: 3,
    hmp: true,
    accel,
    kernel: image,
  });
  const socat = ensureSocat();
  const counter: CommandCounter = { count: 0 };
  const instance = {
    name: 'setup',
    hvparams: {
      migration_port: sink.port,
      migration_bandwidth: BANDWIDTH_MIB,
      migration_downtime: DOWNTIME_MS,
      migration_caps: CAPS,
    },
  };
  // One monitor shared by the journaled object and the one without a journal.
  const shared = countingQmp(vm.qmpPaths[0]!, counter);
  // Where Ganeti keeps run state (/var/run) is a tmpfs on a Debian host; /dev/shm is one here.
  const shm = existsSync('/dev/shm') ? mkdtempSync(join('/dev/shm', 'kvmhv-bench-setup-')) : undefined;
  const stateDir = join(shm ?? dir, 'state');
  const diskStateDir = join(dir, 'state-disk');
  const hv = new KVMHypervisor({ monitor: () => shared, stateDir });
  const onDisk = new KVMHypervisor({ monitor: () => shared, stateDir: diskStateDir });
  const plain = new KVMHypervisor({ monitor: () => shared });
  const admin = await QmpMonitor.connect({ path: vm.qmpPaths[2]! });
  const started = (await admin.execute('query-migrate-parameters')) as Record<string, unknown>;
  const initial = Object.fromEntries(
    ['max-bandwidth', 'downtime-limit', 'max-postcopy-bandwidth']
      .filter((k) => started[k] !== undefined)
      .map((k) => [k, started[k]]),
  );
  const samples: Record<Way, number[]> = {
    ours: [],
    'ours-diskjournal': [],
    'ours-nojournal': [],
    'ours-cold': [],
    ganeti3: [],
    ganeti2: [],
  };
  const commands: number[] = [];
  const ways: Way[] = [
    'ours',
    'ours-diskjournal',
    'ours-nojournal',
    'ours-cold',
    'ganeti3',
    ...(socat ? (['ganeti2'] as Way[]) : []),
  ];
  try {
    console.log(`QEMU pid ${vm.pid} (${vm.accel}), ${ROUNDS} rounds (+${WARMUP} warm-up), caps '${CAPS}'\n`);
    for (let r = 0; r < ROUNDS + WARMUP; r++) {
      // Rotate the order so no way always runs right after another.
      const order = ways.map((_, i) => ways[(i + r) % ways.length]!);
      for (const way of order) {
        let ms: number;
        if (way === 'ours') {
          await hv.monitorFor(instance.name); // open before timing: this is the persistent case
          const before = counter.count;
          const t = nowMs();
          await hv.migrateInstance(instance, '127.0.0.1', true);
          ms = nowMs() - t;
          if (r >= WARMUP) commands.push(counter.count - before);
          await hv.finalizeMigrationSource(instance, false);
        } else if (way === 'ours-diskjournal') {
          await onDisk.monitorFor(instance.name);
          const t = nowMs();
          await onDisk.migrateInstance(instance, '127.0.0.1', true);
          ms = nowMs() - t;
          await onDisk.finalizeMigrationSource(instance, false);
        } else if (way === 'ours-nojournal') {
          await plain.monitorFor(instance.name);
          const t = nowMs();
          await plain.migrateInstance(instance, '127.0.0.1', true);
          ms = nowMs() - t;
          await plain.finalizeMigrationSource(instance, false);
        } else if (way === 'ours-cold') {
          // The only QMP client of socket 0 is `hv`: the cold one uses socket 1.
          const t = nowMs();
          const cold = new KVMHypervisor({
            monitor: () => QmpMonitor.connect({ path: vm.qmpPaths[1]! }),
            stateDir,
          });
          try {
            await cold.migrateInstance(instance, '127.0.0.1', true);
            ms = nowMs() - t;
            await cold.finalizeMigrationSource(instance, false);
          } finally {
            await cold.close();
          }
        } else if (way === 'ganeti3') {
          const t = nowMs();
          await ganeti3(vm.qmpPaths[1]!, sink.port);
          ms = nowMs() - t;
        } else {
          const t = nowMs();
          await ganeti2(vm.hmpPath!, sink.port);
          ms = nowMs() - t;
        }
        await reset(admin, initial);
        if (r >= WARMUP) samples[way].push(ms);
      }
    }
  } finally {
    await admin.close().catch(() => {});
    await hv.close();
    await plain.close();
    await onDisk.close();
    if (shm) rmSync(shm, { recursive: true, force: true });
    await vm.kill();
    await sink.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const s = Object.fromEntries(ways.map((w) => [w, summarize(samples[w])])) as Record<
    Way,
    ReturnType<typeof summarize>
  >;
  const label: Record<Way, string> = {
    ours: `ours, persistent monitor, journal on ${shm ? 'tmpfs' : 'disk'} (migrateInstance)`,
    'ours-diskjournal': 'ours, persistent monitor, journal on disk',
    'ours-nojournal': 'ours, persistent monitor, no journal',
    'ours-cold': 'ours, new KVMHypervisor, journaled (connect + migrateInstance)',
    ganeti3: 'Ganeti 3.x: a QMP session per command',
    ganeti2: 'Ganeti 2.x: one socat per HMP command',
  };
  printTable(
    ['set-up until `migrate` accepted', 'n', 'p50 ms', 'mean ms', 'p90 ms', 'ours/this'],
    ways.map((w) => [
      label[w],
      String(s[w].count),
      fmt(s[w].p50),
      fmt(s[w].mean),
      fmt(s[w].p90),
      fmt(s.ours.p50 / s[w].p50, '×'),
    ]),
  );
  const med = summarize(commands).p50;
  console.log(`\nmonitor commands per set-up (ours): ${med}`);
  const vsG3 = s.ours.p50 / s.ganeti3.p50;
  console.log(`ours / Ganeti 3.x (p50): ${fmt(vsG3, '×')}   target ≤ 0.5×`);
  const journalMs = s.ours.p50 - s['ours-nojournal'].p50;
  const diskJournalMs = s['ours-diskjournal'].p50 - s['ours-nojournal'].p50;
  console.log(
    `the journal's cost per set-up (p50 journaled − p50 without: one atomic write before the first change, its fsync after): ${fmt(journalMs)} ms on ${shm ? 'tmpfs' : 'disk'}, ${fmt(diskJournalMs)} ms on disk`,
  );
  console.log(
    `ours, journal on disk / Ganeti 3.x (p50): ${fmt(s['ours-diskjournal'].p50 / s.ganeti3.p50, '×')}; without the journal: ${fmt(s['ours-nojournal'].p50 / s.ganeti3.p50, '×')}`,
  );
  if (socat) console.log(`Ganeti 2.x / ours (p50): ${fmt(s.ganeti2.p50 / s.ours.p50, '×')}   target ≥ 10×`);
  const path = writeResults(QUICK ? 'setup-quick' : 'setup', {
    rounds: ROUNDS,
    caps: CAPS,
    accel: vm.accel,
    commandsPerSetup: med,
    summaries: s,
    journalMs,
    diskJournalMs,
    journalOn: shm ? 'tmpfs' : 'disk',
    ratios: { oursOverGaneti3: vsG3, ganeti2OverOurs: socat ? s.ganeti2.p50 / s.ours.p50 : null },
  });
  console.log(`results: ${path}`);
}

runMain(main);
