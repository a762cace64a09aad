/**
 * The HMP command table of a {@link FakeQemu}: each command line the migration engine
 * sends, answered with the text (and error text) of the imitated QEMU version. Output
 * lines end with `\n`; servers add QEMU's `\r`.
 */
import { formatVersion } from '../../qemu/version.js';
import { paramsForVersion, parseHmpSize } from '../mock-params.js';
import { infoMigrateCapabilities, infoMigrateParameters, infoMigrateText, infoStatus } from './hmp-render.js';
import type { FakeQemu } from './machine.js';
import { parseObjectAddLine } from './objects.js';

/** The command word of an HMP line (`info X` for info subcommands). */
export function hmpCommandName(line: string): string {
  const words = line.trim().split(/\s+/);
  if (words[0] === 'info' && words[1] !== undefined) return `info ${words[1]}`;
  return words[0] ?? '';
}

/** True when `line` makes QEMU exit after its reply (`quit`, `q`). */
export function isHmpQuit(line: string): boolean {
  const word = hmpCommandName(line);
  return word === 'quit' || word === 'q';
}

/**
 * Runs one HMP command line against `qemu` and returns QEMU's output (`''` for none).
 * Errors are output too (`unknown command: …`, `Error: …`), as on a real monitor.
 * `quit` returns `''`: the caller makes QEMU exit once the reply is out.
 */
export function runHmpCommand(qemu: FakeQemu, line: string): string {
  const words = line
    .trim()
    .split(/\s+/)
    .filter((w) => w !== '');
  const [cmd = '', ...rest] = words;
  const unknown = `unknown command: '${cmd === 'info' ? `info ${rest[0] ?? ''}`.trim() : cmd}'\n`;
  const expected = (what: string) => `${cmd}: ${what} expected\nTry "help ${cmd}" for more information\n`;
  switch (cmd) {
    case '':
      return '';
    case 'info':
      return runInfo(qemu, rest[0] ?? '', unknown);
    case 'stop':
      qemu.stop();
      return '';
    case 'cont':
    case 'c': {
      const err = qemu.cont();
      return err ? `Error: ${err}\n` : '';
    }
    case 'quit':
    case 'q':
      return '';
    case 'migrate_set_speed': {
      if (qemu.has(6, 0)) return unknown;
      if (rest[0] === undefined) return expected('size');
      const bytes = parseHmpSize(rest[0], 1024 * 1024);
      if (bytes === undefined) return 'invalid size\n';
      qemu.bandwidth = bytes;
      return '';
    }
    case 'migrate_set_downtime': {
      if (qemu.has(6, 0)) return unknown;
      if (rest[0] === undefined) return expected('number');
      const m = /^(\d+(?:\.\d+)?)(s|ms|us|ns)?$/.exec(rest[0]);
      if (!m) return "Error: Parameter 'value' expects a number\n";
      const div = { s: 1, ms: 1e3, us: 1e6, ns: 1e9 }[(m[2] ?? 's') as 's' | 'ms' | 'us' | 'ns'];
      const ms = Math.round((Number(m[1]) / div) * 1000);
      if (qemu.has(2, 8) && ms > 2_000_000) {
        return "Error: Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms\n";
      }
      qemu.downtimeMs = ms;
      return '';
    }
    case 'object_add': {
      const spec = line.trim().slice('object_add'.length).trim();
      if (spec === '') return expected('string');
      const parsed = parseObjectAddLine(spec);
      if (typeof parsed === 'string') return `Error: ${parsed}\n`;
      if (parsed.id === undefined) return "Error: Parameter 'id' is missing\n";
      const err = qemu.objects.add(parsed.qomType, parsed.id, parsed.props);
      return err ? `Error: ${err}\n` : '';
    }
    case 'object_del': {
      if (rest[0] === undefined) return expected('string');
      const err = qemu.objects.delete(rest[0]);
      return err ? `Error: ${err}\n` : '';
    }
    case 'migrate_set_parameter':
      return qemu.has(2, 4) ? setParameter(qemu, rest, expected) : unknown;
    case 'migrate_set_capability': {
      const [name, value] = rest;
      if (name === undefined) return expected('string');
      if (value !== 'on' && value !== 'off') {
        return `Expected 'on' or 'off'\nTry "help migrate_set_capability" for more information\n`;
      }
      if (!qemu.hasCapability(name)) {
        return qemu.has(2, 3) ? `Error: invalid parameter value: ${name}\n` : `Invalid parameter '${name}'\n`;
      }
      const err = qemu.setCapabilities([{ capability: name, state: value === 'on' }]);
      return err ? `Error: ${err}\n` : '';
    }
    case 'migrate': {
      const uri = rest.find((w) => !w.startsWith('-'));
      if (uri === undefined) return expected('string');
      const resume = rest.some((w) => /^-[a-z]*r/.test(w));
      if (resume && !qemu.has(3, 0)) return `${cmd}: unsupported option -r\n`;
      const err = resume ? qemu.resumePostcopy(uri) : qemu.startMigration(uri);
      return err ? `Error: ${err}\n` : '';
    }
    case 'migrate_pause': {
      if (!qemu.has(3, 0)) return unknown;
      const err = qemu.pausePostcopy();
      return err ? `Error: ${err}\n` : '';
    }
    case 'migrate_recover': {
      if (!qemu.has(3, 0)) return unknown;
      if (rest[0] === undefined) return expected('string');
      const err = qemu.recoverPostcopy(rest[0]);
      return err ? `Error: ${err}\n` : '';
    }
    case 'migrate_incoming': {
      if (!qemu.has(2, 3)) return unknown;
      if (rest[0] === undefined) return expected('string');
      if (qemu.runState !== 'inmigrate') return "Error: '-incoming' was not specified on the command line\n";
      if (qemu.incoming && qemu.incoming.uri !== 'defer')
        return 'Error: The incoming migration has already been started\n';
      qemu.incoming = { uri: rest[0], status: 'setup' };
      return '';
    }
    case 'migrate_cancel':
      qemu.cancelMigration();
      return '';
    case 'migrate_start_postcopy': {
      if (!qemu.has(2, 5)) return unknown;
      const err = qemu.startPostcopy();
      return err ? `Error: ${err}\n` : '';
    }
    default:
      return unknown;
  }
}

