/**
 * `kvm-hv resume` on real QEMU: after a completed migration the source is postmigrate and
 * must not be resumed without the operator override; `--force-resume` resumes it with a
 * warning; after a cancelled migration a plain `resume` is enough.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import { ensureBuilt, run } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-resume-'));
const vms: QemuVm[] = [];
const monitors: QmpMonitor[] = [];

beforeAll(() => ensureBuilt(), 120_000);
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.close().catch(() => {});
  await Promise.all(vms.splice(0).map((vm) => vm.kill()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const status = async (m: QmpMonitor) => ((await m.execute('query-status')) as { status: string }).status;

async function migratedPair() {
  const port = await freePort();
  const src = await QemuVm.start({ name: `rs${port}`, dir, qmpSockets: 2 });
  const dst = await QemuVm.start({
    name: `rd${port}`,
    dir,
    qmpSockets: 2,
    incoming: `tcp:127.0.0.1:${port}`,
  });
  vms.push(src, dst);
  const srcObs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
  const dstObs = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
  monitors.push(srcObs, dstObs);
  const h = `kvm:migration_port=${port}`;
  const migrate = await run(['migrate', '--qmp', src.qmpPath, '--target', '127.0.0.1', '-H', h, '--json']);
  expect(migrate.code, migrate.stderr).toBe(0);
  return { src, dst, srcObs, dstObs, h };
}

describe('kvm-hv resume', () => {
  it('refuses to resume a source whose migration completed; --force-resume does it with a warning', async () => {
    const { src, srcObs, dstObs, h } = await migratedPair();
    expect(await status(srcObs)).toBe('postmigrate');
    const refused = await run(['resume', '--hmp', src.hmpPath!, '-H', h]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/not resuming the source: its run state is 'postmigrate'/);
    expect(refused.stderr).toMatch(/--force-resume/);
    expect(await status(srcObs)).toBe('postmigrate');
    // The destination is left alone by the source-side command; stop it as an operator would.
    await dstObs.execute('stop');
    const forced = await run(['resume', '--qmp', src.qmpPath, '-H', h, '--force-resume', '--json']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stderr).toMatch(/WARNING: --force-resume/);
    expect(JSON.parse(forced.stdout)).toMatchObject({ side: 'source', action: 'force-resumed' });
    expect(await status(srcObs)).toBe('running');
  });

  it('resumes a source stopped for a migration that never started, without the override', async () => {
    const port = await freePort();
    const src = await QemuVm.start({ name: `rn${port}`, dir, qmpSockets: 2 });
    vms.push(src);
    const obs = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
    monitors.push(obs);
    await obs.execute('stop');
    const r = await run(['resume', '--qmp', src.qmpPath, '-H', `kvm:migration_port=${port}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/resumed/);
    expect(await status(obs)).toBe('running');
  });
});
