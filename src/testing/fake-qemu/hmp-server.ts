/**
 * An HMP server for a {@link FakeQemu} on any duplex stream: QEMU's banner and
 * `(qemu) ` prompt, the readline echo of each command line, output lines ending in
 * `\r\n`, and `quit` closing the connection.
 */
import type { Duplex } from 'node:stream';
import { formatVersion } from '../../qemu/version.js';
import { hmpCommandName, isHmpQuit, runHmpCommand } from './hmp-commands.js';
import type { FakeQemu } from './machine.js';
import type { FakeServerHooks } from './qmp-server.js';

const PROMPT = '(qemu) ';

/**
 * Serves HMP for `qemu` on `stream` until either side closes it. Returns a function that
 * closes the connection: after the replies written so far (QEMU exiting), or `abrupt`ly.
 */
export function serveHmp(
  qemu: FakeQemu,
  stream: Duplex,
  hooks: FakeServerHooks = {},
): (abrupt?: boolean) => void {
  const write = (text: string) => {
    if (!stream.destroyed && stream.writable) stream.write(text);
  };
  // Abruptly (a reset), or after the replies already written (QEMU exiting).
  const close = (abrupt = false) => {
    if (stream.destroyed) return;
    if (abrupt) stream.destroy();
    else {
      stream.once('finish', () => stream.destroy());
      stream.end();
    }
  };
  stream.on('error', () => {});
  // The client hung up: QEMU closes its end too.
  stream.on('end', () => close(true));
  const banner = () =>
    write(`QEMU ${formatVersion(qemu.version)} monitor - type 'help' for more information\r\n${PROMPT}`);
  // A frozen QEMU prints no banner either.
  if (hooks.faults) hooks.faults.gate(banner);
  else banner();
  let buffered = '';
  const answer = (line: string) => {
    // QEMU's readline echoes the line as it is typed, then prints the output.
    write(`${line}\r\n`);
    hooks.onCommand?.(line);
    const refused = hooks.faults?.refusalFor(hmpCommandName(line));
    const text = refused ? `Error: ${refused.desc}\n` : runHmpCommand(qemu, line);
    if (!refused && isHmpQuit(line)) {
      qemu.quit();
      return;
    }
    write(`${text.replace(/\n/g, '\r\n')}${PROMPT}`);
  };
  stream.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl).replace(/\r$/, '');
      buffered = buffered.slice(nl + 1);
      const run = () => answer(line);
      // HMP runs in QEMU's main loop.
      if (hooks.faults) hooks.faults.gateInBand(run);
      else run();
    }
  });
  return close;
}
