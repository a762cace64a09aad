/**
 * The TLS command sets per dialect (pure), and what a QEMU that cannot do TLS is told.
 */
import { describe, expect, it } from 'vitest';
import { describeCommand } from '../../src/migration/dialect.js';
import {
  incomingCommand,
  isObjectMissing,
  tlsResetCommands,
  tlsSetupCommands,
  tlsUnsupported,
} from '../../src/migration/tls-commands.js';
import { parseVersion, type QemuVersion } from '../../src/qemu/version.js';

const v = (s: string): QemuVersion => parseVersion(s)!;
const lines = (cmds: ReturnType<typeof tlsSetupCommands>) => cmds.map(describeCommand);

describe('tlsSetupCommands', () => {
  it('QMP 7.2 destination: flat object-add of the credentials and the authz-list (each DN in both orders), then one parameter set', () => {
    const cmds = tlsSetupCommands('qmp', v('7.2.22'), {
      endpoint: 'server',
      dir: '/etc/kvmhv/tls',
      allowedPeers: ['CN=node1', 'O=Example,CN=node2'],
    });
    expect(cmds).toEqual([
      {
        kind: 'qmp',
        execute: 'object-add',
        arguments: {
          'qom-type': 'tls-creds-x509',
          id: 'kvmhv-migration-tls',
          endpoint: 'server',
          dir: '/etc/kvmhv/tls',
          'verify-peer': true,
        },
      },
      {
        kind: 'qmp',
        execute: 'object-add',
        arguments: {
          'qom-type': 'authz-list',
          id: 'kvmhv-migration-authz',
          policy: 'deny',
          rules: [
            { match: 'CN=node1', policy: 'allow', format: 'exact' },
            { match: 'O=Example,CN=node2', policy: 'allow', format: 'exact' },
            { match: 'CN=node2,O=Example', policy: 'allow', format: 'exact' },
          ],
        },
      },
      {
        kind: 'qmp',
        execute: 'migrate-set-parameters',
        arguments: {
          'tls-creds': 'kvmhv-migration-tls',
          'tls-hostname': '',
          'tls-authz': 'kvmhv-migration-authz',
        },
      },
    ]);
  });

  it('QMP 5.2 source: object-add with props (QEMU before 6.0), tls-hostname given, no authz', () => {
    expect(
      lines(tlsSetupCommands('qmp', v('5.2.0'), { endpoint: 'client', dir: '/d', hostname: 'node2' })),
    ).toEqual([
      'object-add {"qom-type":"tls-creds-x509","id":"kvmhv-migration-tls","props":{"endpoint":"client","dir":"/d","verify-peer":true}}',
      'migrate-set-parameters {"tls-creds":"kvmhv-migration-tls","tls-hostname":"node2","tls-authz":""}',
    ]);
  });

  it('a destination without peers still gets an allow-all authz-list (empty tls-authz breaks multifd on 7.2)', () => {
    expect(lines(tlsSetupCommands('hmp', v('7.2.22'), { endpoint: 'server', dir: '/d' }))).toEqual([
      'object_add tls-creds-x509,id=kvmhv-migration-tls,endpoint=server,dir=/d,verify-peer=on',
      'object_add authz-list,id=kvmhv-migration-authz,policy=allow',
      'migrate_set_parameter tls-creds kvmhv-migration-tls',
      'migrate_set_parameter tls-hostname ""',
      'migrate_set_parameter tls-authz kvmhv-migration-authz',
    ]);
  });

  it('HMP doubles commas, so a DN or a path cannot add options', () => {
    const hmp = lines(
      tlsSetupCommands('hmp', v('7.2.22'), {
        endpoint: 'server',
        dir: '/d,x',
        allowedPeers: ['O=Example,CN=node1,id=evil'],
      }),
    );
    expect(hmp[0]).toBe(
      'object_add tls-creds-x509,id=kvmhv-migration-tls,endpoint=server,dir=/d,,x,verify-peer=on',
    );
    expect(hmp[1]).toBe(
      'object_add authz-list,id=kvmhv-migration-authz,policy=deny,rules.0.match=O=Example,,CN=node1,,id=evil,rules.0.policy=allow,rules.0.format=exact,rules.1.match=id=evil,,CN=node1,,O=Example,rules.1.policy=allow,rules.1.format=exact',
    );
  });

  it('HMP 5.2 takes one peer as authz-simple (its object_add has no lists)', () => {
    expect(
      lines(
        tlsSetupCommands('hmp', v('5.2.0'), { endpoint: 'server', dir: '/d', allowedPeers: ['CN=a'] }),
      )[1],
    ).toBe('object_add authz-simple,id=kvmhv-migration-authz,identity=CN=a');
  });

  it('QEMU 3.1 has no tls-authz: neither the object nor the parameter', () => {
    expect(lines(tlsSetupCommands('qmp', v('3.1.0'), { endpoint: 'server', dir: '/d' }))).toEqual([
      'object-add {"qom-type":"tls-creds-x509","id":"kvmhv-migration-tls","props":{"endpoint":"server","dir":"/d","verify-peer":true}}',
      'migrate-set-parameters {"tls-creds":"kvmhv-migration-tls","tls-hostname":""}',
    ]);
  });
});

