/**
 * An in-memory, socket-like pair of connected `Duplex` streams, for handing a monitor
 * client a fake peer without any socket (`QmpMonitor.fromStream(client)`).
 */
import { Duplex } from 'node:stream';

/** Options for {@link createStreamPair}. */
export interface StreamPairOptions {
  /** `writableHighWaterMark` of both ends, to exercise backpressure (default 16 KiB). */
  highWaterMark?: number;
  /** Delay in ms before a write is delivered and acknowledged (default 0: next tick). */
  writeDelayMs?: number;
}

/**
 * Returns two connected duplex streams: bytes written to one are read from the other.
 * Ending or destroying one end ends the other, like a socket whose peer went away.
 */
export function createStreamPair(options: StreamPairOptions = {}): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const ended = [false, false];
  const endPeer = (i: number) => {
    const peer = ends[1 - i]!;
    if (!ended[1 - i] && !peer.destroyed) {
      ended[1 - i] = true;
      peer.push(null);
    }
  };
  for (let i = 0; i < 2; i++) {
    ends.push(
      new Duplex({
        writableHighWaterMark: options.highWaterMark ?? 16 * 1024,
        read() {},
        write(chunk: Buffer, _enc, cb) {
          const deliver = () => {
            const peer = ends[1 - i]!;
            if (!ended[1 - i] && !peer.destroyed) peer.push(chunk);
            cb();
          };
          if (options.writeDelayMs) setTimeout(deliver, options.writeDelayMs);
          else process.nextTick(deliver);
        },
        final(cb) {
          endPeer(i);
          cb();
        },
        destroy(err, cb) {
          endPeer(i);
          cb(err);
        },
      }),
    );
  }
  return [ends[0]!, ends[1]!];
}
