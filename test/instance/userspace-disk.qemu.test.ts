/**
 * Userspace rbd and gluster disks on real QEMU. No Ceph or Gluster cluster runs here, so
 * the proof is what each release says about the rendered `-blockdev`: QEMU validates the
 * options against its QAPI schema before it loads the driver, so an option it did not
 * accept would fail as "Parameter '…' is unexpected". Every release must instead fail on
 * the connection (the driver is there) or on the driver itself (not built, or its module
 * not installed for this build), each with QEMU's own words. Where the host's QEMU has its
 * `block-rbd`/`block-gluster` module, the connection error is required.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { afterEach, beforeAll, expect, it } from 'vitest';
import { renderArgv } from '../../src/instance/argv.js';
import { probeQemuFeatures, type QemuFeatures } from '../../src/instance/features.js';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import { resolveRuntime } from '../../src/instance/runtime.js';
import { describeEachRelease, releaseCases } from '../support/real-qemu.js';
import { baseSpec } from './specs.js';

const HOST_MODULES = '/usr/lib/x86_64-linux-gnu/qemu';
/** QEMU refusing an option of the rendered -blockdev: what must never happen. */
const OPTION_REFUSED = /is unexpected|Invalid parameter|Parameter '[^']+' expects|doesn't support the option/;

/** A TCP port nothing listens on (bound, then closed): a connect to it is refused at once. */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describeEachRelease('userspace disks', releaseCases(['tcg']), (release) => {
  let features: QemuFeatures;
  const dirs: string[] = [];
  const isHost = release.suite === 'host';

  beforeAll(async () => {
    features = await probeQemuFeatures(release.binary, { timeoutMs: 60_000 });
  });
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  /** Starts QEMU from the spec's argv and returns what it printed when it exited (killed after 60 s). */
  async function startFails(uri: string): Promise<{ code: number | null; stderr: string; blockdev: string }> {
    const dir = mkdtempSync('/tmp/kvu-');
    dirs.push(dir);
    const layout = runLayout(dir);
    for (const d of [layout.pid, layout.ctrl, layout.conf, layout.chroot, layout.log])
      mkdirSync(d, { recursive: true });
    const spec = baseSpec({
      disks: [{ uuid: '932df160-7a22-4067-8d2a-5c1f0b2f1e11', kind: 'userspace', uri }],
      hvparams: { kernel_path: '' },
    });
    const paths = instancePaths(layout, spec.name);
    mkdirSync(paths.chroot, { mode: 0o700 });
    const argv = renderArgv(resolveRuntime(spec, features), features, { paths, accel: 'tcg' });
    const blockdev =
      argv[argv.findIndex((a, i) => argv[i - 1] === '-blockdev' && a.includes('file.driver='))]!;
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    clearTimeout(kill);
    return { code, stderr, blockdev };
  }

  it('rbd: QEMU takes the options and fails on the Ceph connection (or names the missing driver)', async () => {
    const r = await startFails('rbd:ganeti/web1.disk0:id=ganeti');
    expect(r.blockdev).toContain('file.driver=rbd,file.pool=ganeti,file.image=web1.disk0,file.user=ganeti');
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(OPTION_REFUSED);
    const connection = /error connecting|error reading conf file|unable to get monitor info/;
    if (isHost && existsSync(`${HOST_MODULES}/block-rbd.so`)) expect(r.stderr).toMatch(connection);
    else
      expect(r.stderr).toMatch(
        new RegExp(`${connection.source}|Unknown driver 'rbd'|does not accept value 'rbd'`),
      );
  });

  it('gluster: QEMU takes the options and fails on the server connection (or names the missing driver)', async () => {
    const port = await closedPort();
    const r = await startFails(`gluster://127.0.0.1:${port}/gv0/ganeti/web1.disk0`);
    expect(r.blockdev).toContain(
      `file.driver=gluster,file.volume=gv0,file.path=ganeti/web1.disk0,file.server.0.type=inet,file.server.0.host=127.0.0.1,file.server.0.port=${port}`,
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).not.toMatch(OPTION_REFUSED);
    const connection = /Gluster connection for volume gv0, path ganeti\/web1\.disk0 failed to connect/;
    if (isHost && existsSync(`${HOST_MODULES}/block-gluster.so`)) expect(r.stderr).toMatch(connection);
    else {
      expect(r.stderr).toMatch(
        new RegExp(`${connection.source}|Unknown driver 'gluster'|does not accept value 'gluster'`),
      );
    }
  });
});
