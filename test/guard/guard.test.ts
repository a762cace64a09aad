/**
 * The migration guard process on real sockets, without QEMU: a UNIX echo-ish server plays
 * QEMU's incoming listener, raw TCP and TLS clients play sources and strangers. Every guard
 * started is ended by pid in afterEach/afterAll, even when a test fails.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { guardFromCli } from '../../src/cli/tls.js';
import {
  endGuard,
  type GuardConfig,
  type GuardRecord,
  readGuardRecord,
  type StartedGuard,
  startGuard,
  writeGuardRecord,
} from '../../src/guard/guard.js';
import { guardEnabled } from '../../src/guard/keeper.js';
import { processAlive, waitForExit } from '../../src/instance/process.js';
import { generateTestPki, type TestPki } from '../../src/testing/test-pki.js';

let root: string;
let pki: TestPki;
let other: TestPki;
const started: StartedGuard[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'kvmhv-guard-'));
  pki = await generateTestPki({ dir: join(root, 'pki'), nodes: ['src', 'dst', 'rogue'] });
  other = await generateTestPki({ dir: join(root, 'other'), nodes: ['src'] });
});
afterEach(async () => {
  for (const g of started.splice(0)) {
    await endGuard({ ...g, formatVersion: 1, role: 'source', socket: join(root, 'none') });
  }
  for (const s of servers.splice(0)) s.close();
});
afterAll(() => {
  if (!process.env.KEEP) rmSync(root, { recursive: true, force: true });
});

const timings = { connectMs: 1000, handshakeMs: 400, lifetimeMs: 60_000, idleExitMs: 60_000, drainMs: 2000 };

/** A fake QEMU incoming listener on a UNIX socket: collects what each connection sends, answers 'ack:<n>'. */
async function fakeQemu(path: string): Promise<{ received: Buffer[][]; conns: () => number }> {
  const received: Buffer[][] = [];
  const server = createServer((s) => {
    const mine: Buffer[] = [];
    received.push(mine);
    s.on('data', (d: Buffer) => {
      mine.push(d);
      s.write(`ack:${d.length};`);
    });
    s.on('error', () => {});
  });
  servers.push(server);
  server.listen(path);
  await once(server, 'listening');
  return { received, conns: () => received.length };
}

async function guard(config: Partial<GuardConfig> & Pick<GuardConfig, 'role'>): Promise<StartedGuard> {
  const g = await startGuard({ ...timings, ...config } as GuardConfig, join(root, 'guard.log'));
  started.push(g);
  return g;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Resolves with everything a socket receives until it closes (bounded by `ms`). */
function drain(s: Socket, ms = 5000): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    let data = '';
    const t = setTimeout(() => resolve({ data, closed: false }), ms);
    s.on('data', (d: Buffer) => {
      data += d.toString();
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(t);
      resolve({ data, closed: true });
    });
  });
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(20);
  }
}

describe('destination guard, plain', () => {
  it('relays bytes both ways to QEMU and refuses an address not allowed', async () => {
    const q = await fakeQemu(join(root, 'q1.sock'));
    const g = await guard({
      role: 'destination',
      listenHost: '127.0.0.1',
      listenPort: 0,
      qemuSocket: join(root, 'q1.sock'),
      allowedAddresses: ['127.0.0.1'],
    });
    const stranger = createConnection({ host: '127.0.0.1', port: g.port, localAddress: '127.0.0.2' });
    const refused = await drain(stranger);
    expect(refused.closed).toBe(true);
    const c = createConnection({ host: '127.0.0.1', port: g.port });
    await once(c, 'connect');
    c.write('QEVM1234');
    const got = drain(c, 3000);
    await until(() => q.received.some((r) => Buffer.concat(r).toString() === 'QEVM1234'));
    c.end();
    expect((await got).data).toBe('ack:8;');
    expect(q.conns()).toBe(1); // the stranger never reached QEMU
  });

  it('exits once idle after a relay, and when told by SIGTERM', async () => {
    await fakeQemu(join(root, 'q2.sock'));
    const g = await guard({
      role: 'destination',
      listenHost: '127.0.0.1',
      listenPort: 0,
      qemuSocket: join(root, 'q2.sock'),
      idleExitMs: 300,
    });
    expect(processAlive(g)).toBe(true);
    const c = createConnection({ host: '127.0.0.1', port: g.port });
    await once(c, 'connect');
    c.end('x');
    expect(await waitForExit(g, 10_000)).toBe(true);
  });
});

