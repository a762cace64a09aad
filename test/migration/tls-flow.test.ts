/**
 * TLS through KVMHypervisor on mock monitors: the order of the commands on both ends,
 * removal on finalize and on a failed set-up, refusals that change nothing, the checks of
 * the certificate directory, and that no key material reaches a log or an error.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MigrationError, QmpError, TlsConfigError } from '../../src/errors.js';
import { KVMHypervisor } from '../../src/kvm.js';
import type { MockCommandInfo } from '../../src/testing/index.js';
import { MockMonitor } from '../../src/testing/index.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';
import { checkTlsFiles } from '../../src/tls/config.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-tlsflow-'));
let pki: TestPki;
let rogue: TestPki;
beforeAll(async () => {
  pki = await generateTestPki({ dir: join(dir, 'pki'), nodes: ['a', 'b'] });
  rogue = await generateTestPki({ dir: join(dir, 'rogue'), nodes: ['a'], caName: 'rogue' });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A mock QEMU that keeps the objects `object-add` creates and refuses unknown `object-del`s as QEMU does. */
function mockWithObjects(options: ConstructorParameters<typeof MockMonitor>[0]) {
  const m = new MockMonitor(options);
  const objects = new Set<string>();
  const idOf = (c: MockCommandInfo) =>
    c.protocol === 'qmp'
      ? String(c.arguments?.id)
      : (/(?:^|,)id=([^,]+)/.exec(c.line ?? '')?.[1] ?? c.line!.split(' ')[1]!);
  m.setReply(
    (c) => c.name === 'object-add' || c.name === 'object_add',
    (c: MockCommandInfo) => {
      objects.add(idOf(c));
      return c.protocol === 'qmp' ? {} : '';
    },
  );
  m.setReply(
    (c) => c.name === 'object-del' || c.name === 'object_del',
    (c: MockCommandInfo) => {
      const id = idOf(c);
      if (objects.delete(id)) return c.protocol === 'qmp' ? {} : '';
      if (c.protocol === 'qmp')
        throw new QmpError('GenericError', `object '${id}' not found`, { execute: 'object-del' });
      return `Error: object '${id}' not found\r\n`;
    },
  );
  m.setReply(
    (c) => c.name === 'migrate-incoming' || c.name === 'migrate_incoming',
    (c: MockCommandInfo) => (c.protocol === 'qmp' ? {} : ''),
  );
  return { m, objects };
}

/** Every command sent, as text (`execute {arguments}` for QMP, the line for HMP). */
const sentText = (m: MockMonitor) =>
  m.sent.map((c) =>
    typeof c === 'string' ? c : `${c.execute}${c.arguments ? ` ${JSON.stringify(c.arguments)}` : ''}`,
  );

