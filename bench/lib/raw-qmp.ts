/**
 * A raw QMP session for the floors of the benchmarks: one socket, replies read as lines
 * in order (events skipped), nothing else. What the library's client is compared with.
 */
import { connect } from 'node:net';

/** An open raw QMP session after `qmp_capabilities`. */
export interface RawQmp {
  /** Writes bytes as they are. */
  write(data: string): void;
  /** The next reply line (events skipped), in order. */
  next(): Promise<string>;
  close(): void;
}

/**
 * Connects, reads the greeting and negotiates with the bytes given by `capabilities`
 * (called with the greeting line, so a floor can send what the client would).
 */
export async function openRawQmp(path: string, capabilities: (greeting: string) => string): Promise<RawQmp> {
  const sock = connect(path);
  sock.setEncoding('utf8');
  let buf = '';
  const lines: string[] = [];
  const waiters: ((line: string) => void)[] = [];
  sock.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.includes('"event"')) continue;
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const next = () =>
    new Promise<string>((resolve) => {
      const l = lines.shift();
      if (l !== undefined) resolve(l);
      else waiters.push(resolve);
    });
  const greeting = await next();
  sock.write(capabilities(greeting));
  const reply = await next();
  if (reply.includes('"error"')) throw new Error(`qmp_capabilities refused: ${reply}`);
  return { write: (data) => void sock.write(data), next, close: () => sock.destroy() };
}
