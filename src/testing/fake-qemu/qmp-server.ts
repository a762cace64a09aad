/**
 * A QMP server for a {@link FakeQemu} on any duplex stream (one end of
 * `createStreamPair()`): QEMU's greeting, capabilities negotiation, replies matched by
 * id, out-of-band commands (`exec-oob`) once `oob` is enabled, events once negotiated,
 * and `quit` closing the connection after its reply.
 */
import type { Duplex } from 'node:stream';
import { QmpError } from '../../errors.js';
import { type QmpInput, QmpInputSplitter } from '../qmp-input.js';
import type { FakeMonitorFaults } from './faults.js';
import type { FakeQemu } from './machine.js';
import { FAKE_OUT_OF_BAND_COMMANDS, type FakeQmpCall, isQuitCommand, runQmpCommand } from './qmp-commands.js';

/** Hooks of {@link serveQmp}. */
export interface FakeServerHooks {
  /** Fault switches (frozen, refused commands); default: none. */
  faults?: FakeMonitorFaults;
  /** Called with each command's name (QMP) or line (HMP) before it is answered. */
  onCommand?: (command: string) => void;
}

/**
 * Serves QMP for `qemu` on `stream` until either side closes it. Returns a function that
 * closes the connection: after the replies written so far (QEMU exiting), or `abrupt`ly.
 */
export function serveQmp(
  qemu: FakeQemu,
  stream: Duplex,
  hooks: FakeServerHooks = {},
): (abrupt?: boolean) => void {
  const parser = new QmpInputSplitter();
  let negotiated = false;
  let oobEnabled = false;
  const send = (obj: unknown) => {
    if (!stream.destroyed && stream.writable) stream.write(`${JSON.stringify(obj)}\r\n`);
  };
  // Abruptly (a reset), or after the replies already written (QEMU exiting).
  const close = (abrupt = false) => {
    unsubscribe();
    if (stream.destroyed) return;
    if (abrupt) stream.destroy();
    else {
      stream.once('finish', () => stream.destroy());
      stream.end();
    }
  };
  const unsubscribe = qemu.onEvent((ev) => {
    if (negotiated && !hooks.faults?.isFrozen) send(ev);
  });
  stream.on('close', unsubscribe);
  stream.on('error', () => {});
  // The client hung up: QEMU closes its end too.
  stream.on('end', () => close(true));
  const v = qemu.version;
  const greet = () =>
    send({
      QMP: {
        version: { qemu: { major: v.major, minor: v.minor, micro: v.micro }, package: qemu.package },
        capabilities: qemu.has(2, 12) ? ['oob'] : [],
      },
    });
  // A frozen QEMU greets nobody either.
  if (hooks.faults) hooks.faults.gate(greet);
  else greet();
  const answer = (call: FakeQmpCall, id: unknown) => {
    const withId = (reply: Record<string, unknown>) => (id === undefined ? reply : { ...reply, id });
    if (call.execute === 'qmp_capabilities' && !negotiated) {
      const enable = call.arguments?.enable;
      const unknown = Array.isArray(enable) ? enable.find((c) => c !== 'oob' || !qemu.has(2, 12)) : undefined;
      if (unknown !== undefined) {
        send(
          withId({ error: { class: 'GenericError', desc: `Capability ${String(unknown)} not available` } }),
        );
        return;
      }
      negotiated = true;
      oobEnabled = Array.isArray(enable) && enable.includes('oob');
      send(withId({ return: {} }));
      return;
    }
    if (!negotiated) {
      send(
        withId({
          error: {
            class: 'CommandNotFound',
            desc: "Expecting capabilities negotiation with 'qmp_capabilities'",
          },
        }),
      );
      return;
    }
    hooks.onCommand?.(call.execute);
    const refused = hooks.faults?.refusalFor(call.execute);
    if (refused) {
      send(withId({ error: refused }));
      return;
    }
    try {
      send(withId({ return: runQmpCommand(qemu, call) }));
    } catch (e) {
      if (!(e instanceof QmpError)) throw e;
      send(withId({ error: { class: e.errorClass, desc: e.desc } }));
      return;
    }
    if (isQuitCommand(call)) qemu.quit();
  };
  stream.on('data', (chunk: Buffer) => {
    let messages: QmpInput[];
    try {
      messages = parser.push(chunk);
    } catch {
      close(true);
      return;
    }
    for (const m of messages) {
      if (m.kind === 'parse-error') {
        send({ error: { class: 'GenericError', desc: 'JSON parse error, expecting value' } });
        continue;
      }
      const raw = m.value as {
        execute?: unknown;
        'exec-oob'?: unknown;
        arguments?: unknown;
        id?: unknown;
      } | null;
      const oob = raw?.['exec-oob'];
      const name = typeof raw?.execute === 'string' ? raw.execute : typeof oob === 'string' ? oob : undefined;
      if (name === undefined || raw === null) {
        send({ error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } });
        continue;
      }
      const call: FakeQmpCall = { execute: name };
      if (raw.arguments !== undefined) call.arguments = raw.arguments as Record<string, unknown>;
      const id = raw.id;
      const run = () => answer(call, id);
      if (typeof oob === 'string' && raw.execute === undefined) {
        // Out of band: answered by the monitor I/O thread, past a stuck main loop.
        const refuse = (desc: string) => () =>
          send({ ...(id === undefined ? {} : { id }), error: { class: 'GenericError', desc } });
        const reply = !oobEnabled
          ? refuse("QMP input member 'exec-oob' is unexpected")
          : !FAKE_OUT_OF_BAND_COMMANDS.has(name)
            ? refuse(`The command ${name} does not support OOB`)
            : run;
        if (hooks.faults) hooks.faults.gate(reply);
        else reply();
        continue;
      }
      if (hooks.faults) hooks.faults.gateInBand(run);
      else run();
    }
  });
  return close;
}
