/**
 * The QMP command table of a {@link FakeQemu}: each command the migration engine sends
 * (and a few more), answered the way the imitated QEMU version answers, including its
 * error texts. A refusal throws `QmpError`, which a server turns into QMP's `error` reply.
 */
import { QmpError } from '../../errors.js';
import { TERMINAL_STATUSES } from '../../migration/status.js';
import { HUMAN_MONITOR_COMMAND } from '../../monitor/human-command.js';
import { runHmpCommand } from './hmp-commands.js';
import type { FakeQemu } from './machine.js';

/** A QMP command as received: name and arguments. */
export interface FakeQmpCall {
  execute: string;
  arguments?: Record<string, unknown>;
}

const PAGE = 4096;

/**
 * Runs one QMP command against `qemu` and returns its `return` value. Throws `QmpError`
 * (class and desc as QEMU sends them) when QEMU would answer with an error.
 */
export function runQmpCommand(qemu: FakeQemu, cmd: FakeQmpCall): unknown {
  const args = cmd.arguments ?? {};
  const fail = (desc: string, cls = 'GenericError'): never => {
    throw new QmpError(cls, desc, cmd);
  };
  const notFound = () => fail(`The command ${cmd.execute} has not been found`, 'CommandNotFound');
  switch (cmd.execute) {
    case 'qmp_capabilities':
      return fail('Capabilities negotiation is already complete, command ignored', 'CommandNotFound');
    case 'query-version':
      return {
        qemu: { major: qemu.version.major, minor: qemu.version.minor, micro: qemu.version.micro },
        package: qemu.package,
      };
    case 'query-status': {
      const st: Record<string, unknown> = { status: qemu.runState, running: qemu.runState === 'running' };
      if (!qemu.has(8, 1)) st.singlestep = false;
      return st;
    }
    case 'query-yank': {
      if (!qemu.has(6, 0)) return notFound();
      // The migration's yank instance exists while it runs and until the clean-up is over;
      // on a destination, from `-incoming` until its incoming migration ended.
      const m = qemu.migration;
      const inc = qemu.incoming;
      if (inc && inc.status !== 'completed' && inc.status !== 'failed') return [{ type: 'migration' }];
      if (m.status === undefined) return [];
      if (TERMINAL_STATUSES.has(m.status)) {
        if (m.cleanupPolls <= 0) return [];
        m.cleanupPolls--;
      }
      return [{ type: 'migration' }];
    }
    case 'stop':
      qemu.stop();
      return {};
    case 'cont': {
      const err = qemu.cont();
      return err ? fail(err) : {};
    }
    case 'quit':
      // QEMU answers, then exits; the server closes the connection after the reply.
      return {};
    case 'object-add': {
      const { 'qom-type': qomType, id, props, ...flat } = args as Record<string, unknown>;
      if (typeof qomType !== 'string') return fail("Parameter 'qom-type' is missing");
      if (typeof id !== 'string') return fail("Parameter 'id' is missing");
      // 6.0 removed `props`; 5.2 takes both forms, older ones only `props`.
      if (props !== undefined && qemu.has(6, 0)) return fail("Parameter 'props' is unexpected");
      if (props === undefined && Object.keys(flat).length > 0 && !qemu.has(5, 2)) {
        return fail(`Parameter '${Object.keys(flat)[0]}' is unexpected`);
      }
      const err = qemu.objects.add(qomType, id, { ...flat, ...((props as Record<string, unknown>) ?? {}) });
      return err ? fail(err) : {};
    }
    case 'object-del': {
      if (typeof args.id !== 'string') return fail("Parameter 'id' is missing");
      const err = qemu.objects.delete(args.id);
      return err ? fail(err) : {};
    }
    case 'query-migrate-capabilities':
      return Object.entries(qemu.capabilities).map(([capability, state]) => ({ capability, state }));
    case 'migrate-set-capabilities': {
      const list = args.capabilities;
      if (!Array.isArray(list)) return fail("Parameter 'capabilities' is missing");
      for (const item of list) {
        if (typeof item?.capability !== 'string') return fail("Parameter 'capability' is missing");
        if (typeof item.state !== 'boolean')
          return fail("Invalid parameter type for 'state', expected: boolean");
      }
      const err = qemu.setCapabilities(list);
      return err ? fail(err) : {};
    }
    case 'query-migrate-parameters':
      return qemu.has(2, 4) ? qemu.parameters : notFound();
    case 'migrate-set-parameters': {
      if (!qemu.has(2, 4)) return notFound();
      const err = qemu.setParameters(args);
      return err ? fail(err) : {};
    }
    case 'migrate_set_speed': {
      if (qemu.has(6, 0)) return notFound();
      const v = args.value;
      if (typeof v !== 'number' || v < 0)
        return fail("Invalid parameter type for 'value', expected: integer");
      qemu.bandwidth = Math.floor(v);
      return {};
    }
    case 'migrate_set_downtime': {
      if (qemu.has(6, 0)) return notFound();
      const v = args.value;
      if (typeof v !== 'number' || v < 0) return fail("Invalid parameter type for 'value', expected: number");
      if (qemu.has(2, 8) && v > 2000) {
        return fail("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms");
      }
      qemu.downtimeMs = Math.round(v * 1000);
      return {};
    }
    case 'migrate': {
      if (typeof args.uri !== 'string') return fail("Parameter 'uri' is missing");
      if (args.resume !== undefined && !qemu.has(3, 0)) return fail("Parameter 'resume' is unexpected");
      const err = args.resume === true ? qemu.resumePostcopy(args.uri) : qemu.startMigration(args.uri);
      return err ? fail(err) : {};
    }
    case 'migrate-pause': {
      if (!qemu.has(3, 0)) return notFound();
      const err = qemu.pausePostcopy();
      return err ? fail(err) : {};
    }
    case 'migrate-recover': {
      if (!qemu.has(3, 0)) return notFound();
      if (typeof args.uri !== 'string') return fail("Parameter 'uri' is missing");
      const err = qemu.recoverPostcopy(args.uri);
      return err ? fail(err) : {};
    }
    case 'migrate-incoming': {
      if (!qemu.has(2, 3)) return notFound();
      if (typeof args.uri !== 'string') return fail("Parameter 'uri' is missing");
      if (qemu.runState !== 'inmigrate') return fail("'-incoming' was not specified on the command line");
      if (qemu.incoming && qemu.incoming.uri !== 'defer')
        return fail('The incoming migration has already been started');
      qemu.incoming = { uri: args.uri, status: 'setup' };
      return {};
    }
    case 'query-migrate':
      qemu.pollMigration();
      return queryMigrate(qemu);
    case 'migrate_cancel':
      qemu.cancelMigration();
      return {};
    case 'migrate-start-postcopy': {
      if (!qemu.has(2, 5)) return notFound();
      const err = qemu.startPostcopy();
      return err ? fail(err) : {};
    }
    case HUMAN_MONITOR_COMMAND: {
      if (typeof args['command-line'] !== 'string') return fail("Parameter 'command-line' is missing");
      const text = runHmpCommand(qemu, args['command-line']);
      return text.replace(/\n/g, '\r\n');
    }
    default:
      return notFound();
  }
}

