/**
 * `kvm-hv` over TLS, as a user runs it: `accept --listen --tls-dir --tls-peer --wait` on a
 * destination started with `-incoming defer`, `migrate --tls-dir` on the source, and
 * `demo --tls`; plus the usage errors of the TLS options. One QEMU release (the host's,
 * else the first of the matrix): the library's TLS tests cover the matrix.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { QmpMonitor } from '../../src/monitor/qmp.js';
import { writeGuestImage } from '../../src/testing/guest/index.js';
import { freePort, QemuVm } from '../../src/testing/qemu-vm.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';
import { qemuReleases } from '../support/qemu-releases.js';
import { ensureBuilt, run, start } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-cli-tls-'));
const release = qemuReleases().find((r) => r.suite === 'host') ?? qemuReleases()[0];
const vms: QemuVm[] = [];
const monitors: QmpMonitor[] = [];
let pki: TestPki;

beforeAll(async () => {
  await ensureBuilt();
  pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['src', 'dst'] });
}, 120_000);
afterEach(async () => {
  for (const m of monitors.splice(0)) await m.close().catch(() => {});
  await Promise.all(vms.splice(0).map((vm) => vm.kill()));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('kvm-hv tls dn', () => {
  it("prints each certificate's DN as --tls-peer takes it; a file that is not a certificate is a usage error", async () => {
    const org = await generateTestPki({ dir: join(dir, 'org'), nodes: ['n1'], organization: 'Example' });
    const r = await run([
      'tls',
      'dn',
      join(org.nodes.n1!.dir, 'client-cert.pem'),
      join(pki.nodes.src!.dir, 'server-cert.pem'),
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual(['O=Example,CN=n1-client', 'CN=src']);
    const bad = await run(['tls', 'dn', join(org.nodes.n1!.dir, 'client-key.pem')]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/client-key\.pem is not a PEM certificate/);
    expect(bad.stderr).not.toMatch(/PRIVATE KEY/);
  });
});

describe('kvm-hv TLS options', () => {
  it('--tls-dir on accept needs --listen; --tls-peer needs --tls-dir (exit 2, nothing opened)', async () => {
    const a = await run(['accept', '--qmp', '/nonexistent.qmp', '--tls-dir', '/etc/x']);
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('--tls-dir needs --listen');
    const b = await run(['accept', '--qmp', '/nonexistent.qmp', '--tls-peer', 'CN=a']);
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('--tls-peer, --tls-hostname and --tls-allow-insecure-key need --tls-dir');
  });

  it('a relative --tls-dir is refused naming the value before the monitor is opened (exit 2)', async () => {
    const r = await run(['migrate', '--qmp', '/nonexistent.qmp', '--target', 'h', '--tls-dir', 'certs']);
    expect(r.stderr).toContain('dir "certs" is not an absolute path');
    expect(r.code).toBe(2);
  });
});

describe.skipIf(!release)(`kvm-hv over TLS on QEMU ${release?.version}`, () => {
  it('accept --listen --tls-dir --tls-peer --wait and migrate --tls-dir: completed, no TLS left on either end', async () => {
    const port = await freePort();
    const kernel = join(dir, 'guest.img');
    writeGuestImage(kernel, { dirtyMiB: 8, rateMiBps: 16 });
    const common = { binary: release!.binary, accel: 'tcg' as const, dir, memoryMiB: 48, qmpSockets: 2 };
    const dst = await QemuVm.start({ ...common, name: 'clitls-dst', incoming: 'defer' });
    vms.push(dst);
    const src = await QemuVm.start({ ...common, name: 'clitls', kernel });
    vms.push(src);
    const dstMon = await QmpMonitor.connect({ path: dst.qmpPaths[1]! });
    const srcMon = await QmpMonitor.connect({ path: src.qmpPaths[1]! });
    monitors.push(dstMon, srcMon);
    const H = ['-H', `kvm:migration_port=${port},migration_bandwidth=64`];
    const accept = start([
      'accept',
      '--qmp',
      dst.qmpPath,
      '--listen',
      '127.0.0.1',
      '--wait',
      '--timeout',
      '60',
      '--json',
      '--tls-dir',
      pki.nodes.dst!.dir,
      '--tls-peer',
      pki.nodes.src!.clientDn,
      ...H,
    ]);
    // Listening means the credentials are in place (the library sets them first).
    const deadline = Date.now() + 20_000;
    while (!(await dstMon.execute<{ 'socket-address'?: unknown }>('query-migrate'))['socket-address']) {
      if (accept.child.exitCode !== null || Date.now() > deadline)
        throw new Error(`accept: ${accept.stderr()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const migrated = await run([
      'migrate',
      '--qmp',
      src.qmpPath,
      '--target',
      '127.0.0.1',
      '--json',
      '--tls-dir',
      pki.nodes.src!.dir,
      ...H,
    ]);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(JSON.parse(migrated.stdout)).toMatchObject({ status: 'completed' });
    const accepted = await accept.done;
    expect(accepted.code, accepted.stderr).toBe(0);
    expect(JSON.parse(accepted.stdout)).toMatchObject({ received: true, status: 'running' });
    for (const m of [srcMon, dstMon]) {
      const p = await m.execute<Record<string, unknown>>('query-migrate-parameters');
      expect([p['tls-creds'], p['tls-hostname']]).toEqual(['', '']);
      const objects = await m.execute<{ name: string }[]>('qom-list', { path: '/objects' });
      expect(objects.filter((o) => o.name.startsWith('kvmhv-'))).toEqual([]);
    }
  });

  it('demo --tls migrates over TLS and leaves nothing behind', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'kvmhv-demo-tls-'));
    try {
      const r = await run(
        [
          'demo',
          '--tls',
          '--memory',
          '48',
          '--dirty',
          '8',
          '--rate',
          '16',
          '--bandwidth',
          '64',
          '--accel',
          'tcg',
          '--json',
        ],
        90_000,
        { TMPDIR: tmp, QEMU: release!.binary },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({
        status: 'completed',
        verified: true,
        settings: { tls: true },
      });
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});
