/**
 * Which UNIX sockets listen: `startInstance` waits for QEMU's monitor socket to listen
 * before it connects (src/instance/launch.ts), and so does the test helper `QemuVm`.
 */
import { readFileSync } from 'node:fs';

/**
 * Paths of the UNIX sockets that are listening (Linux `/proc/net/unix`, flag
 * `__SO_ACCEPTCON`). QEMU creates the socket file at bind(), before listen(): a client
 * that connects as soon as the file exists can get ECONNREFUSED. Undefined where
 * `/proc/net/unix` cannot be read.
 */
export function listeningUnixSockets(pid?: number): Set<string> | undefined {
  let text: string;
  try {
    // The process's own view: QEMU may run in another network namespace (`ip netns exec`).
    text = readFileSync(pid === undefined ? '/proc/net/unix' : `/proc/${pid}/net/unix`, 'utf8');
  } catch {
    try {
      text = readFileSync('/proc/net/unix', 'utf8');
    } catch {
      return undefined;
    }
  }
  const out = new Set<string>();
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path
    if (f.length >= 8 && (Number.parseInt(f[3]!, 16) & 0x10000) !== 0) out.add(f.slice(7).join(' '));
  }
  return out;
}
