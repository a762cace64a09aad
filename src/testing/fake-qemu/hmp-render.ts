/**
 * HMP `info …` output of a {@link FakeQemu}, in the layouts of each QEMU release (see
 * test/fixtures/hmp and the shared notes' qemu-hmp-info-migrate-by-version.txt):
 * the classic `Migration status:` layout up to 10.0 (with its `globals:` block from 2.12)
 * and the sectioned, tab-indented layout from 10.1.
 */
import type { FakeQemu } from './machine.js';

const PAGE = 4096;
const kb = (b: number) => Math.floor(b / 1024);

/** `info status`: `VM status: running`, `VM status: paused (postmigrate)`, … */
export function infoStatus(qemu: FakeQemu): string {
  const s = qemu.runState;
  if (s === 'running') return 'VM status: running\n';
  if (s === 'paused') return 'VM status: paused\n';
  return `VM status: paused (${s})\n`;
}

/** `info migrate_capabilities`: one `name: on|off` line each. */
export function infoMigrateCapabilities(qemu: FakeQemu): string {
  return Object.entries(qemu.capabilities)
    .map(([n, s]) => `${n}: ${s ? 'on' : 'off'}\n`)
    .join('');
}

/** `info migrate_parameters`: one `name: value [unit]` line each. */
export function infoMigrateParameters(qemu: FakeQemu): string {
  return Object.entries(qemu.parameters)
    .map(([k, v]) => {
      const val = typeof v === 'boolean' ? (v ? 'on' : 'off') : typeof v === 'string' ? `'${v}'` : String(v);
      if (k === 'max-bandwidth') return `${k}: ${v} bytes/second\n`;
      if (k === 'downtime-limit' || (k.startsWith('announce-') && k !== 'announce-rounds'))
        return `${k}: ${v} ms\n`;
      if (k === 'xbzrle-cache-size') return `${k}: ${v} bytes\n`;
      return `${k}: ${val}\n`;
    })
    .join('');
}

/**
 * A size as QEMU's `size_to_str` prints it: three significant digits and a binary unit,
 * switching unit from 1000 of the smaller one (`0 B`, `4 KiB`, `13.2 MiB`, `0.98 GiB`).
 */
export function qemuSizeToStr(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  const scaled = bytes / (1000 / 1024);
  // frexp's exponent: x = m·2^e with m in [0.5, 1).
  const e = scaled <= 0 ? 0 : Math.floor(Math.log2(scaled)) + 1;
  const i = Math.max(0, Math.trunc((e - 1) / 10));
  const value = bytes / 2 ** (i * 10);
  return `${Number(value.toPrecision(3))} ${units[i]}`;
}

/** `info migrate` in the layout of the QEMU version. */
export function infoMigrateText(qemu: FakeQemu): string {
  return qemu.has(10, 1) ? sectioned(qemu) : classic(qemu);
}

function globals(qemu: FakeQemu): string[] {
  if (!qemu.has(2, 12)) return [];
  const lines = [
    'globals:',
    'store-global-state: on',
    'only-migratable: off',
    'send-configuration: on',
    'send-section-footer: on',
  ];
  if (qemu.has(10, 0)) lines.push('send-switchover-start: on');
  else if (qemu.has(3, 0)) lines.push('decompress-error-check: on');
  if (qemu.has(4, 0)) lines.push('clear-bitmap-shift: 18');
  return lines;
}

function incomingAddress(uri: string): string | undefined {
  const tcp = /^tcp:(.+:\d+)$/.exec(uri);
  return tcp ? `tcp:${tcp[1]}` : undefined;
}

