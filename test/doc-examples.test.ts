/**
 * scripts/check-doc-examples.ts compiles the ```ts blocks it extracts; a block it misses is
 * never checked, so the extraction is tested on its own.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { extractTsBlocks } from '../scripts/check-doc-examples.js';

describe('extractTsBlocks', () => {
  it('returns ts and typescript blocks with the line of their first code line', () => {
    const md = [
      '# t',
      '```ts',
      'const a = 1;',
      '```',
      'text',
      '```typescript',
      'let b;',
      'b = 2;',
      '```',
    ].join('\n');
    expect(extractTsBlocks('x.md', md)).toEqual([
      { file: 'x.md', line: 3, code: 'const a = 1;' },
      { file: 'x.md', line: 7, code: 'let b;\nb = 2;' },
    ]);
  });

  it('skips other languages, nocheck blocks, and fences inside a longer fence', () => {
    const md = [
      '```sh',
      'npm test',
      '```',
      '```ts nocheck',
      'off(…): this;',
      '```',
      '````md',
      '```ts',
      'not a block',
      '```',
      '````',
      'inline ```` ```ts ```` is not a fence',
      '```ts',
      'ok();',
      '```',
    ].join('\n');
    expect(extractTsBlocks('x.md', md)).toEqual([{ file: 'x.md', line: 14, code: 'ok();' }]);
  });

  it('finds the examples of the README and docs/migration.md', () => {
    for (const file of ['README.md', 'docs/migration.md']) {
      const blocks = extractTsBlocks(file, readFileSync(new URL(`../${file}`, import.meta.url), 'utf8'));
      expect(blocks.some((b) => b.code.includes("from 'kvm-hypervisor'"))).toBe(true);
    }
  });
});
