/**
 * What the bytes of the migration set-up cost QEMU: the set-up's seven commands sent by
 * hand on raw QMP sockets of one QEMU, in four wire forms, interleaved, p50 of each:
 *  - `id + newline`: each command with `"id":N` and a trailing `\n`, no `oob`;
 *  - `+ oob`: the same with `oob` negotiated;
 *  - `+ oob, no id`;
 *  - `+ oob, no id, no newline`: what `QmpMonitor` sends (QEMU's parser needs no newline).
 * Usage: npx tsx bench/setup-wire.ts [rounds]   (QEMU from $QEMU or the PATH, TCG)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QemuVm } from '../src/testing/qemu-vm.js';
import { startSink } from './lib/qemu-pair.js';
import { openRawQmp } from './lib/raw-qmp.js';
import { summarize } from './lib/report.js';

const rounds = Number(process.argv[2] ?? 40);
type Form = { name: string; oob: boolean; newline: boolean; id: boolean };
const FORMS: Form[] = [
  { name: 'id + newline', oob: false, newline: true, id: true },
  { name: '+ oob', oob: true, newline: true, id: true },
  { name: '+ oob, no id', oob: true, newline: true, id: false },
  { name: '+ oob, no id, no newline (QmpMonitor)', oob: true, newline: false, id: false },
];

/** A raw QMP session that sends pipelined batches in a given wire form. */
async function session(path: string, oob: boolean) {
  const qmp = await openRawQmp(path, () =>
    oob
      ? '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}\n'
      : '{"execute":"qmp_capabilities"}\n',
  );
  let id = 0;
  return {
    async batch(
      cmds: object[],
      form: Pick<Form, 'newline' | 'id'> = { newline: true, id: true },
    ): Promise<string[]> {
      const replies = cmds.map(() => qmp.next());
      qmp.write(
        cmds
          .map((c) => JSON.stringify(form.id ? { ...c, id: (id++ % 9) + 1 } : c) + (form.newline ? '\n' : ''))
          .join(''),
      );
      const all = await Promise.all(replies);
      for (const r of all) if (r.includes('"error"')) throw new Error(r);
      return all;
    },
    close: qmp.close,
  };
}

const sink = await startSink();
const port = sink.port;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-setup-wire-'));
const vm = await QemuVm.start({ name: 'wire', dir, memoryMiB: 64, hmp: false, accel: 'tcg', qmpSockets: 2 });
const plain = await session(vm.qmpPaths[0]!, false);
const withOob = await session(vm.qmpPaths[1]!, true);
// 'events' on, as the library leaves it; the parameters QEMU started with, put back after each round.
await plain.batch([
  {
    execute: 'migrate-set-capabilities',
    arguments: { capabilities: [{ capability: 'events', state: true }] },
  },
]);
const initial = { 'max-bandwidth': 134217728, 'downtime-limit': 300 };
const samples = new Map<string, number[]>(FORMS.map((f) => [f.name, []]));
try {
  for (let r = 0; r < rounds; r++) {
    for (const form of FORMS) {
      const s = form.oob ? withOob : plain;
      const t = performance.now();
      await s.batch(
        ['query-status', 'query-migrate', 'query-migrate-capabilities', 'query-migrate-parameters'].map(
          (execute) => ({ execute }),
        ),
        form,
      );
      await s.batch(
        [
          {
            execute: 'migrate-set-parameters',
            arguments: { 'max-bandwidth': 1048576, 'downtime-limit': 30 },
          },
          {
            execute: 'migrate-set-capabilities',
            arguments: { capabilities: [{ capability: 'auto-converge', state: true }] },
          },
        ],
        form,
      );
      await s.batch([{ execute: 'migrate', arguments: { uri: `tcp:127.0.0.1:${port}` } }], form);
      samples.get(form.name)!.push(performance.now() - t);
      await s.batch([{ execute: 'migrate_cancel' }]);
      for (let i = 0; i < 400; i++) {
        const [status] = await s.batch([{ execute: 'query-migrate' }]);
        if (status?.includes('"cancelled"')) break;
        await new Promise((res) => setTimeout(res, 5));
      }
      await s.batch([
        {
          execute: 'migrate-set-capabilities',
          arguments: { capabilities: [{ capability: 'auto-converge', state: false }] },
        },
        { execute: 'migrate-set-parameters', arguments: initial },
      ]);
    }
  }
  console.log(`rounds: ${rounds} (QEMU pid ${vm.pid}, ${vm.accel})`);
  for (const f of FORMS)
    console.log(`${f.name.padEnd(40)} p50 ${summarize(samples.get(f.name)!).p50.toFixed(2)} ms`);
} finally {
  plain.close();
  withOob.close();
  await vm.kill();
  await sink.close();
  rmSync(dir, { recursive: true, force: true });
}