describe('stopping', () => {
  it('a SIGTERM while bytes are in flight still delivers every byte, then the guard exits', async () => {
    const q = await fakeQemu(join(root, 'q8.sock'));
    const g = await guard({
      role: 'destination',
      listenHost: '127.0.0.1',
      listenPort: 0,
      qemuSocket: join(root, 'q8.sock'),
    });
    const c = createConnection({ host: '127.0.0.1', port: g.port });
    c.on('data', () => {});
    c.on('error', () => {});
    await once(c, 'connect');
    const total = 16 * 2 ** 20;
    await until(() => q.conns() === 1);
    c.write(Buffer.alloc(total, 0x42));
    process.kill(g.pid, 'SIGTERM');
    c.end();
    const received = () => q.received[0]!.reduce((n, b) => n + b.length, 0);
    await until(() => received() === total, 20_000);
    expect(await waitForExit(g, 10_000)).toBe(true);
  });
});

describe('destination guard, TLS', () => {
  const tlsDst = (
    qemuSocket: string,
    allowedDns?: string[],
  ): Partial<GuardConfig> & { role: 'destination' } => ({
    role: 'destination',
    listenHost: '127.0.0.1',
    listenPort: 0,
    qemuSocket,
    tls: { dir: pki.nodes.dst!.dir, ...(allowedDns ? { allowedDns } : {}) },
  });

  it('drops idle, slow-loris and garbage strangers within the handshake deadline, and relays the right source meanwhile', async () => {
    const q = await fakeQemu(join(root, 'q3.sock'));
    const dst = await guard(tlsDst(join(root, 'q3.sock'), [pki.nodes.src!.clientDn]));
    const idle = createConnection({ host: '127.0.0.1', port: dst.port });
    const loris = createConnection({ host: '127.0.0.1', port: dst.port });
    const garbage = createConnection({ host: '127.0.0.1', port: dst.port });
    const lorisTimer = setInterval(() => loris.write(Buffer.from([0x16])), 100);
    garbage.write(Buffer.alloc(4096, 0x41));
    const strangers = [idle, loris, garbage].map((s) => drain(s, 8000));
    // The real source, through a source guard, while the strangers hang on.
    const sock = join(root, 's3.sock');
    await guard({
      role: 'source',
      socket: sock,
      targetHost: '127.0.0.1',
      targetPort: dst.port,
      tls: { dir: pki.nodes.src!.dir, hostname: '127.0.0.1' },
    });
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    const c = createConnection(sock);
    c.write('QEVM-tls');
    const got = drain(c, 3000);
    await until(() => q.received.some((r) => Buffer.concat(r).toString() === 'QEVM-tls'));
    c.end();
    expect((await got).data).toBe('ack:8;');
    const results = await Promise.all(strangers);
    clearInterval(lorisTimer);
    expect(results.map((r) => r.closed)).toEqual([true, true, true]);
    expect(q.conns()).toBe(1);
  });

  it('refuses a client certificate from another CA and a DN not allowed; two channels of the right one both pass', async () => {
    const q = await fakeQemu(join(root, 'q4.sock'));
    const dst = await guard(tlsDst(join(root, 'q4.sock'), [pki.nodes.src!.clientDn]));
    for (const [i, dir] of [other.nodes.src!.dir, pki.nodes.rogue!.dir].entries()) {
      const sock = join(root, `s4-${i}.sock`);
      await guard({
        role: 'source',
        socket: sock,
        targetHost: '127.0.0.1',
        targetPort: dst.port,
        tls: { dir, hostname: '127.0.0.1' },
      });
      const c = createConnection(sock);
      c.write('QEVM');
      expect((await drain(c)).closed).toBe(true);
    }
    expect(q.conns()).toBe(0);
    const sock = join(root, 's4.sock');
    await guard({
      role: 'source',
      socket: sock,
      targetHost: '127.0.0.1',
      targetPort: dst.port,
      tls: { dir: pki.nodes.src!.dir, hostname: '127.0.0.1' },
    });
    const a = createConnection(sock);
    const b = createConnection(sock);
    a.write('main');
    b.write('multifd');
    await until(() => q.conns() === 2 && q.received.every((r) => r.length > 0));
    a.end();
    b.end();
    expect(q.received.map((r) => Buffer.concat(r).toString()).sort()).toEqual(['main', 'multifd']);
  });

  it('source guard refuses a server whose certificate does not carry the expected host name', async () => {
    const q = await fakeQemu(join(root, 'q5.sock'));
    const dst = await guard(tlsDst(join(root, 'q5.sock')));
    const sock = join(root, 's5.sock');
    await guard({
      role: 'source',
      socket: sock,
      targetHost: '127.0.0.1',
      targetPort: dst.port,
      tls: { dir: pki.nodes.src!.dir, hostname: 'elsewhere.example.org' },
    });
    const c = createConnection(sock);
    c.write('QEVM');
    expect((await drain(c)).closed).toBe(true);
    expect(q.received.every((r) => r.length === 0)).toBe(true);
  });
});