describe('tlsUnsupported', () => {
  it('names the QEMU version and what is missing', () => {
    expect(tlsUnsupported('qmp', v('2.6.0'), { endpoint: 'client' })).toBe(
      'QEMU 2.6.0 has no TLS migration (tls-creds: QEMU 2.7+)',
    );
    expect(tlsUnsupported('qmp', v('3.1.0'), { endpoint: 'server', allowedPeers: ['CN=a'] })).toBe(
      'QEMU 3.1.0 cannot restrict the peers of a migration (tls-authz: QEMU 4.0+)',
    );
    expect(tlsUnsupported('qmp', v('3.1.0'), { endpoint: 'client', allowedPeers: ['CN=a'] })).toBeUndefined();
    expect(
      tlsUnsupported('hmp', v('5.2.0'), { endpoint: 'server', allowedPeers: ['CN=a', 'CN=b'] }),
    ).toContain('authz-simple');
    expect(tlsUnsupported('hmp', v('11.1.3'), { endpoint: 'client' })).toContain(
      `QEMU 11.1.3's HMP cannot reset the tls-* migration parameters`,
    );
    expect(
      tlsUnsupported('qmp', v('11.1.3'), { endpoint: 'server', allowedPeers: ['CN=a', 'CN=b'] }),
    ).toBeUndefined();
  });
});

describe('reset and incoming', () => {
  it('resets every tls-* parameter this version has to empty', () => {
    expect(lines(tlsResetCommands('qmp', v('7.2.22')))).toEqual([
      'migrate-set-parameters {"tls-creds":"","tls-hostname":"","tls-authz":""}',
    ]);
    expect(lines(tlsResetCommands('hmp', v('3.0.0')))).toEqual([
      'migrate_set_parameter tls-creds ""',
      'migrate_set_parameter tls-hostname ""',
    ]);
  });

  it('migrate-incoming passes exit-on-error: false from 9.1 only (QMP)', () => {
    expect(describeCommand(incomingCommand('qmp', v('10.0.0'), 'tcp:[::]:8102'))).toBe(
      'migrate-incoming {"uri":"tcp:[::]:8102","exit-on-error":false}',
    );
    expect(describeCommand(incomingCommand('qmp', v('9.0.0'), 'tcp:0.0.0.0:8102'))).toBe(
      'migrate-incoming {"uri":"tcp:0.0.0.0:8102"}',
    );
    expect(describeCommand(incomingCommand('hmp', v('11.1.0'), 'tcp:0.0.0.0:1'))).toBe(
      'migrate_incoming tcp:0.0.0.0:1',
    );
  });

  it('knows QEMU’s "not found" answer to object-del', () => {
    expect(isObjectMissing("object 'kvmhv-migration-tls' not found")).toBe(true);
    expect(isObjectMissing("Error: object 'x' not found")).toBe(true);
    expect(isObjectMissing('object is in use')).toBe(false);
  });
});

describe('distinguished names (issue 22, item 2)', () => {
  it('dnOrders gives a multi-name DN in both orders, a single name once, escaped commas kept', async () => {
    const { dnOrders, dnParts } = await import('../../src/tls/dn.js');
    expect(dnOrders('O=Example,CN=node1')).toEqual(['O=Example,CN=node1', 'CN=node1,O=Example']);
    expect(dnOrders('CN=node1')).toEqual(['CN=node1']);
    expect(dnParts('O=Acme\\, Inc.,CN=n1')).toEqual(['O=Acme\\, Inc.', 'CN=n1']);
    expect(dnOrders('O=Acme\\, Inc.,CN=n1')).toEqual(['O=Acme\\, Inc.,CN=n1', 'CN=n1,O=Acme\\, Inc.']);
  });
});
