/**
 * Two "hosts" on one machine: two network namespaces joined by a veth pair, addressed from
 * TEST-NET-1 (192.0.2.0/30, a documentation range), so the migration stream crosses a link
 * the test can cut, slow down or make lossy while the rest of the machine is untouched.
 * QEMU runs inside a namespace (`ip netns exec`); its monitor sockets stay on the shared
 * filesystem, so the library and the observers reach them as usual.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { QemuExit, QemuVmOptions } from '../../src/testing/qemu-vm.js';
import type { VmProcess, VmStarter } from './harness.js';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const inNs = (ns: string, ...cmd: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'ignore', 'pipe'] });

/** `iptables-legacy` (the kernel's ip_tables) or `iptables`, whichever is installed. */
function iptablesBinary(): string | undefined {
  return ['iptables-legacy', 'iptables'].find((bin) => {
    try {
      execFileSync(bin, ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}

/** Two namespaces `a` (source side) and `b` (destination side) joined by a veth pair. */
export class TwoHosts {
  readonly nsA: string;
  readonly nsB: string;
  readonly ifA: string;
  readonly ifB: string;
  readonly addrA = '192.0.2.1';
  readonly addrB = '192.0.2.2';
  /** How the slow lossy link was made: `netem` where the kernel has it, else `tbf+iptables`. */
  lossyLinkKind: string | undefined;

  private constructor(tag: string) {
    this.nsA = `kvmhv-${tag}-a`;
    this.nsB = `kvmhv-${tag}-b`;
    this.ifA = `kh${tag}a`;
    this.ifB = `kh${tag}b`;
  }

  /**
   * Makes the namespaces and the link, or returns why it cannot (not root, no `ip`, no
   * namespace support). Names carry the process id, so parallel runs do not collide.
   */
  static create(): TwoHosts | string {
    if (process.getuid?.() !== 0) return 'network namespaces need root';
    try {
      execFileSync('ip', ['-V'], { stdio: 'ignore' });
    } catch {
      return "iproute2's `ip` is not installed";
    }
    const h = new TwoHosts(String(process.pid));
    try {
      h.destroy();
      ip('netns', 'add', h.nsA);
      ip('netns', 'add', h.nsB);
      ip('link', 'add', h.ifA, 'netns', h.nsA, 'type', 'veth', 'peer', 'name', h.ifB, 'netns', h.nsB);
      ip('-n', h.nsA, 'addr', 'add', `${h.addrA}/30`, 'dev', h.ifA);
      ip('-n', h.nsB, 'addr', 'add', `${h.addrB}/30`, 'dev', h.ifB);
      for (const [ns, dev] of [
        [h.nsA, h.ifA],
        [h.nsB, h.ifB],
      ] as const) {
        ip('-n', ns, 'link', 'set', 'lo', 'up');
        ip('-n', ns, 'link', 'set', dev, 'up');
      }
      return h;
    } catch (e) {
      h.destroy();
      const err = e as { stderr?: Buffer; message: string };
      return `cannot make network namespaces: ${err.stderr?.toString().trim() || err.message}`;
    }
  }

  /** Deletes both namespaces (and with them the veth pair); safe to call more than once. */
  destroy(): void {
    for (const ns of [this.nsA, this.nsB]) {
      try {
        ip('netns', 'del', ns);
      } catch {
        // not there
      }
    }
  }

  /** Cuts the link at the destination's end, like a cable pulled mid-migration. */
  cut(): void {
    ip('-n', this.nsB, 'link', 'set', this.ifB, 'down');
  }

  /** Brings the link back up after {@link cut}. */
  heal(): void {
    ip('-n', this.nsB, 'link', 'set', this.ifB, 'up');
  }

  /**
   * Waits until the destination's address is reachable from the source's namespace after
   * {@link heal}: a TCP connect to a port nobody listens on (9) is refused rather than
   * unreachable. Right after `ip link set up` the veth's carrier may not be up yet, and a
   * connect then fails with "No route to host".
   */
  async untilReachable(timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const r = spawnSync(
        'ip',
        ['netns', 'exec', this.nsA, 'timeout', '2', 'bash', '-c', `exec 3<>/dev/tcp/${this.addrB}/9`],
        { encoding: 'utf8' },
      );
      if (/refused/i.test(r.stderr ?? '')) return;
      if (Date.now() > until) {
        throw new Error(`${this.addrB} is still unreachable from ${this.nsA}: ${(r.stderr ?? '').trim()}`);
      }
      await sleep(200);
    }
  }

  /**
   * Resets every TCP connection from the source's side to the destination (`ss -K`, which
   * aborts the local sockets and sends the peer a RST), as a middlebox or a restarted
   * router would: both ends see the connection reset at once. Returns how many sockets
   * `ss` listed.
   */
  resetConnections(): number {
    return this.killSockets([]);
  }

  /**
   * Aborts the source side's connection attempts to the destination still in SYN-SENT (a
   * connect retransmitting over the dead link), so none of them gets through once the link
   * is back. Returns how many there were.
   */
  abortPendingConnects(): number {
    return this.killSockets(['state', 'syn-sent']);
  }

  private killSockets(filter: string[]): number {
    const out = execFileSync(
      'ip',
      ['netns', 'exec', this.nsA, 'ss', '-Htn', '-K', ...filter, 'dst', this.addrB],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    return out.split('\n').filter((l) => l.trim()).length;
  }

  /**
   * Why {@link slowLossyLink} cannot work here (no `tc`, neither netem nor iptables), or
   * undefined when it can. Probes netem on the namespace's loopback, not on the link.
   */
  lossyLinkUnavailable(): string | undefined {
    try {
      execFileSync('tc', ['-V'], { stdio: 'ignore' });
    } catch {
      return "iproute2's `tc` is not installed";
    }
    try {
      inNs(this.nsA, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms');
      inNs(this.nsA, 'tc', 'qdisc', 'del', 'dev', 'lo', 'root');
      return undefined;
    } catch {
      // no netem: iptables must do the dropping
    }
    return iptablesBinary() ? undefined : 'the kernel has no tc netem and iptables is not installed';
  }

  /**
   * Makes the link slow and lossy in both directions: `netem delay 50ms loss 2%` where the
   * kernel has netem; otherwise a 40 Mbit/s token bucket plus 2 % random drops
   * (`iptables -m statistic`). Throws when neither can be made.
   */
  slowLossyLink(): string {
    const ends = [
      [this.nsA, this.ifA],
      [this.nsB, this.ifB],
    ] as const;
    if (this.lossyLinkKind) return this.lossyLinkKind;
    try {
      for (const [ns, dev] of ends)
        inNs(ns, 'tc', 'qdisc', 'add', 'dev', dev, 'root', 'netem', 'delay', '50ms', 'loss', '2%');
      this.lossyLinkKind = 'netem delay 50ms loss 2%';
      return this.lossyLinkKind;
    } catch {
      // This kernel has no sch_netem: rate-limit with tbf and drop with iptables instead.
    }
    const iptables = iptablesBinary();
    if (!iptables) throw new Error('neither tc netem nor iptables is available to make a lossy link');
    for (const [ns, dev] of ends) {
      inNs(
        ns,
        'tc',
        'qdisc',
        'add',
        'dev',
        dev,
        'root',
        'tbf',
        'rate',
        '40mbit',
        'burst',
        '32kbit',
        'latency',
        '50ms',
      );
      inNs(
        ns,
        iptables,
        '-A',
        'OUTPUT',
        '-o',
        dev,
        '-m',
        'statistic',
        '--mode',
        'random',
        '--probability',
        '0.02',
        '-j',
        'DROP',
      );
    }
    this.lossyLinkKind = `tbf 40mbit + ${iptables} 2% random drop`;
    return this.lossyLinkKind;
  }

  /** Starts QEMU inside namespace `ns` (see {@link NetnsVm}). */
  starter(ns: string): VmStarter {
    return (options) => NetnsVm.start(ns, options);
  }
}

/** Unix sockets listening in the network namespace of process `pid` (`/proc/PID/net/unix`). */
function listeningIn(pid: number): Set<string> {
  const out = new Set<string>();
  let text = '';
  try {
    text = readFileSync(`/proc/${pid}/net/unix`, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && (Number.parseInt(f[3]!, 16) & 0x10000) !== 0) out.add(f.slice(7).join(' '));
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A QEMU process in a network namespace. `QemuVm.start` cannot be used with an
 * `ip netns exec` wrapper: it checks that the sockets listen in the caller's
 * `/proc/net/unix`, and a namespace's UNIX sockets are listed only in its own. This
 * starter reads `/proc/<qemu pid>/net/unix` instead. Same command line as `QemuVm`.
 */
class NetnsVm implements VmProcess {
  readonly qmpPaths: string[];
  readonly hmpPath: string | undefined;
  readonly exited: Promise<QemuExit>;
  private exitInfo: QemuExit | undefined;
  private stderrText = '';

  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    qmpPaths: string[],
    hmpPath: string | undefined,
  ) {
    this.qmpPaths = qmpPaths;
    this.hmpPath = hmpPath;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      this.stderrText = (this.stderrText + d).slice(-8192);
    });
    this.exited = new Promise((resolve) =>
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      }),
    );
  }

  get qmpPath(): string {
    return this.qmpPaths[0]!;
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  get alive(): boolean {
    return this.exitInfo === undefined;
  }
  get stderr(): string {
    return this.stderrText;
  }

  static async start(ns: string, o: QemuVmOptions): Promise<NetnsVm> {
    const qmpPaths = Array.from({ length: o.qmpSockets ?? 1 }, (_, i) =>
      join(o.dir, i === 0 ? `${o.name}.qmp` : `${o.name}.qmp${i + 1}`),
    );
    const hmpPath = o.hmp === false ? undefined : join(o.dir, `${o.name}.monitor`);
    const sockets = [...qmpPaths, ...(hmpPath ? [hmpPath] : [])];
    const argv = ['-name', o.name, '-accel', 'tcg', '-machine', 'pc', '-nodefaults', '-no-user-config'];
    argv.push('-display', 'none', '-m', String(o.memoryMiB ?? 64));
    for (const p of qmpPaths) argv.push('-qmp', `unix:${p},server=on,wait=off`);
    if (hmpPath) argv.push('-monitor', `unix:${hmpPath},server=on,wait=off`);
    if (o.kernel) argv.push('-kernel', o.kernel);
    if (o.incoming) argv.push('-incoming', o.incoming);
    if (o.args) argv.push(...o.args);
    for (const p of sockets) rmSync(p, { force: true });
    const binary = o.binary ?? process.env.QEMU ?? 'qemu-system-x86_64';
    // `ip netns exec` execs QEMU in place: the child's pid is QEMU's.
    const child = spawn('ip', ['netns', 'exec', ns, binary, ...argv], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const vm = new NetnsVm(o.name, child, qmpPaths, hmpPath);
    const deadline = Date.now() + (o.startTimeoutMs ?? 10_000);
    for (;;) {
      if (!vm.alive) throw new Error(`QEMU '${o.name}' exited during start-up in ${ns}: ${vm.stderr.trim()}`);
      const listening = listeningIn(vm.pid);
      if (sockets.every((p) => existsSync(p) && listening.has(p))) return vm;
      if (Date.now() > deadline) {
        await vm.kill(0);
        throw new Error(`QEMU '${o.name}' did not open its monitor sockets in ${ns} in time`);
      }
      await sleep(20);
    }
  }

  async kill(graceMs = 2000): Promise<QemuExit> {
    if (this.alive) {
      this.child.kill(graceMs === 0 ? 'SIGKILL' : 'SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    for (const p of [...this.qmpPaths, ...(this.hmpPath ? [this.hmpPath] : [])]) rmSync(p, { force: true });
    return this.exited;
  }
}
