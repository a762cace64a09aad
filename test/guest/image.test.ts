import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildGuestImage,
  GUEST_LOAD_ADDRESS,
  GUEST_OFFSETS,
  GUEST_REGION_START,
  GUEST_STATUS_MAGIC,
  guestListing,
  guestListingLines,
  MULTIBOOT_AOUT_KLUDGE,
  MULTIBOOT_MAGIC,
  PIT_HZ,
  parseGuestStatus,
  parseXpWords,
  readGuestImageParams,
  ticksPerPageFor,
  writeGuestImage,
} from '../../src/testing/guest/index.js';

const dir = mkdtempSync(join(tmpdir(), 'kvmhv-guest-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('Multiboot header', () => {
  const img = buildGuestImage({ dirtyMiB: 32, rateMiBps: 16 });
  const u32 = (off: number) => img.readUInt32LE(off);

  it('starts with the Multiboot v1 magic, within the first 8 KiB, 4-byte aligned', () => {
    expect(u32(GUEST_OFFSETS.magic)).toBe(0x1badb002);
    expect(MULTIBOOT_MAGIC).toBe(0x1badb002);
    expect(GUEST_OFFSETS.magic % 4).toBe(0);
  });

  it('sets flag bit 16 (a.out kludge) and no flag QEMU refuses (bit 2, video mode)', () => {
    expect(u32(GUEST_OFFSETS.flags)).toBe(0x00010000);
    expect(MULTIBOOT_AOUT_KLUDGE).toBe(1 << 16);
    expect(u32(GUEST_OFFSETS.flags) & 4).toBe(0);
  });

  it('has a checksum that makes magic + flags + checksum = 0 mod 2^32', () => {
    const sum = (u32(GUEST_OFFSETS.magic) + u32(GUEST_OFFSETS.flags) + u32(GUEST_OFFSETS.checksum)) >>> 0;
    expect(sum).toBe(0);
  });

  it('loads the whole file at 1 MiB and enters at the code after the header', () => {
    expect(u32(GUEST_OFFSETS.headerAddr)).toBe(GUEST_LOAD_ADDRESS);
    expect(u32(GUEST_OFFSETS.loadAddr)).toBe(GUEST_LOAD_ADDRESS);
    expect(u32(GUEST_OFFSETS.loadEndAddr)).toBe(GUEST_LOAD_ADDRESS + img.length);
    expect(u32(GUEST_OFFSETS.bssEndAddr)).toBe(0);
    expect(u32(GUEST_OFFSETS.entryAddr)).toBe(GUEST_LOAD_ADDRESS + GUEST_OFFSETS.code);
    // The first instruction at the entry point is `cli`.
    expect(img[GUEST_OFFSETS.code]).toBe(0xfa);
  });

  it('leaves the status block zero: the guest fills it at run time', () => {
    for (const off of [GUEST_OFFSETS.statusMagic, GUEST_OFFSETS.pagesWritten, GUEST_OFFSETS.sweeps]) {
      expect(u32(off)).toBe(0);
    }
  });

  it('is a small flat binary', () => {
    expect(img.length).toBeGreaterThan(GUEST_OFFSETS.code);
    expect(img.length).toBeLessThan(1024);
  });
});

