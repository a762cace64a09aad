/** Userspace (rbd, gluster) disk URIs: parsed strictly into -blockdev options; refusals name the field. */
import { describe, expect, it } from 'vitest';
import { InstanceSpecError } from '../../src/errors.js';
import { checkInstanceSpec } from '../../src/instance/check.js';
import { dottedOptions, parseUserspaceUri, UserspaceUriError } from '../../src/instance/userspace-disk.js';
import { baseSpec } from './specs.js';

describe('parseUserspaceUri', () => {
  it("reads Ganeti's URIs (rbd:pool/image, gluster://host:port/volume/path)", () => {
    expect(parseUserspaceUri('rbd:ganeti/0c1d.rbd.disk0')).toEqual({
      driver: 'rbd',
      pool: 'ganeti',
      image: '0c1d.rbd.disk0',
    });
    expect(parseUserspaceUri('gluster://10.0.0.5:24007/gv0/ganeti/web1.disk0')).toEqual({
      driver: 'gluster',
      volume: 'gv0',
      path: 'ganeti/web1.disk0',
      server: [{ type: 'inet', host: '10.0.0.5', port: '24007' }],
    });
  });

  it("reads QEMU's legacy rbd options, with \\: inside a value", () => {
    expect(
      parseUserspaceUri(
        'rbd:p/ns/img@snap:id=admin:conf=/etc/ceph/c.conf:mon_host=10.0.0.1\\:3300;[fd00\\:\\:1];m3',
      ),
    ).toEqual({
      driver: 'rbd',
      pool: 'p',
      namespace: 'ns',
      image: 'img',
      snapshot: 'snap',
      user: 'admin',
      conf: '/etc/ceph/c.conf',
      server: [
        { host: '10.0.0.1', port: '3300' },
        { host: 'fd00::1', port: '6789' },
        { host: 'm3', port: '6789' },
      ],
    });
  });

  it('gluster: default port, IPv6 host, unix socket', () => {
    expect(parseUserspaceUri('gluster://g1/vol/a/b.img').server).toEqual([
      { type: 'inet', host: 'g1', port: '24007' },
    ]);
    expect(parseUserspaceUri('gluster+tcp://[fd00::5]:24008/vol/img').server).toEqual([
      { type: 'inet', host: 'fd00::5', port: '24008' },
    ]);
    expect(parseUserspaceUri('gluster+unix:///vol/img?socket=/run/gd.sock')).toEqual({
      driver: 'gluster',
      volume: 'vol',
      path: 'img',
      server: [{ type: 'unix', path: '/run/gd.sock' }],
    });
  });

  it.each([
    ['nbd://host/export', /is not an rbd: or gluster:\/\/ URI/],
    ['rbd:onlypool', /expected rbd:pool\/image/],
    ['rbd:p/i@', /empty snapshot/],
    ['rbd:p/i:key=secret', /option 'key' is not supported/],
    ['rbd:p/i:id=a:id=b', /'id' is given twice/],
    ['rbd:p/i:id=', /'id' has no value/],
    ['rbd:p/i:mon_host=a\\b', /escapes only/],
    ['rbd:p/i:mon_host=h\\:99999', /is not host\[:port\]/],
    ['rbd:p/i,x', /comma/],
    ['gluster://h/vol', /expected gluster:\/\/host/],
    ['gluster+rdma://h/vol/img', /transport 'rdma'/],
    ['gluster://u:p@h/vol/img', /user, password/],
    ['gluster://h/vol/img?socket=/s', /for gluster\+unix only/],
    ['gluster+unix:///vol/img', /needs \?socket=/],
    ['gluster://h/vol/img?debug=9', /query parameter 'debug'/],
  ])('refuses %s', (uri, why) => {
    expect(() => parseUserspaceUri(uri)).toThrow(UserspaceUriError);
    expect(() => parseUserspaceUri(uri)).toThrow(why);
  });

  it('flattens structured options the way -blockdev reads them', () => {
    expect(
      dottedOptions('file', { driver: 'gluster', server: [{ type: 'inet', host: 'h', port: '1' }] }),
    ).toEqual([
      ['file.driver', 'gluster'],
      ['file.server.0.type', 'inet'],
      ['file.server.0.host', 'h'],
      ['file.server.0.port', '1'],
    ]);
  });
});

describe('instance spec checks of userspace disks', () => {
  const problems = (disks: unknown[]) => {
    try {
      checkInstanceSpec({ ...baseSpec(), disks });
      return [];
    } catch (e) {
      if (!(e instanceof InstanceSpecError)) throw e;
      return e.problems;
    }
  };
  const uuid = (n: number) => `932df160-7a22-4067-8d2a-5c1f0b2f1e1${n}`;

  it('accepts one and names the field of every problem at once', () => {
    expect(problems([{ uuid: uuid(1), kind: 'userspace', uri: 'rbd:p/i' }])).toEqual([]);
    expect(
      problems([
        { uuid: uuid(1), kind: 'userspace', uri: 'rbd:p' },
        { uuid: uuid(2), kind: 'userspace', uri: 'gluster://h/v/i' },
        { uuid: uuid(3), kind: 'userspace', uri: 'gluster://h/v/i' },
      ]),
    ).toEqual([
      { field: 'disks[0].uri', message: "'rbd:p': expected rbd:pool/image or rbd:pool/namespace/image" },
      { field: 'disks[2].uri', message: "'gluster://h/v/i' is also the URI of disks[1]" },
    ]);
  });

  it('a kind and its fields must agree; the message is about the branch the kind picks', () => {
    expect(problems([{ uuid: uuid(1), kind: 'userspace', path: '/srv/a.img' }])).toEqual([
      { field: 'disks[0]', message: 'must have required properties uri' },
      { field: 'disks[0]', message: "unknown field(s) 'path'" },
    ]);
    expect(problems([{ uuid: uuid(1), kind: 'file', uri: 'rbd:p/i' }])).toEqual([
      { field: 'disks[0]', message: 'must have required properties path' },
      { field: 'disks[0]', message: "unknown field(s) 'uri'" },
    ]);
    expect(problems([{ uuid: uuid(1), kind: 'nfs', path: '/a' }])).toEqual([
      { field: 'disks[0].kind', message: "must be 'file', 'block' or 'userspace'" },
    ]);
  });
});
