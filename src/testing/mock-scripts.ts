/**
 * The scripting half of `MockMonitor`: failure and reply rules matched against each
 * command, and what a matched failure throws.
 */
import { HmpError, MonitorClosedError, QmpError } from '../errors.js';
import { HUMAN_MONITOR_COMMAND } from '../monitor/human-command.js';
import type { MonitorProtocol } from '../monitor/types.js';
import { hmpCommandName } from './fake-qemu/hmp-commands.js';

/** What a failure or reply rule is matched against. */
export interface MockCommandInfo {
  /** Protocol the command came in with. */
  protocol: MonitorProtocol;
  /** QMP command name, or the HMP command word (`info X` for info subcommands). */
  name: string;
  /** QMP arguments. */
  arguments?: Record<string, unknown>;
  /** The HMP command line (also set for `human-monitor-command` over QMP). */
  line?: string;
}

/**
 * How a scripted command fails: a QMP error object, an HMP error text, an `Error` to
 * throw (a `MonitorClosedError` also closes the mock), or `'disconnect'`.
 */
export type MockFailure = { class: string; desc: string } | string | Error | 'disconnect';

/** A command name, or a predicate on the command. */
export type MockMatcher = string | ((cmd: MockCommandInfo) => boolean);

/** A reply value, or a function computing it from the command. */
export type MockReply = unknown | ((cmd: MockCommandInfo) => unknown);

/** Scripted failures and replies, first match wins (replies: the newest first). */
export class MockScripts {
  private readonly failures: { match: MockMatcher; failure: MockFailure; times: number }[] = [];
  private readonly replies: { match: MockMatcher; reply: MockReply }[] = [];

  addFailure(match: MockMatcher, failure: MockFailure, times: number): void {
    this.failures.push({ match, failure, times });
  }

  addReply(match: MockMatcher, reply: MockReply): void {
    this.replies.unshift({ match, reply });
  }

  clear(): void {
    this.failures.length = 0;
    this.replies.length = 0;
  }

  /**
   * Throws the scripted failure of `info`, if any (counting it down). `disconnect(err)`
   * closes the mock for `'disconnect'` and `MonitorClosedError` failures.
   */
  applyFailure(info: MockCommandInfo, disconnect: (error?: Error) => void): void {
    const rule = this.failures.find((f) => f.times > 0 && matches(f.match, info));
    if (!rule) return;
    rule.times--;
    const f = rule.failure;
    const what = info.line ?? info.name;
    if (f === 'disconnect') {
      disconnect();
      throw new MonitorClosedError(`mock monitor closed before '${what}' got its reply`);
    }
    if (f instanceof Error) {
      if (f instanceof MonitorClosedError) disconnect(f);
      throw f;
    }
    if (info.protocol === 'hmp') {
      throw new HmpError(what, typeof f === 'string' ? f : `Error: ${f.desc}`);
    }
    const cmd = info.arguments ? { execute: info.name, arguments: info.arguments } : { execute: info.name };
    if (typeof f === 'string') {
      if (info.name === HUMAN_MONITOR_COMMAND) throw new HmpError(what, f);
      throw new QmpError('GenericError', f, cmd);
    }
    throw new QmpError(f.class, f.desc, cmd);
  }

  /** The scripted reply of `info`, if any. */
  findReply(info: MockCommandInfo): { found: boolean; value?: unknown } {
    const rule = this.replies.find((r) => matches(r.match, info));
    if (!rule) return { found: false };
    return { found: true, value: typeof rule.reply === 'function' ? rule.reply(info) : rule.reply };
  }
}

function matches(match: MockMatcher, info: MockCommandInfo): boolean {
  if (typeof match === 'function') return match(info);
  return (
    match === info.name ||
    (info.line !== undefined && (match === info.line || match === hmpCommandName(info.line)))
  );
}