describe('parameter patching', () => {
  it('patches region and pacing, and reads them back', () => {
    const p = readGuestImageParams(buildGuestImage({ dirtyMiB: 64, rateMiBps: 16 }));
    expect(p.regionStart).toBe(GUEST_REGION_START);
    expect(p.regionEnd).toBe(GUEST_REGION_START + 64 * 1048576);
    expect(p.dirtyMiB).toBe(64);
    expect(p.ticksPerPage).toBe(Math.round(PIT_HZ / (16 * 256)));
    expect(p.rateMiBps).toBeCloseTo(16, 1);
    expect(p.creditCap).toBeGreaterThanOrEqual(p.ticksPerPage);
  });

  it('changes only the parameter words between two builds', () => {
    const a = buildGuestImage({ dirtyMiB: 8, rateMiBps: 1 });
    const b = buildGuestImage({ dirtyMiB: 128, rateMiBps: 100 });
    expect(a.length).toBe(b.length);
    const differing = [...a.keys()].filter((i) => a[i] !== b[i]);
    expect(differing.length).toBeGreaterThan(0);
    for (const i of differing) {
      expect(i).toBeGreaterThanOrEqual(GUEST_OFFSETS.regionEnd);
      expect(i).toBeLessThan(GUEST_OFFSETS.statusMagic);
    }
  });

  it('rate 0 means unpaced', () => {
    const p = readGuestImageParams(buildGuestImage({ dirtyMiB: 4, rateMiBps: 0 }));
    expect(p.ticksPerPage).toBe(0);
    expect(p.rateMiBps).toBe(0);
  });

  it('computes PIT ticks per page, never below 1', () => {
    expect(ticksPerPageFor(1)).toBe(4661);
    expect(ticksPerPageFor(16)).toBe(291);
    expect(ticksPerPageFor(0.5)).toBe(9322);
    expect(ticksPerPageFor(1e6)).toBe(1);
  });

  it.each([
    [{ dirtyMiB: 0, rateMiBps: 1 }, /dirtyMiB/],
    [{ dirtyMiB: 1.5, rateMiBps: 1 }, /dirtyMiB/],
    [{ dirtyMiB: 4096, rateMiBps: 1 }, /dirtyMiB/],
    [{ dirtyMiB: 4, rateMiBps: -1 }, /rateMiBps/],
    [{ dirtyMiB: 4, rateMiBps: Number.NaN }, /rateMiBps/],
  ])('rejects %o', (opts, re) => {
    expect(() => buildGuestImage(opts)).toThrow(re);
  });

  it('writeGuestImage writes the same bytes to a file', () => {
    const path = join(dir, 'g.img');
    writeGuestImage(path, { dirtyMiB: 16, rateMiBps: 4 });
    expect(readFileSync(path).equals(buildGuestImage({ dirtyMiB: 16, rateMiBps: 4 }))).toBe(true);
  });

  it('refuses to read parameters from something else', () => {
    expect(() => readGuestImageParams(Buffer.alloc(128))).toThrow(/Multiboot magic/);
  });
});

describe('status block parsing', () => {
  it('parses HMP xp output', () => {
    const text = '0000000000100030: 0x59545244 0x0000282a 0x00000001 0x02200000\r\n';
    const words = parseXpWords(text);
    expect(words).toEqual([GUEST_STATUS_MAGIC, 0x282a, 1, 0x2200000]);
    expect(parseGuestStatus(words)).toEqual({
      running: true,
      pagesWritten: 0x282a,
      sweeps: 1,
      effectiveEnd: 0x2200000,
    });
  });

  it('reports a guest that has not started', () => {
    expect(parseGuestStatus([0, 0, 0, 0]).running).toBe(false);
    expect(() => parseGuestStatus([1, 2])).toThrow(/4 status words/);
  });
});

describe('listing', () => {
  it('shows the header, the labels and commented instructions', () => {
    const text = guestListing();
    expect(text).toMatch(/^00100000 +multiboot_header:/);
    expect(text).toContain('dd 0x1badb002');
    expect(text).toMatch(/00100040 +entry:/);
    expect(text).toMatch(/fa +cli +; no IDT/);
    expect(text).toMatch(/out 0x43, al/);
  });

  it('matches the image byte for byte (labels resolved)', () => {
    const img = buildGuestImage({ dirtyMiB: 1, rateMiBps: 1 });
    for (const l of guestListingLines()) {
      if (l.offset < GUEST_OFFSETS.code) continue; // header words are patched per build
      expect([...img.subarray(l.offset, l.offset + l.bytes.length)]).toEqual(l.bytes);
    }
  });

  const hasObjdump = (() => {
    try {
      execFileSync('objdump', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  // Cross-check with GNU objdump when binutils is installed.
  it.runIf(hasObjdump)('agrees with objdump on every instruction boundary and mnemonic', () => {
    const path = join(dir, 'obj.img');
    writeFileSync(path, buildGuestImage({ dirtyMiB: 1, rateMiBps: 1 }));
    const out = execFileSync(
      'objdump',
      [
        '-D',
        '-b',
        'binary',
        '-m',
        'i386',
        '-M',
        'intel',
        `--adjust-vma=${GUEST_LOAD_ADDRESS}`,
        `--start-address=${GUEST_LOAD_ADDRESS + GUEST_OFFSETS.code}`,
        path,
      ],
      { encoding: 'utf8' },
    );
    const theirs = new Map<number, string>();
    for (const m of out.matchAll(/^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)/gm)) {
      theirs.set(Number.parseInt(m[1]!, 16), m[2]!);
    }
    const ours = guestListingLines().filter((l) => l.offset >= GUEST_OFFSETS.code && l.bytes.length > 0);
    expect(ours.length).toBeGreaterThan(40);
    for (const l of ours) {
      const mnemonic = l.text.split(' ')[0]!;
      expect(theirs.get(GUEST_LOAD_ADDRESS + l.offset), `${l.text} at ${l.offset}`).toBe(mnemonic);
    }
  });
});
