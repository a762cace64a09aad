/**
 * The fake QEMU's HMP `info migrate` against the layouts recorded from real QEMU releases
 * (test/fixtures/hmp): the same lines in the same order (values aside), and the same
 * reading by the strict parser.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseInfoMigrate } from '../../src/migration/status.js';
import { infoMigrateText } from '../../src/testing/fake-qemu/hmp-render.js';
import { FakeQemu } from '../../src/testing/index.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'hmp');
const fixture = (release: string, what: string) =>
  readFileSync(join(FIXTURES, `qemu-${release}-info-migrate-${what}.txt`), 'utf8').replace(/\r/g, '');

/** Each line's label (what precedes `:`, or the line itself), without the xbzrle cache block. */
const labels = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => (/^([^:]+):/.exec(l)?.[1] ?? l).trim())
    .filter((l) => !/^(cache size|xbzrle)/.test(l));

const MiB = 2 ** 20;

function migrating(version: string, state: 'active' | 'completed' | 'none' | 'failed'): FakeQemu {
  const q = new FakeQemu({ version, ramBytes: 128 * MiB });
  if (state === 'none') return q;
  q.bandwidth = 8 * MiB;
  q.startMigration('tcp:127.0.0.1:1');
  q.tick(1500);
  if (state === 'completed') q.completeMigration({ downtime: 20 });
  if (state === 'failed') q.failMigration("Failed to connect to '127.0.0.1:1': Connection refused");
  return q;
}

describe.each(['5.2', '7.2', '10.0', '11.1'])('info migrate of a fake QEMU %s', (release) => {
  const version = `${release}.0`;
  for (const state of ['none', 'active', 'completed'] as const) {
    it(`${state}: the lines of the real layout, read alike by the parser`, () => {
      const real = fixture(release, state);
      const fake = infoMigrateText(migrating(version, state));
      expect(labels(fake)).toEqual(labels(real));
      expect(parseInfoMigrate(fake).status).toBe(parseInfoMigrate(real).status);
    });
  }

  it('incoming: the destination layout with its socket block', () => {
    const real = fixture(release, 'incoming');
    const q = new FakeQemu({ version, incoming: 'tcp:127.0.0.1:45052' });
    q.incoming!.status = 'active';
    expect(labels(infoMigrateText(q))).toEqual(labels(real));
    expect(parseInfoMigrate(infoMigrateText(q)).status).toBe('active');
  });
});

describe.each(['5.2', '11.1'])('a failed migration on a fake QEMU %s', (release) => {
  it("prints QEMU's reason on the status line, as recorded", () => {
    const fake = infoMigrateText(migrating(`${release}.0`, 'failed'));
    expect(labels(fake)).toEqual(labels(fixture(release, 'failed')));
    expect(parseInfoMigrate(fake).errorDesc).toBe("Failed to connect to '127.0.0.1:1': Connection refused");
  });
});
