/**
 * The dirty-memory guest under real QEMU (TCG): it boots with `-kernel` and `-nodefaults`,
 * writes pages at the requested rate (read back from its status block), and gives a live
 * migration real work: QEMU's own dirty-page accounting sees it, and a fast guest keeps a
 * bandwidth-limited migration from converging where an idle VM or a slow guest completes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import {
  GUEST_REGION_START,
  GUEST_STATUS_ADDRESS,
  type GuestImageOptions,
  type GuestStatus,
  parseGuestStatus,
  parseXpWords,
  writeGuestImage,
} from '../../src/testing/guest/index.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import {
  accelerators,
  describeEachRelease,
  type ReleaseCase,
  releaseCases,
  vmOptions,
} from '../support/real-qemu.js';
import { RawQmp } from './raw-qmp.js';

const MiB = 1048576;
const dir = mkdtempSync(join(tmpdir(), 'kvmhv-guest-'));
const vms: QemuVm[] = [];
const clients: RawQmp[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The release and accelerator the running suite is about (set by each suite's beforeAll). */
let rel: ReleaseCase;
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(vms.splice(0).map((vm) => vm.kill()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Started {
  vm: QemuVm;
  qmp: RawQmp;
}

async function start(name: string, memoryMiB: number, guest?: GuestImageOptions, incoming?: string) {
  let kernel: string | undefined;
  if (guest) {
    kernel = join(dir, `${name}.img`);
    writeGuestImage(kernel, guest);
  }
  const vm = await QemuVm.start({
    ...vmOptions(rel, rel.accel),
    name,
    dir,
    memoryMiB,
    hmp: false,
    kernel,
    incoming,
  });
  vms.push(vm);
  const qmp = await RawQmp.connect(vm.qmpPath);
  clients.push(qmp);
  return { vm, qmp } satisfies Started;
}

async function guestStatus(qmp: RawQmp): Promise<GuestStatus> {
  return parseGuestStatus(parseXpWords(await qmp.hmp(`xp /4wx 0x${GUEST_STATUS_ADDRESS.toString(16)}`)));
}

// Generous: under nested KVM (CI's machines) SeaBIOS alone takes 8–12 s to boot a guest.
async function waitFor<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 45_000) {
  const deadline = Date.now() + timeoutMs;
  let last: T = await fn();
  while (!ok(last)) {
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
    await sleep(100);
    last = await fn();
  }
  return last;
}

const booted = (qmp: RawQmp) =>
  waitFor(
    'the guest to run',
    () => guestStatus(qmp),
    (s) => s.running && s.pagesWritten > 0,
  );

/** Measures the guest's own write rate over `ms`, in MiB/s. */
async function measureRate(qmp: RawQmp, ms: number): Promise<number> {
  const a = await guestStatus(qmp);
  const t0 = performance.now();
  await sleep(ms);
  const b = await guestStatus(qmp);
  const seconds = (performance.now() - t0) / 1000;
  return (((b.pagesWritten - a.pagesWritten) >>> 0) * 4096) / MiB / seconds;
}

interface MigrateInfo {
  status?: string;
  ram?: { 'dirty-pages-rate': number; 'page-size': number; remaining: number; transferred: number };
}

async function migrateTo(src: Started, port: number, maxBandwidth: number) {
  await src.qmp.execute('migrate-set-parameters', { 'max-bandwidth': maxBandwidth });
  await src.qmp.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
}

describeEachRelease('dirty-memory guest', releaseCases(accelerators()), (c) => {
  beforeAll(() => {
    rel = c;
  });

  it('boots with -kernel and -nodefaults and writes pages at the requested rate', async () => {
    const [slow, fast] = await Promise.all([
      start('slow', 48, { dirtyMiB: 32, rateMiBps: 1 }),
      start('fast', 48, { dirtyMiB: 32, rateMiBps: 16 }),
    ]);
    const [s1, s2] = await Promise.all([booted(slow.qmp), booted(fast.qmp)]);
    expect(s1.effectiveEnd).toBe(GUEST_REGION_START + 32 * MiB);
    expect(s2.effectiveEnd).toBe(GUEST_REGION_START + 32 * MiB);
    const [r1, r16] = await Promise.all([measureRate(slow.qmp, 2000), measureRate(fast.qmp, 2000)]);
    // Never faster than asked (plus measuring noise). Slower where the vCPU thread is not
    // scheduled: the guest drops credit older than 2 ms instead of bursting, so on a busy
    // host a 1 MiB/s guest was seen at 0.29–0.42 MiB/s under TCG (every release) and at
    // 0.53 MiB/s under nested KVM (11.1), and a 16 MiB/s guest at 3.0 MiB/s beside two CPU
    // burners (5.2, TCG). So only: both run, neither beats its pace, the fast one is faster.
    expect(r1).toBeGreaterThan(0.05);
    expect(r1).toBeLessThan(1.5);
    expect(r16).toBeGreaterThan(1);
    expect(r16).toBeLessThan(24);
    expect(r16 / r1).toBeGreaterThan(2);
    // The pages really hold the counter: the first word of the region's first page is non-zero.
    const words = parseXpWords(await fast.qmp.hmp(`xp /1wx 0x${GUEST_REGION_START.toString(16)}`));
    expect(words[0]).toBeGreaterThan(0);
  });

  it('clamps the region to the RAM it has and runs unpaced with rate 0', async () => {
    const small = await start('small', 16, { dirtyMiB: 64, rateMiBps: 0 });
    const s = await booted(small.qmp);
    // mem_upper from the Multiboot info: the RAM above 1 MiB less what the firmware keeps.
    expect(s.effectiveEnd).toBeLessThanOrEqual(16 * MiB);
    expect(s.effectiveEnd).toBeGreaterThan(15 * MiB);
    const rate = await measureRate(small.qmp, 500);
    expect(rate).toBeGreaterThan(64);
    const later = await guestStatus(small.qmp);
    expect(later.sweeps).toBeGreaterThan(0);
    expect((await small.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
  });

  it('an idle VM and a 1 MiB/s guest converge under a 4 MiB/s migration limit', async () => {
    for (const guest of [undefined, { dirtyMiB: 4, rateMiBps: 1 }]) {
      const port = await freePort();
      const name = guest ? 'slowsrc' : 'idlesrc';
      const dst = await start(`${name}-dst`, 32, undefined, `tcp:127.0.0.1:${port}`);
      const src = await start(name, 32, guest);
      if (guest) await booted(src.qmp);
      await migrateTo(src, port, 4 * MiB);
      const done = await waitFor(
        `${name} migration to complete`,
        () => src.qmp.execute<MigrateInfo>('query-migrate'),
        (m) => m.status === 'completed' || m.status === 'failed',
      );
      expect(done.status).toBe('completed');
      if (!guest) expect(done.ram?.['dirty-pages-rate']).toBe(0);
      expect((await dst.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
      if (guest) {
        // The guest carries on where it left off, on the destination.
        const s = await guestStatus(dst.qmp);
        expect(s.running).toBe(true);
        await waitFor(
          'the guest to write on the destination',
          () => guestStatus(dst.qmp),
          (t) => (t.pagesWritten - s.pagesWritten) >>> 0 > 0,
        );
      }
    }
  });

  it('a 16 MiB/s guest keeps a 4 MiB/s migration busy: QEMU reports its dirty-pages-rate', async () => {
    const port = await freePort();
    await start('busy-dst', 32, undefined, `tcp:127.0.0.1:${port}`);
    const src = await start('busy', 32, { dirtyMiB: 4, rateMiBps: 16 });
    // Dirty the whole region once first: a just-booted guest has little to chase.
    await waitFor(
      'a first sweep of the region',
      () => guestStatus(src.qmp),
      (s) => s.running && s.sweeps > 0,
    );
    await migrateTo(src, port, 4 * MiB);
    const seen = await waitFor(
      'a non-zero dirty-pages-rate',
      () => src.qmp.execute<MigrateInfo>('query-migrate'),
      (m) => (m.ram?.['dirty-pages-rate'] ?? 0) > 0 || !['setup', 'active'].includes(m.status ?? ''),
    );
    expect(seen.status).toBe('active');
    const ram = seen.ram!;
    // The whole 4 MiB region is dirty again by every pass (one pass ≈ 1 s at 4 MiB/s).
    expect((ram['dirty-pages-rate'] * ram['page-size']) / MiB).toBeGreaterThan(1);
    expect(ram.remaining).toBeGreaterThan(0);
    await sleep(1000);
    expect((await src.qmp.execute<MigrateInfo>('query-migrate')).status).toBe('active');
    await src.qmp.execute('migrate_cancel');
    await waitFor(
      'the cancellation',
      () => src.qmp.execute<MigrateInfo>('query-migrate'),
      (m) => m.status === 'cancelled',
    );
    expect((await src.qmp.execute<{ status: string }>('query-status')).status).toBe('running');
  });
});
