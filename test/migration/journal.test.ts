/**
 * The migration journal on its own: the file format, durability and permissions, and
 * that a damaged or unknown-version journal is an error quoting it, never ignored.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { instancePaths, runLayout } from '../../src/instance/layout.js';
import {
  MigrationJournal,
  type MigrationJournalEntry,
  MigrationJournalError,
  parseMigrationJournal,
} from '../../src/migration/journal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = () => {
  const d = mkdtempSync(join(tmpdir(), 'kvmhv-journal-'));
  dirs.push(d);
  return d;
};

const entry = (over: Partial<MigrationJournalEntry> = {}): MigrationJournalEntry => ({
  formatVersion: 1,
  instance: 'web1',
  role: 'source',
  phase: 'migrating',
  peer: '10.0.0.2',
  uri: 'tcp:10.0.0.2:8102',
  hvparams: {
    migration_bandwidth: 8,
    migration_downtime: 100,
    migration_caps: 'auto-converge',
    migration_port: 8102,
    migration_mode: 'live',
  },
  capabilities: ['auto-converge'],
  snapshot: {
    capabilities: { 'auto-converge': false },
    parameters: { maxBandwidth: 134217728, downtimeLimit: 300, maxPostcopyBandwidth: 0 },
  },
  tls: false,
  eventsEnabled: true,
  postcopy: false,
  live: true,
  wasRunning: true,
  stoppedByUs: false,
  downtimeMs: 100,
  startedAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_000,
  writerPid: 1234,
  ...over,
});

describe('MigrationJournal', () => {
  it('writes a 0600 file per instance and role, reads it back, and removes it', () => {
    const dir = join(scratch(), 'state');
    const j = new MigrationJournal(dir);
    j.write(entry());
    j.write(entry({ role: 'destination', phase: 'accepted' }));
    const path = j.path('web1', 'source');
    expect(path).toBe(join(dir, 'web1.source.migration'));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const back = j.read('web1', 'source');
    expect(back).toMatchObject({ ...entry(), updatedAt: expect.any(Number), writerPid: process.pid });
    expect(j.read('web1', 'destination')?.phase).toBe('accepted');
    // No temporary file is left behind.
    expect(readdirSync(dir).sort()).toEqual(['web1.destination.migration', 'web1.source.migration']);
    j.remove('web1', 'source');
    expect(j.read('web1', 'source')).toBeUndefined();
    j.remove('web1', 'source'); // a missing one is fine
  });

  it('creates its folder on first use, and flush never rejects (a journal already removed included)', async () => {
    const dir = join(scratch(), 'a', 'b');
    const j = new MigrationJournal(dir);
    j.write(entry());
    await j.flush('web1', 'source');
    j.remove('web1', 'source');
    await expect(j.flush('web1', 'source')).resolves.toBeUndefined();
    rmSync(dir, { recursive: true });
    j.write(entry()); // the folder was removed meanwhile: created again
    expect(j.read('web1', 'source')?.instance).toBe('web1');
  });

  it('advance writes only when the phase changes', () => {
    const j = new MigrationJournal(scratch());
    j.write(entry());
    const before = readFileSync(j.path('web1', 'source'), 'utf8');
    j.advance('web1', 'source', 'migrating');
    expect(readFileSync(j.path('web1', 'source'), 'utf8')).toBe(before);
    j.advance('web1', 'source', 'completed');
    expect(j.read('web1', 'source')?.phase).toBe('completed');
    j.advance('web2', 'source', 'completed'); // no journal: nothing
    expect(j.read('web2', 'source')).toBeUndefined();
  });

  it("names the files as the run directory's layout does (stop removes them with the instance)", () => {
    const root = scratch();
    const paths = instancePaths(runLayout(root), 'web1');
    const j = new MigrationJournal(runLayout(root).conf);
    expect(paths.journals).toEqual({
      source: j.path('web1', 'source'),
      destination: j.path('web1', 'destination'),
    });
  });

  it('refuses a name that is not a file name', () => {
    const j = new MigrationJournal(scratch());
    expect(() => j.path('../etc/passwd', 'source')).toThrow(/not usable as a file name/);
  });

  it('a damaged journal is an error that quotes it', () => {
    const j = new MigrationJournal(scratch());
    writeFileSync(j.path('web1', 'source'), '{"formatVersion": 1, "instance": "web1", "ro');
    const err = (() => {
      try {
        j.read('web1', 'source');
      } catch (e) {
        return e;
      }
    })() as MigrationJournalError;
    expect(err).toBeInstanceOf(MigrationJournalError);
    expect(err.path).toBe(j.path('web1', 'source'));
    expect(err.message).toMatch(/damaged \(not JSON\).*"ro/);
  });

  it('an unknown format version or a missing field is an error naming it', () => {
    expect(() => parseMigrationJournal(JSON.stringify(entry({ formatVersion: 2 as 1 })), 'j')).toThrow(
      /format version 2 is not one this library reads/,
    );
    const { snapshot: _s, ...partial } = entry();
    expect(() => parseMigrationJournal(JSON.stringify(partial), 'j')).toThrow(/migration journal j: damaged/);
    expect(() => parseMigrationJournal(JSON.stringify({ ...entry(), phase: 'flying' }), 'j')).toThrow(
      /damaged \(\/phase/,
    );
  });
});