function runInfo(qemu: FakeQemu, what: string, unknown: string): string {
  switch (what) {
    case 'version':
      return `${formatVersion(qemu.version)}${qemu.package}\n`;
    case 'status':
      return infoStatus(qemu);
    case 'migrate_capabilities':
      return infoMigrateCapabilities(qemu);
    case 'migrate_parameters':
      return qemu.has(2, 4) ? infoMigrateParameters(qemu) : unknown;
    case 'migrate':
      qemu.pollMigration();
      return infoMigrateText(qemu);
    default:
      return unknown;
  }
}

function setParameter(qemu: FakeQemu, rest: string[], expected: (what: string) => string): string {
  const [name, value] = rest;
  if (name === undefined || value === undefined) return expected('string');
  const p = paramsForVersion(qemu.version).find((x) => x.name === name);
  if (!p) return `Error: invalid parameter value: ${name}\n`;
  let v: number | boolean | string;
  if (p.kind === 'bool') {
    if (value !== 'on' && value !== 'off') return `Error: Parameter '${name}' expects 'on' or 'off'\n`;
    v = value === 'on';
  } else if (p.kind === 'string') {
    // HMP unquotes `""` up to 10.0 (observed on 5.2, 7.2, 10.0); 11.1 stores it literally.
    v = value === '""' && !qemu.has(10, 1) ? '' : value;
  } else {
    const parsed = parseHmpSize(
      value,
      name === 'max-bandwidth' || name === 'max-postcopy-bandwidth' ? 1024 * 1024 : 1,
    );
    if (parsed === undefined) {
      return `Error: Parameter '${name}' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n`;
    }
    v = parsed;
  }
  const err = qemu.setParameter(p, v);
  return err ? `Error: ${err}\n` : '';
}