/** The commands QEMU runs out of band (`allow-oob` in its schema, 3.0+). */
export const FAKE_OUT_OF_BAND_COMMANDS: ReadonlySet<string> = new Set([
  'migrate-pause',
  'migrate-recover',
  'x-oob-test',
]);

/** True when `command` makes QEMU exit after its reply (`quit`, or `human-monitor-command quit`). */
export function isQuitCommand(cmd: FakeQmpCall): boolean {
  if (cmd.execute === 'quit') return true;
  if (cmd.execute !== HUMAN_MONITOR_COMMAND) return false;
  const word = String(cmd.arguments?.['command-line'] ?? '')
    .trim()
    .split(/\s+/)[0];
  return word === 'quit' || word === 'q';
}

/** RAM statistics of `query-migrate`, with the members the version has. */
function ramStats(qemu: FakeQemu): Record<string, number> {
  const m = qemu.migration;
  const normal = Math.floor(m.transferred / PAGE);
  const ram: Record<string, number> = {
    transferred: m.transferred,
    remaining: m.remaining,
    total: m.total,
    duplicate: m.zeroPages,
    normal,
    'normal-bytes': normal * PAGE,
  };
  if (!qemu.has(9, 1)) ram.skipped = 0;
  if (qemu.has(1, 3)) ram['dirty-pages-rate'] = m.dirtyPagesRate;
  if (qemu.has(1, 6)) ram.mbps = m.mbps;
  if (qemu.has(2, 1)) ram['dirty-sync-count'] = m.passes;
  if (qemu.has(2, 7)) ram['postcopy-requests'] = 0;
  if (qemu.has(2, 10)) ram['page-size'] = PAGE;
  if (qemu.has(3, 0)) ram['multifd-bytes'] = 0;
  if (qemu.has(4, 0)) ram['pages-per-second'] = Math.round((m.mbps * 1e6) / 8 / PAGE);
  if (qemu.has(7, 0)) {
    ram['precopy-bytes'] = m.transferred;
    ram['downtime-bytes'] = 0;
    ram['postcopy-bytes'] = 0;
  }
  return ram;
}

/** The `query-migrate` reply: the outgoing migration, else the incoming side, else `{}`. */
export function queryMigrate(qemu: FakeQemu): Record<string, unknown> {
  const m = qemu.migration;
  if (m.status === undefined) {
    const inc = qemu.incoming;
    if (!inc || inc.uri === 'defer') return {};
    const out: Record<string, unknown> = { status: inc.status };
    const tcp = /^tcp:(.+):(\d+)$/.exec(inc.uri);
    if (qemu.has(3, 0) && tcp && (inc.status === 'setup' || inc.status === 'active')) {
      out['socket-address'] = [{ type: 'inet', host: tcp[1], port: tcp[2] }];
    }
    return out;
  }
  const out: Record<string, unknown> = { status: m.status };
  if (m.status === 'cancelled' || m.status === 'cancelling') return out;
  if (m.status === 'failed') {
    if (qemu.has(2, 7) && m.errorDesc !== undefined) out['error-desc'] = m.errorDesc;
    return out;
  }
  if (qemu.has(1, 2)) out['total-time'] = m.totalTime;
  if (m.status === 'completed') {
    if (qemu.has(1, 3)) out.downtime = m.downtime ?? 0;
  } else if (qemu.has(1, 3)) {
    out['expected-downtime'] = qemu.downtimeMs;
  }
  if (qemu.has(1, 6)) out['setup-time'] = 1;
  if (m.status !== 'setup') out.ram = ramStats(qemu);
  if (qemu.capabilities.xbzrle === true && m.status !== 'setup') {
    out['xbzrle-cache'] = { 'cache-size': 67108864, bytes: 0, pages: 0, 'cache-miss': 0, overflow: 0 };
  }
  return out;
}