describe('source guard', () => {
  it('closes QEMU side when the destination accepts and stays silent (TLS), and when nobody listens', async () => {
    const held: Socket[] = [];
    const silent = createServer((s) => held.push(s));
    servers.push(silent);
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    const port = (silent.address() as { port: number }).port;
    const sock = join(root, 's6.sock');
    await guard({
      role: 'source',
      socket: sock,
      targetHost: '127.0.0.1',
      targetPort: port,
      tls: { dir: pki.nodes.src!.dir, hostname: '127.0.0.1' },
    });
    const c = createConnection(sock);
    c.write('QEVM');
    expect((await drain(c, 8000)).closed).toBe(true);
    for (const s of held) s.destroy();
    silent.close();
    await once(silent, 'close');
    const c2 = createConnection(sock);
    expect((await drain(c2, 8000)).closed).toBe(true);
  });

  it('exits by itself when QEMU never connects, and idle after a failed connection', async () => {
    const unused = await guard({
      role: 'source',
      socket: join(root, 's9.sock'),
      targetHost: '127.0.0.1',
      targetPort: 9,
      idleExitMs: 500,
    });
    expect(await waitForExit(unused, 10_000)).toBe(true);
    const failed = await guard({
      role: 'source',
      socket: join(root, 's10.sock'),
      targetHost: '127.0.0.1',
      targetPort: 9,
      idleExitMs: 1500,
    });
    const c = createConnection(join(root, 's10.sock'));
    expect((await drain(c)).closed).toBe(true); // nothing listens on port 9
    expect(await waitForExit(failed, 10_000)).toBe(true);
  });

  it('records and ends a guard from its record, removing socket and record', async () => {
    const sock = join(root, 's7.sock');
    const g = await guard({ role: 'source', socket: sock, targetHost: '127.0.0.1', targetPort: 9 });
    const rec: GuardRecord = { ...g, formatVersion: 1, role: 'source', socket: sock };
    writeGuardRecord(join(root, 'rec'), 'vm1', rec);
    const back = readGuardRecord(join(root, 'rec'), 'vm1', 'source');
    expect(back).toEqual(rec);
    await endGuard(back!, { dir: join(root, 'rec'), name: 'vm1' });
    expect(processAlive(g)).toBe(false);
    expect(readGuardRecord(join(root, 'rec'), 'vm1', 'source')).toBeUndefined();
    expect(() => statSync(sock)).toThrow();
  });

  it('refuses to start on a port already taken', async () => {
    const taken = createServer(() => {});
    servers.push(taken);
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const port = (taken.address() as { port: number }).port;
    await expect(
      startGuard(
        {
          ...timings,
          role: 'destination',
          listenHost: '127.0.0.1',
          listenPort: port,
          qemuSocket: '/nonexistent',
        },
        join(root, 'guard.log'),
      ),
    ).rejects.toThrow(/before it was ready/);
  });
});

describe('guard switches', () => {
  it('is on by default with tls only; false and true/objects override', () => {
    const tls = { dir: '/etc/kvm-hypervisor/tls' };
    expect(guardEnabled(undefined, undefined)).toBe(false);
    expect(guardEnabled(undefined, tls)).toBe(true);
    expect(guardEnabled(false, tls)).toBe(false);
    expect(guardEnabled(true, undefined)).toBe(true);
    expect(guardEnabled({ allowedAddresses: ['10.0.0.1'] }, undefined)).toBe(true);
  });

  it('kvm-hv flags: --no-migration-guard, --guard-allow, and their contradiction', () => {
    expect(guardFromCli({})).toBeUndefined();
    expect(guardFromCli({ migrationGuard: true })).toBeUndefined();
    expect(guardFromCli({ migrationGuard: false })).toBe(false);
    expect(guardFromCli({ migrationGuard: true, guardAllow: ['10.0.0.1'] })).toEqual({
      allowedAddresses: ['10.0.0.1'],
    });
    expect(() => guardFromCli({ migrationGuard: false, guardAllow: ['10.0.0.1'] })).toThrow(/contradict/);
  });
});