describe('TLS on mock monitors', () => {
  it('destination (QMP 10.0): capabilities, credentials, authz, parameters, then migrate-incoming last; finalize removes them', async () => {
    const { m, objects } = mockWithObjects({ version: '10.0.0', runState: 'inmigrate' });
    const hv = new KVMHypervisor({
      monitor: () => m,
      migrationGuard: false,
      tls: { dir: pki.nodes.b!.dir, allowedPeers: [pki.nodes.a!.clientDn] },
    });
    const inst = { name: 'vm1', hvparams: { migration_port: 8102, migration_caps: 'multifd' } };
    await hv.acceptInstance(inst, { listen: '0.0.0.0' });
    const sent = sentText(m);
    const at = (s: string) => sent.findIndex((c) => c.startsWith(s));
    expect(at('migrate-set-capabilities')).toBeGreaterThan(-1);
    expect(at('migrate-set-capabilities')).toBeLessThan(at('object-add {"qom-type":"tls-creds-x509"'));
    expect(at('object-add {"qom-type":"tls-creds-x509"')).toBeLessThan(
      at('object-add {"qom-type":"authz-list"'),
    );
    expect(at('migrate-set-parameters {"tls-creds"')).toBeLessThan(at('migrate-incoming'));
    expect(sent.at(-1)).toBe('migrate-incoming {"uri":"tcp:0.0.0.0:8102","exit-on-error":false}');
    expect(m.parameters['tls-creds']).toBe('kvmhv-migration-tls');
    expect([...objects].sort()).toEqual(['kvmhv-migration-authz', 'kvmhv-migration-tls']);
    m.runState = 'running';
    await hv.finalizeMigrationDst(inst, true);
    expect(objects.size).toBe(0);
    expect(m.parameters['tls-creds']).toBe('');
    expect(m.parameters['tls-authz']).toBe('');
  });

  it('source (HMP 7.2): credentials before the capabilities and migrate; a failed migration still removes them', async () => {
    const { m, objects } = mockWithObjects({ version: '7.2.0', protocol: 'hmp' });
    const hv = new KVMHypervisor({
      monitor: () => m,
      migrationGuard: false,
      tls: { dir: pki.nodes.a!.dir, hostname: 'node-b.example' },
    });
    const inst = { name: 'vm1', hvparams: { migration_caps: 'xbzrle' } };
    await hv.migrateInstance(inst, '10.0.0.2');
    const sent = sentText(m);
    const objectAdd = sent.findIndex((c) => c.startsWith('object_add tls-creds-x509'));
    expect(sent[objectAdd]).toContain('endpoint=client');
    expect(sent).toContain('migrate_set_parameter tls-hostname node-b.example');
    expect(objectAdd).toBeLessThan(sent.findIndex((c) => c.startsWith('migrate_set_capability xbzrle on')));
    expect(sent.at(-1)).toBe('migrate -d tcp:10.0.0.2:8102');
    m.failMigration('Cannot write to TLS channel: Input/output error');
    const failed = await hv.waitForMigration(inst, { timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(String(failed)).toContain('Cannot write to TLS channel');
    // The source cannot know the destination's reason: the message says where to look.
    expect(String(failed)).toMatch(/the destination says why.*kvm-hv tls dn/);
    await hv.finalizeMigrationSource(inst, false);
    expect(objects.size).toBe(0);
    expect(m.parameters['tls-creds']).toBe('');
    expect(m.parameters['tls-hostname']).toBe('');
  });

  it('a set-up QEMU refuses is rolled back: objects gone, VM untouched, QEMU’s reason in the error', async () => {
    const { m, objects } = mockWithObjects({ version: '7.2.0' });
    m.failCommand('migrate-set-capabilities', {
      class: 'GenericError',
      desc: 'There is a migration process in progress',
    });
    const hv = new KVMHypervisor({ monitor: () => m, migrationGuard: false, tls: { dir: pki.nodes.a!.dir } });
    const e = await hv.migrateInstance({ name: 'vm1' }, '10.0.0.2').catch((x) => x);
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.message).toContain('There is a migration process in progress');
    expect(objects.size).toBe(0);
    expect(m.parameters['tls-creds']).toBe('');
    expect(sentText(m).some((c) => c.startsWith('migrate {'))).toBe(false);
  });

  it('migrate-incoming refused (QEMU already listens): the credentials are removed again', async () => {
    const { m, objects } = mockWithObjects({ version: '7.2.0', runState: 'inmigrate' });
    m.failCommand('migrate-incoming', {
      class: 'GenericError',
      desc: "'-incoming' was not specified on the command line",
    });
    const hv = new KVMHypervisor({ monitor: () => m, migrationGuard: false, tls: { dir: pki.nodes.b!.dir } });
    const e = await hv.acceptInstance({ name: 'vm1' }, { listen: '::' }).catch((x) => x);
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.message).toContain("'-incoming' was not specified");
    expect(e.message).toContain('-incoming defer');
    expect(objects.size).toBe(0);
    expect(m.parameters['tls-creds']).toBe('');
  });

  it('refusals that change nothing: no listen with TLS; HMP 11.1; zero-copy-send with TLS', async () => {
    const plain = new MockMonitor({ version: '7.2.0', runState: 'inmigrate' });
    const hv = new KVMHypervisor({
      monitor: () => plain,
      migrationGuard: false,
      tls: { dir: pki.nodes.b!.dir },
    });
    const e1 = await hv.acceptInstance({ name: 'vm1' }).catch((x) => x);
    expect(e1).toBeInstanceOf(MigrationError);
    expect(e1.changedVm).toBe(false);
    expect(e1.message).toContain('-incoming defer');
    expect(sentText(plain)).toEqual([]);

    const hmp = new MockMonitor({ version: '11.1.3', protocol: 'hmp' });
    const e2 = await new KVMHypervisor({
      monitor: () => hmp,
      migrationGuard: false,
      tls: { dir: pki.nodes.a!.dir },
    })
      .migrateInstance({ name: 'vm1' }, '10.0.0.2')
      .catch((x) => x);
    expect(e2.message).toContain("QEMU 11.1.3's HMP cannot reset");
    expect(e2.changedVm).toBe(false);
    expect(sentText(hmp).filter((c) => !c.startsWith('info '))).toEqual([]);

    const zc = new MockMonitor({ version: '8.2.0' });
    const e3 = await new KVMHypervisor({
      monitor: () => zc,
      migrationGuard: false,
      tls: { dir: pki.nodes.a!.dir },
    })
      .migrateInstance({ name: 'vm1', hvparams: { migration_caps: 'multifd:zero-copy-send' } }, '10.0.0.2')
      .catch((x) => x);
    expect(e3.message).toContain('zero-copy-send');
    expect(e3.changedVm).toBe(false);
    expect(sentText(zc).filter((c) => !c.startsWith('query-'))).toEqual([]);
  });

  it('required: false migrates in clear where the QEMU cannot do TLS, with a warning', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const hmp = new MockMonitor({ version: '11.1.3', protocol: 'hmp' });
    const hv = new KVMHypervisor({
      monitor: () => hmp,
      logger,
      migrationGuard: false,
      tls: { dir: pki.nodes.a!.dir, required: false },
    });
    await hv.migrateInstance({ name: 'vm1' }, '10.0.0.2');
    expect(sentText(hmp).some((c) => c.includes('tls'))).toBe(false);
    expect(lines.some((l) => String(l.msg).includes('migrating in clear'))).toBe(true);
  });

  it('no key material in any log line or error of a whole TLS migration', async () => {
    const keys = ['client-key.pem', 'server-key.pem'].map((f) =>
      readFileSync(join(pki.nodes.a!.dir, f), 'utf8'),
    );
    const secrets = keys.flatMap((k) => [
      k,
      ...k.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')),
    ]);
    let log = '';
    const logger = pino({ level: 'trace' }, { write: (s: string) => (log += s) });
    const { m } = mockWithObjects({ version: '7.2.0' });
    const hv = new KVMHypervisor({
      monitor: () => m,
      logger,
      migrationGuard: false,
      tls: { dir: pki.nodes.a!.dir },
    });
    await hv.migrateInstance({ name: 'vm1' }, '10.0.0.2');
    m.failMigration('TLS handshake failed');
    const e = await hv.waitForMigration({ name: 'vm1' }, { timeoutMs: 5000 }).catch((x) => x);
    await hv.finalizeMigrationSource({ name: 'vm1' }, false);
    expect(log).toContain('tls-creds-x509');
    for (const s of secrets) {
      expect(log).not.toContain(s);
      expect(String(e.message)).not.toContain(s);
    }
    expect(log).not.toContain('PRIVATE KEY');
  });
});