function classic(qemu: FakeQemu): string {
  const m = qemu.migration;
  const lines = globals(qemu);
  const inc = qemu.incoming;
  if (m.status === undefined) {
    if (inc && inc.uri !== 'defer') {
      lines.push(`Migration status: ${inc.status}`, 'total time: 0 ms');
      const addr = incomingAddress(inc.uri);
      if (addr && qemu.has(3, 0) && (inc.status === 'setup' || inc.status === 'active'))
        lines.push('socket address: [', `\t${addr}`, ']');
    }
  } else if (m.status === 'failed' && m.errorDesc !== undefined) {
    lines.push(`Migration status: failed (${m.errorDesc})`, `total time: ${m.totalTime} ms`);
  } else {
    lines.push(`Migration status: ${m.status}`);
    if (m.status === 'cancelled' || m.status === 'cancelling' || m.status === 'failed') {
      lines.push(`total time: ${m.totalTime} ms`);
    } else {
      lines.push(`total time: ${m.totalTime} ms`);
      if (m.status === 'completed') lines.push(`downtime: ${m.downtime ?? 0} ms`);
      else lines.push(`expected downtime: ${qemu.downtimeMs} ms`);
      lines.push('setup: 1 ms');
      if (m.status !== 'setup') {
        const normal = Math.floor(m.transferred / PAGE);
        lines.push(
          `transferred ram: ${kb(m.transferred)} kbytes`,
          `throughput: ${m.mbps.toFixed(2)} mbps`,
          `remaining ram: ${kb(m.remaining)} kbytes`,
          `total ram: ${kb(m.total)} kbytes`,
          `duplicate: ${m.zeroPages} pages`,
        );
        if (!qemu.has(9, 1)) lines.push('skipped: 0 pages');
        lines.push(`normal: ${normal} pages`, `normal bytes: ${kb(normal * PAGE)} kbytes`);
        lines.push(`dirty sync count: ${m.passes}`);
        if (qemu.has(2, 10)) lines.push('page size: 4 kbytes');
        if (qemu.has(3, 0)) lines.push('multifd bytes: 0 kbytes');
        if (qemu.has(4, 0)) lines.push(`pages-per-second: ${Math.round((m.mbps * 1e6) / 8 / PAGE)}`);
        if (m.dirtyPagesRate > 0) lines.push(`dirty pages rate: ${m.dirtyPagesRate} pages`);
        if (qemu.has(7, 0)) {
          lines.push(`precopy ram: ${kb(m.transferred)} kbytes`);
          if (m.status === 'completed') lines.push('downtime ram: 0 kbytes');
        }
      }
    }
  }
  return lines.map((l) => `${l}\n`).join('');
}

function sectioned(qemu: FakeQemu): string {
  const m = qemu.migration;
  const inc = qemu.incoming;
  const lines: string[] = [];
  if (m.status === undefined) {
    if (inc && inc.uri !== 'defer') {
      lines.push(`Status: \t\t${inc.status}`);
      const addr = incomingAddress(inc.uri);
      if (addr && (inc.status === 'setup' || inc.status === 'active'))
        lines.push('Sockets: [', `\t${addr}`, ']');
    }
    return lines.map((l) => `${l}\n`).join('');
  }
  if (m.status === 'failed' && m.errorDesc !== undefined) {
    return `Status: \t\tfailed (${m.errorDesc})\n`;
  }
  lines.push(`Status: \t\t${m.status}`);
  if (m.status === 'cancelled' || m.status === 'cancelling' || m.status === 'failed') {
    return lines.map((l) => `${l}\n`).join('');
  }
  const time =
    m.status === 'completed'
      ? `total=${m.totalTime}, setup=0, down=${m.downtime ?? 0}`
      : `total=${m.totalTime}, setup=0, exp_down=${qemu.downtimeMs}`;
  lines.push(`Time (ms): \t\t${time}`);
  if (m.status !== 'completed') lines.push(`Remaining: \t\t${qemuSizeToStr(m.remaining)}`);
  if (m.status !== 'setup') {
    const normal = Math.floor(m.transferred / PAGE);
    const others = [`dirty_syncs=${m.passes}`];
    if (m.status === 'completed') others.push('downtime_bytes=0');
    lines.push(
      'RAM info:',
      `  Throughput (Mbps): \t${m.mbps.toFixed(2)}`,
      `  Sizes: \t\tpagesize=4 KiB, total=${qemuSizeToStr(m.total)}`,
      `  Transfers: \t\ttransferred=${qemuSizeToStr(m.transferred)}, remain=${qemuSizeToStr(m.remaining)}`,
      `    Channels: \t\tprecopy=${qemuSizeToStr(m.transferred)}, multifd=0 B, postcopy=0 B`,
      `    Page Types: \tnormal=${normal}, zero=${m.zeroPages}`,
      `  Page Rates (pps): \ttransfer=${Math.round((m.mbps * 1e6) / 8 / PAGE)}`,
      `  Others: \t\t${others.join(', ')}`,
    );
  }
  return lines.map((l) => `${l}\n`).join('');
}
