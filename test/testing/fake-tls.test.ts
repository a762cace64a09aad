/**
 * The fake QEMU answers every command a TLS migration sends, per version and protocol
 * (issue 22, item 4): `object-add`/`object_add` of the credentials and the authorization
 * (loaded from the directory, as QEMU does), `object-del`/`object_del`, and the `tls-*`
 * parameters. A whole TLS migration runs through runMigration against the linked fake
 * pair with nothing stubbed, and leaves no object behind on either end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KVMHypervisor, runMigration } from '../../src/internal.js';
import { parseObjectAddLine } from '../../src/testing/fake-qemu/objects.js';
import { createFakeMigrationPair, MockMonitor } from '../../src/testing/index.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-faketls-'));
let pki: TestPki;
beforeAll(async () => {
  pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['src', 'dst'] });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const instance = { name: 'vm1', hvparams: { migration_bandwidth: 64, migration_downtime: 100 } };

const cases = [
  { protocol: 'qmp', version: '5.2.0' },
  { protocol: 'hmp', version: '5.2.0' },
  { protocol: 'qmp', version: '7.2.22' },
  { protocol: 'hmp', version: '7.2.22' },
  { protocol: 'qmp', version: '10.0.8' },
  { protocol: 'hmp', version: '10.0.8' },
  { protocol: 'qmp', version: '11.1.3' },
] as const;

describe.each(cases)(
  'a TLS migration against the fake pair ($protocol, QEMU $version)',
  ({ protocol, version }) => {
    it('completes with credentials and authorization created and removed on both ends, nothing stubbed', async () => {
      const node = (n: 'src' | 'dst') => pki.nodes[n]!;
      const pair = createFakeMigrationPair({
        protocol,
        version,
        deferIncoming: true,
        advancePerQueryMs: 1000,
      });
      const src = new KVMHypervisor({
        monitor: pair.sourceMonitor,
        migrationGuard: false,
        tls: { dir: node('src').dir },
      });
      const dst = new KVMHypervisor({
        monitor: pair.destinationMonitor,
        migrationGuard: false,
        tls: { dir: node('dst').dir, allowedPeers: [node('src').clientDn] },
      });
      const seenDst: string[][] = [];
      try {
        const r = await runMigration({
          source: { hypervisor: src, instance },
          destination: { hypervisor: dst, instance },
          target: 'localhost',
          listen: '0.0.0.0',
          pollIntervalMs: 1,
          onProgress: () => seenDst.push(pair.destination.qemu.objects.ids()),
        });
        expect(r.status).toBe('completed');
        // While it ran, the destination held both objects; the source its credentials.
        expect(
          seenDst.some((ids) => ids.includes('kvmhv-migration-tls') && ids.includes('kvmhv-migration-authz')),
        ).toBe(true);
        expect(pair.source.qemu.objects.ids()).toEqual([]);
        expect(pair.destination.qemu.objects.ids()).toEqual([]);
      } finally {
        await Promise.all([src.close(), dst.close()]);
      }
    });
  },
);

describe('fake QEMU objects', () => {
  it('loads credentials as QEMU does: a missing file is refused with its path', async () => {
    const m = new MockMonitor({ version: '7.2.0' });
    const err = await m
      .execute('object-add', {
        'qom-type': 'tls-creds-x509',
        id: 'c1',
        dir,
        endpoint: 'server',
      })
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/Unable to access credentials .*ca-cert\.pem: No such file or directory/);
    const dstDir = pki.nodes.dst!.dir;
    await m.execute('object-add', {
      'qom-type': 'tls-creds-x509',
      id: 'c1',
      dir: dstDir,
      endpoint: 'server',
    });
    const dup = await m
      .execute('object-add', {
        'qom-type': 'tls-creds-x509',
        id: 'c1',
        dir: dstDir,
        endpoint: 'server',
      })
      .catch((e: unknown) => e);
    expect(String(dup)).toMatch(/attempt to add duplicate property 'c1'/);
    await m.execute('object-del', { id: 'c1' });
    expect(String(await m.execute('object-del', { id: 'c1' }).catch((e: unknown) => e))).toMatch(
      /object 'c1' not found/,
    );
  });

  it('takes `props` up to 5.2 and the flat form from 5.2, as QEMU does', async () => {
    const flat = { 'qom-type': 'authz-list', id: 'a', policy: 'deny' };
    const nested = { 'qom-type': 'authz-list', id: 'b', props: { policy: 'deny' } };
    const old = new MockMonitor({ version: '5.1.0' });
    expect(String(await old.execute('object-add', flat).catch((e: unknown) => e))).toMatch(/unexpected/);
    await old.execute('object-add', nested);
    const v11 = new MockMonitor({ version: '11.1.0' });
    expect(String(await v11.execute('object-add', nested).catch((e: unknown) => e))).toMatch(
      /Parameter 'props' is unexpected/,
    );
    await v11.execute('object-add', flat);
    const v3 = new MockMonitor({ version: '3.1.0' });
    expect(String(await v3.execute('object-add', nested).catch((e: unknown) => e))).toMatch(
      /invalid object type: authz-list/,
    );
  });

  it('parses HMP object_add lines with doubled commas and rule lists', () => {
    expect(
      parseObjectAddLine(
        'authz-list,id=z,policy=deny,rules.0.match=O=Example,,CN=node1,rules.0.policy=allow',
      ),
    ).toEqual({
      qomType: 'authz-list',
      id: 'z',
      props: { policy: 'deny', rules: [{ match: 'O=Example,CN=node1', policy: 'allow' }] },
    });
  });
});