describe('checkTlsFiles', () => {
  it('refuses a private key group or others can read, naming the file, its mode and the fix; allowInsecureKeyPermissions warns instead', async () => {
    const d = join(dir, 'loose');
    rmSync(d, { recursive: true, force: true });
    await generateTestPki({ dir: d, nodes: ['z'] });
    const z = join(d, 'z');
    chmodSync(join(z, 'server-key.pem'), 0o644);
    const refused = await checkTlsFiles({ dir: z }, 'server').catch((e) => e);
    expect(refused).toBeInstanceOf(TlsConfigError);
    expect(refused.message).toContain(
      `${join(z, 'server-key.pem')} is readable or writable by group or others (mode 0644)`,
    );
    expect(refused.message).toContain(`chmod 600 ${join(z, 'server-key.pem')}`);
    // The client end's key is still 0600: that end passes.
    expect(await checkTlsFiles({ dir: z }, 'client')).toEqual([]);
    const warned = await checkTlsFiles({ dir: z, allowInsecureKeyPermissions: true }, 'server');
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain('(mode 0644)');
    chmodSync(join(z, 'server-key.pem'), 0o640);
    expect(String((await checkTlsFiles({ dir: z }, 'server').catch((e) => e)).message)).toContain(
      '(mode 0640)',
    );
  });

  it('certificateDn prints the subject in the order QEMU matches it', async () => {
    const d = join(dir, 'orgdn');
    rmSync(d, { recursive: true, force: true });
    const org = await generateTestPki({ dir: d, nodes: ['n1'], organization: 'Example' });
    const { certificateDn } = await import('../../src/tls/dn.js');
    expect(certificateDn(readFileSync(join(org.nodes.n1!.dir, 'client-cert.pem')))).toBe(
      'O=Example,CN=n1-client',
    );
    expect(certificateDn(readFileSync(join(pki.nodes.a!.dir, 'server-cert.pem')))).toBe('CN=a');
  });

  it('accepts a node directory made by generateTestPki, for both ends', async () => {
    await checkTlsFiles({ dir: pki.nodes.a!.dir }, 'server');
    await checkTlsFiles({ dir: pki.nodes.a!.dir }, 'client');
  });

  it('names every missing file, and a certificate signed by another CA', async () => {
    const d = join(dir, 'mixed');
    rmSync(d, { recursive: true, force: true });
    await generateTestPki({ dir: d, nodes: ['x'] });
    const x = join(d, 'x');
    unlinkSync(join(x, 'client-key.pem'));
    writeFileSync(join(x, 'server-cert.pem'), readFileSync(join(rogue.nodes.a!.dir, 'server-cert.pem')));
    const client = await checkTlsFiles({ dir: x }, 'client').catch((e) => e);
    expect(client).toBeInstanceOf(TlsConfigError);
    expect(client.message).toContain(`${join(x, 'client-key.pem')} is missing`);
    const server = await checkTlsFiles({ dir: x }, 'server').catch((e) => e);
    expect(server.message).toContain(
      `${join(x, 'server-cert.pem')} is not signed by the CA in ${join(x, 'ca-cert.pem')}`,
    );
  });

  it('reports an expired certificate and a file that is not PEM, without quoting keys', async () => {
    const d = join(dir, 'bad');
    rmSync(d, { recursive: true, force: true });
    await generateTestPki({ dir: d, nodes: ['y'] });
    const y = join(d, 'y');
    const later = new Date(Date.now() + 10 * 86_400_000);
    const expired = await checkTlsFiles({ dir: y }, 'server', later).catch((e) => e);
    expect(expired.message).toMatch(/server-cert\.pem expired on/);
    const key = readFileSync(join(y, 'client-key.pem'), 'utf8');
    writeFileSync(join(y, 'client-cert.pem'), key);
    const notPem = await checkTlsFiles({ dir: y }, 'client').catch((e) => e);
    expect(notPem.message).toContain(`${join(y, 'client-cert.pem')} is not a PEM certificate`);
    expect(notPem.message).not.toContain(key.split('\n')[1]);
  });

  it('bad options are refused at construction, naming the value', () => {
    expect(() => new KVMHypervisor({ migrationGuard: false, tls: { dir: 'relative/dir' } })).toThrow(
      'dir "relative/dir" is not an absolute path',
    );
    expect(
      () => new KVMHypervisor({ migrationGuard: false, tls: { dir: '/x', allowedPeers: ['node1'] } }),
    ).toThrow('allowedPeers entry "node1" is not a distinguished name');
    expect(() => new KVMHypervisor({ migrationGuard: false, tls: { dir: '/x', hostname: 'a b' } })).toThrow(
      'hostname "a b"',
    );
  });
});
