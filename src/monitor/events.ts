/**
 * Event plumbing shared by the monitor clients and the mock: listener dispatch that a
 * throwing listener cannot break, and {@link Monitor.waitForEvent}.
 */
import { EventEmitter } from 'node:events';
import { MonitorClosedError, MonitorError, MonitorTimeoutError } from '../errors.js';
import type { MonitorLogger } from '../logger.js';
import type { EventWaiter, MonitorEvent, WaitForEventOptions } from './types.js';

/**
 * An `EventEmitter` with the two typed events every {@link Monitor} has: `'event'` (a QMP
 * event) and `'close'`. The clients and the mock extend it.
 */
export class MonitorEmitter extends EventEmitter {
  /** Subscribes to every event / to the close notification. */
  override on(event: 'event', listener: (ev: MonitorEvent) => void): this;
  override on(event: 'close', listener: (error?: Error) => void): this;
  override on(event: string | symbol, listener: (...args: never[]) => void): this;
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  /** Removes a listener added with {@link on}. */
  override off(event: 'event', listener: (ev: MonitorEvent) => void): this;
  override off(event: 'close', listener: (error?: Error) => void): this;
  override off(event: string | symbol, listener: (...args: never[]) => void): this;
  override off(event: string | symbol, listener: (...args: never[]) => void): this {
    return super.off(event, listener as (...args: unknown[]) => void);
  }
}

/**
 * Calls every `'event'` listener of `emitter` with `ev`. A listener that throws is
 * logged and skipped; the others still run, and the caller (reply routing) goes on.
 */
export function dispatchEvent(emitter: EventEmitter, ev: MonitorEvent, logger?: MonitorLogger): void {
  for (const listener of emitter.listeners('event')) {
    try {
      (listener as (e: MonitorEvent) => void).call(emitter, ev);
    } catch (err) {
      logger?.warn({ err, event: ev.event }, 'monitor event listener threw; ignored');
    }
  }
}

/** What {@link createEventWaiter} needs from a monitor. */
export interface EventSource {
  on(event: 'event', listener: (ev: MonitorEvent) => void): unknown;
  on(event: 'close', listener: (error?: Error) => void): unknown;
  off(event: 'event', listener: (ev: MonitorEvent) => void): unknown;
  off(event: 'close', listener: (error?: Error) => void): unknown;
  readonly closed: boolean;
}

/**
 * Subscribes at once and returns a waiter for the first event named `name` (or one of
 * `names`) that passes `filter`. Rejects with `MonitorTimeoutError` after `timeoutMs`,
 * with `MonitorClosedError` when the monitor closes, with the signal's reason on abort,
 * and with the error a throwing `filter` raised. The promise is marked handled, so a
 * waiter nobody awaits never causes an unhandled rejection.
 */
export function createEventWaiter(
  source: EventSource,
  name: string | readonly string[],
  options: WaitForEventOptions = {},
  describe = 'monitor',
): EventWaiter {
  const names = new Set(typeof name === 'string' ? [name] : name);
  const label = [...names].join('|');
  let cancel: () => void = () => {};
  const promise = new Promise<MonitorEvent>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = () => {
      if (timer) clearTimeout(timer);
      source.off('event', onEvent);
      source.off('close', onClose);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const onEvent = (ev: MonitorEvent) => {
      if (!names.has(ev.event)) return;
      let ok: boolean;
      try {
        ok = options.filter ? options.filter(ev) : true;
      } catch (err) {
        done();
        reject(err);
        return;
      }
      if (ok) {
        done();
        resolve(ev);
      }
    };
    const onClose = (error?: Error) => {
      done();
      reject(
        new MonitorClosedError(
          `${describe} closed while waiting for event ${label}`,
          error ? { cause: error } : undefined,
        ),
      );
    };
    const onAbort = () => {
      done();
      reject(options.signal?.reason ?? new MonitorError(`wait for event ${label} aborted`));
    };
    cancel = done;
    if (options.signal?.aborted) {
      onAbort();
      return;
    }
    if (source.closed) {
      reject(new MonitorClosedError(`${describe} is closed; cannot wait for event ${label}`));
      return;
    }
    source.on('event', onEvent);
    source.on('close', onClose);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        done();
        reject(new MonitorTimeoutError(`no ${label} event on ${describe} within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
    }
  });
  promise.catch(() => {});
  return { promise, cancel: () => cancel() };
}

/** A waiter that has already failed with `error` (HMP monitors have no events). */
export function rejectedWaiter(error: Error): EventWaiter {
  const promise = Promise.reject(error);
  promise.catch(() => {});
  return { promise, cancel: () => {} };
}
