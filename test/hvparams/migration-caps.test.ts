import { describe, expect, it } from 'vitest';
import {
  HvParamError,
  KNOWN_CAPABILITY_NAMES,
  KVMHypervisor,
  parseMigrationCaps,
} from '../../src/internal.js';
import { problemsOf } from './helpers.js';

const details = (value: string) =>
  problemsOf(() => parseMigrationCaps(value)).map((p) => {
    expect(p.param).toBe('migration_caps');
    const prefix = "Parameter 'migration_caps' fails syntax check: ";
    expect(p.message.startsWith(prefix)).toBe(true);
    return p.message.slice(prefix.length);
  });

describe('parseMigrationCaps', () => {
  it.each([
    ['', []],
    ['xbzrle', ['xbzrle']],
    ['xbzrle:auto-converge', ['xbzrle', 'auto-converge']],
    ['postcopy-ram:return-path:events', ['postcopy-ram', 'return-path', 'events']],
    ['x-postcopy-ram', ['x-postcopy-ram']],
    ['x-rdma-pin-all', ['x-rdma-pin-all']],
    ['x-multifd', ['x-multifd']],
    ['zero-copy-send:multifd', ['zero-copy-send', 'multifd']],
    ['postcopy-preempt:postcopy-ram', ['postcopy-preempt', 'postcopy-ram']],
    ['switchover-ack:return-path', ['switchover-ack', 'return-path']],
    // Version-bound rules (multifd ✕ xbzrle from 8.1) are left to the migration code.
    ['multifd:xbzrle', ['multifd', 'xbzrle']],
  ])('%j → %j', (value, expected) => {
    expect(parseMigrationCaps(value)).toEqual(expected);
  });

  it('accepts every known name on its own, except those that need a partner', () => {
    const needPartner = ['zero-copy-send', 'postcopy-preempt', 'switchover-ack'];
    for (const name of KNOWN_CAPABILITY_NAMES) {
      if (needPartner.includes(name)) expect(() => parseMigrationCaps(name)).toThrow(HvParamError);
      else expect(parseMigrationCaps(name)).toEqual([name]);
    }
  });

  it('rejects an unknown name', () => {
    const [detail] = details('xbzrle:turbo');
    expect(detail).toMatch(
      /^unknown migration capability 'turbo' \(known: .*xbzrle.*\) \(current value: 'xbzrle:turbo'\)$/,
    );
  });

  it.each([
    ['xbzrle::events', 'empty capability name at position 2'],
    ['xbzrle:', 'empty capability name at position 2'],
    [':xbzrle', 'empty capability name at position 1'],
  ])('rejects the empty item in %j', (value, detail) => {
    expect(details(value)).toEqual([`${detail} (current value: '${value}')`]);
  });

  it('rejects a duplicate', () => {
    expect(details('xbzrle:events:xbzrle')).toEqual([
      "capability 'xbzrle' is listed twice (current value: 'xbzrle:events:xbzrle')",
    ]);
  });

  it.each([
    ['multifd:x-multifd', 'multifd', 'x-multifd'],
    ['x-postcopy-ram:postcopy-ram', 'x-postcopy-ram', 'postcopy-ram'],
    ['rdma-pin-all:x-rdma-pin-all', 'rdma-pin-all', 'x-rdma-pin-all'],
  ])('rejects one capability under both spellings: %j', (value, first, second) => {
    expect(details(value)).toEqual([
      `capabilities '${first}' and '${second}' are the same capability (current value: '${value}')`,
    ]);
  });

  it('rejects a newline (HMP command injection), escaping it in the message', () => {
    const [detail] = details('xbzrle\nquit');
    expect(detail).toContain(
      "capability name 'xbzrle\\nquit' may contain only lowercase letters, digits and '-'",
    );
    expect(detail).toContain("(current value: 'xbzrle\\nquit')");
    expect(detail).not.toContain('\n');
  });

  it.each(['XBZRLE', 'Events', 'auto_converge', 'xbzrle auto-converge', 'xbzrle,events', 'xbzrle;quit', 'é'])(
    'rejects characters outside [a-z0-9-] in %j',
    (value) => {
      expect(details(value)[0]).toContain('may contain only lowercase letters, digits and');
    },
  );

  it.each([
    ['postcopy-preempt', "capability 'postcopy-preempt' requires 'postcopy-ram'"],
    ['switchover-ack', "capability 'switchover-ack' requires 'return-path'"],
    ['zero-copy-send', "capability 'zero-copy-send' requires 'multifd'"],
    ['postcopy-ram:x-ignore-shared', "capability 'postcopy-ram' cannot be combined with 'x-ignore-shared'"],
    ['background-snapshot:xbzrle', "capability 'background-snapshot' cannot be combined with 'xbzrle'"],
    ['dirty-limit:auto-converge', "capability 'dirty-limit' cannot be combined with 'auto-converge'"],
    ['mapped-ram:postcopy-ram', "capability 'mapped-ram' cannot be combined with 'postcopy-ram'"],
    ['x-postcopy-ram:x-ignore-shared', "capability 'postcopy-ram' cannot be combined with 'x-ignore-shared'"],
  ])('rejects the always-refused combination %j', (value, start) => {
    const found = details(value);
    expect(found).toHaveLength(1);
    expect(found[0]!.startsWith(start)).toBe(true);
  });

  it('reports every item problem at once', () => {
    expect(details('Bad::turbo:events:events')).toHaveLength(4);
  });

  it('reports the first 10 item problems and counts the rest (messages stay linear in the value)', () => {
    const value = Array.from({ length: 50_000 }, (_, i) => `nope${i}`).join(':');
    const found = details(value);
    expect(found).toHaveLength(11);
    expect(found[0]).toMatch(/^unknown migration capability 'nope0' /);
    expect(found[10]).toBe(`and 49990 more problems in the same value (current value: '${value}')`);
  });

  it('is the migration_caps syntax check of checkParameterSyntax', () => {
    const filled = { ...KVMHypervisor.fillDefaults({}), migration_caps: 'xbzrle:nope' };
    expect(problemsOf(() => KVMHypervisor.checkParameterSyntax(filled))).toEqual(
      problemsOf(() => parseMigrationCaps('xbzrle:nope')),
    );
  });

  it('refuses a non-string', () => {
    expect(() => parseMigrationCaps(5 as unknown as string)).toThrow('must be a string');
  });
});
