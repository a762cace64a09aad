/**
 * The dirty-memory guest: a Multiboot v1 kernel of a few hundred bytes that writes to
 * every 4 KiB page of a memory region, over and over, at a chosen rate. It gives a live
 * migration real work (pages the source must send again and again) without any disk
 * image, operating system or network: QEMU loads it with `-kernel`.
 *
 * Boot: QEMU's Multiboot loader (the `multiboot_dma.bin` option ROM) reads the header
 * below. Flag bit 16 (the "a.out kludge") gives the load addresses in the header, so the
 * file is a flat binary loaded at 1 MiB and entered at `entry` in 32-bit protected mode
 * with flat segments, paging off and interrupts masked (`EAX = 0x2BADB002`,
 * `EBX` = the Multiboot information structure).
 *
 * Pacing: the kernel programs PIT channel 0 (1.193182 MHz) as a free-running 16-bit
 * counter and polls it. Elapsed ticks become "credit"; each page written costs
 * `ticks_per_page` ticks, so the rate is `PIT_HZ / ticks_per_page` pages per second.
 * Credit is capped at {@link GUEST_CREDIT_CAP_MS} ms worth of ticks, so time the vCPU
 * does not run (a vCPU throttled by auto-converge, a busy host) is lost, not made up by a
 * burst: like a CPU-bound workload, the guest dirties less when it gets less CPU, which
 * is what makes auto-converge work on it. With rate 0 the kernel writes as fast as the
 * vCPU runs.
 *
 * Each write stores the running page counter in the first word of the page: the page
 * is then never a zero page, so migration sends it in full every time it is dirtied.
 *
 * Image layout (offsets from the start of the file = from the load address):
 *
 * | offset | size | content |
 * |---|---|---|
 * | 0x00 | 32 | Multiboot header: magic, flags, checksum, header/load/load_end/bss_end/entry addresses |
 * | 0x20 | 16 | parameters patched by {@link buildGuestImage}: region start, region end, ticks per page, credit cap |
 * | 0x30 | 16 | status written by the running guest: magic `DRTY`, pages written, sweeps, effective region end |
 * | 0x40 | …  | code |
 *
 * The host can read the status block with HMP `xp /4wx 0x100030`.
 */
import { writeFileSync } from 'node:fs';
import { Assembler, formatListing, type ListingLine } from './x86.js';

/** Multiboot v1 header magic (`0x1BADB002`). */
export const MULTIBOOT_MAGIC = 0x1badb002;
/** Multiboot header flag bit 16: the header carries the load addresses (a.out kludge). */
export const MULTIBOOT_AOUT_KLUDGE = 1 << 16;
/** Where the image is loaded and the header lives: 1 MiB. */
export const GUEST_LOAD_ADDRESS = 0x100000;
/** First byte of the dirtied region: 2 MiB, clear of the kernel and the Multiboot info. */
export const GUEST_REGION_START = 0x200000;
/** Frequency of the PIT input clock, Hz. */
export const PIT_HZ = 1_193_182;
/** Guest page size the kernel steps by. */
const GUEST_PAGE_SIZE = 4096;
/** Longest stall (ms of PIT ticks) the paced loop makes up for by writing faster. */
const GUEST_CREDIT_CAP_MS = 2;
/** Largest region {@link buildGuestImage} accepts (it must stay below the PCI hole). */
const MAX_DIRTY_MIB = 2048;

/** Offsets of the fields in the image (see the module comment for the layout). */
export const GUEST_OFFSETS = {
  magic: 0x00,
  flags: 0x04,
  checksum: 0x08,
  headerAddr: 0x0c,
  loadAddr: 0x10,
  loadEndAddr: 0x14,
  bssEndAddr: 0x18,
  entryAddr: 0x1c,
  regionStart: 0x20,
  regionEnd: 0x24,
  ticksPerPage: 0x28,
  creditCap: 0x2c,
  statusMagic: 0x30,
  pagesWritten: 0x34,
  sweeps: 0x38,
  effectiveEnd: 0x3c,
  code: 0x40,
} as const;

/** The value of the status magic once the guest runs: ASCII `DRTY` little-endian. */
export const GUEST_STATUS_MAGIC = 0x59545244;
/** Linear address of the status block (`xp /4wx` it from the monitor). */
export const GUEST_STATUS_ADDRESS = GUEST_LOAD_ADDRESS + GUEST_OFFSETS.statusMagic;

/** Options of {@link buildGuestImage}. */
export interface GuestImageOptions {
  /** Size of the region the guest dirties, in MiB (integer, 1 … {@link MAX_DIRTY_MIB}). */
  dirtyMiB: number;
  /** Pages written per second expressed in MiB/s (4 KiB pages); `0` = as fast as possible. */
  rateMiBps: number;
}

/** The parameters as stored in an image (see {@link readGuestImageParams}). */
export interface GuestImageParams {
  /** First byte of the region (linear address). */
  regionStart: number;
  /** First byte after the region (linear address). */
  regionEnd: number;
  /** PIT ticks per page written; 0 = unpaced. */
  ticksPerPage: number;
  /** Upper bound of the tick credit. */
  creditCap: number;
  /** Region size in MiB, from start and end. */
  dirtyMiB: number;
  /** The rate these ticks give, MiB/s; 0 = unpaced. */
  rateMiBps: number;
}

/** A decoded guest status block (see {@link parseGuestStatus}). */
export interface GuestStatus {
  /** True when the magic word is `DRTY`: the kernel has started. */
  running: boolean;
  /** Pages written since boot (wraps at 2³²). */
  pagesWritten: number;
  /** Completed passes over the whole region. */
  sweeps: number;
  /** Region end after clamping to the RAM the guest has. */
  effectiveEnd: number;
}

const SYM = {
  regionStart: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.regionStart,
  regionEnd: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.regionEnd,
  ticksPerPage: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.ticksPerPage,
  creditCap: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.creditCap,
  statusMagic: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.statusMagic,
  pagesWritten: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.pagesWritten,
  sweeps: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.sweeps,
  effectiveEnd: GUEST_LOAD_ADDRESS + GUEST_OFFSETS.effectiveEnd,
};

/**
 * Emits "write one page, step to the next, wrap at the end of the region", then jumps
 * back to `loop`. Register use: ESI = current page, EDI = region end, EAX clobbered.
 */
function emitWritePage(a: Assembler, suffix: string, loop: string): void {
  a.incMem(SYM.pagesWritten, 'pages_written += 1')
    .load('eax', SYM.pagesWritten)
    .storeIndirect('esi', 'eax', 'dirty the page: store the counter in its first word')
    .addImm('esi', GUEST_PAGE_SIZE, 'next page')
    .cmp('esi', 'edi')
    .jcc('b', `next_${suffix}`, 'still inside the region?')
    .load('esi', SYM.regionStart, 'wrap to the start of the region')
    .incMem(SYM.sweeps, 'sweeps += 1')
    .label(`next_${suffix}`)
    .jmp(loop);
}

/** Emits "EDX = PIT channel 0 count" (latch, then low and high byte). Clobbers EAX. */
function emitReadPit(a: Assembler, dst: 'ebx' | 'edx'): void {
  a.movImm8('al', 0x00)
    .outAl(0x43, 'latch the count of channel 0')
    .inAl(0x40, 'low byte')
    .mov8('dl', 'al')
    .inAl(0x40, 'high byte')
    .mov8('dh', 'al')
    .movzx16(dst, 'edx', `${dst} = 16-bit count (counts down, wraps every 54.9 ms)`);
}

/** Assembles the kernel with zeroed parameters; {@link buildGuestImage} patches them. */
function assemble(): Assembler {
  const a = new Assembler(GUEST_LOAD_ADDRESS);
  a.label('multiboot_header', 'read by the loader: must be in the first 8 KiB, 4-byte aligned');
  a.dd([MULTIBOOT_MAGIC], 'magic')
    .dd([MULTIBOOT_AOUT_KLUDGE], 'flags: bit 16, addresses below are valid')
    .dd([-(MULTIBOOT_MAGIC + MULTIBOOT_AOUT_KLUDGE) >>> 0], 'checksum: magic + flags + checksum = 0')
    .dd([GUEST_LOAD_ADDRESS], 'header_addr')
    .dd([GUEST_LOAD_ADDRESS], 'load_addr: the file is loaded from its first byte')
    .dd([0], 'load_end_addr (patched: load_addr + file size)')
    .dd([0], 'bss_end_addr: no bss')
    .dd([0], 'entry_addr (patched: address of entry)');
  a.label('params', 'patched by buildGuestImage()')
    .dd([0], 'region_start')
    .dd([0], 'region_end')
    .dd([0], 'ticks_per_page (0 = unpaced)')
    .dd([0], 'credit_cap (ticks)');
  a.label('status', 'written by the running guest')
    .dd([0], 'status_magic ("DRTY" once running)')
    .dd([0], 'pages_written')
    .dd([0], 'sweeps')
    .dd([0], 'effective_end');
  if (a.offset !== GUEST_OFFSETS.code) throw new Error('guest layout drifted');

  a.label('entry', 'EAX = 0x2BADB002, EBX = Multiboot info, 32-bit flat, paging off')
    .cli('no IDT: keep interrupts masked')
    .movImm8('al', 0x34)
    .outAl(0x43, 'PIT channel 0: lobyte/hibyte, mode 2 (rate generator), binary')
    .movImm8('al', 0x00)
    .outAl(0x40, 'reload value 0 = 65536 ...')
    .outAl(0x40, '... so the count wraps every 65536 ticks')
    .load('esi', SYM.regionStart, 'ESI = current page')
    .load('edi', SYM.regionEnd, 'EDI = end of the region')
    .loadIndirect('eax', 'ebx', 0, 'Multiboot info flags')
    .testImm('eax', 1, 'bit 0: mem_lower / mem_upper valid?')
    .jcc('e', 'clamped')
    .loadIndirect('edx', 'ebx', 8, 'mem_upper: KiB of RAM above 1 MiB')
    .shlImm('edx', 10)
    .addImm('edx', 0x100000, 'EDX = end of RAM')
    .cmp('edi', 'edx')
    .jcc('be', 'clamped')
    .mov('edi', 'edx', 'the region ends where RAM ends')
    .label('clamped')
    .store(SYM.effectiveEnd, 'edi')
    .movImm('eax', GUEST_STATUS_MAGIC)
    .store(SYM.statusMagic, 'eax', 'tell the host we run')
    .load('ecx', SYM.ticksPerPage, 'ECX = ticks per page')
    .xor('ebp', 'ebp', 'EBP = tick credit')
    .test('ecx', 'ecx')
    .jcc('e', 'fast', 'rate 0: no pacing');
  emitReadPit(a, 'ebx');
  a.label('paced', 'EBX = previous count');
  emitReadPit(a, 'edx');
  a.mov('eax', 'ebx')
    .sub('eax', 'edx')
    .andImm('eax', 0xffff, 'EAX = ticks since the last read (mod 65536)')
    .mov('ebx', 'edx')
    .add('ebp', 'eax', 'credit += elapsed ticks')
    .cmpMem('ebp', SYM.creditCap)
    .jcc('be', 'burst')
    .load('ebp', SYM.creditCap, 'no bursts after a stall')
    .label('burst')
    .cmp('ebp', 'ecx')
    .jcc('b', 'paced', 'not enough credit for a page: poll the PIT again')
    .sub('ebp', 'ecx', 'pay for one page');
  emitWritePage(a, 'paced', 'burst');
  a.label('fast', 'unpaced: write pages as fast as the vCPU runs');
  emitWritePage(a, 'fast', 'fast');
  return a;
}

function validate(opts: GuestImageOptions): void {
  const { dirtyMiB, rateMiBps } = opts;
  if (!Number.isInteger(dirtyMiB) || dirtyMiB < 1 || dirtyMiB > MAX_DIRTY_MIB) {
    throw new RangeError(`dirtyMiB must be an integer from 1 to ${MAX_DIRTY_MIB}, got ${dirtyMiB}`);
  }
  if (typeof rateMiBps !== 'number' || !Number.isFinite(rateMiBps) || rateMiBps < 0) {
    throw new RangeError(`rateMiBps must be a number >= 0 (0 = as fast as possible), got ${rateMiBps}`);
  }
}

/** PIT ticks per 4 KiB page for a rate in MiB/s (0 = unpaced). */
export function ticksPerPageFor(rateMiBps: number): number {
  if (rateMiBps === 0) return 0;
  return Math.max(1, Math.round(PIT_HZ / (rateMiBps * (1048576 / GUEST_PAGE_SIZE))));
}

/**
 * Builds the guest image: a flat Multiboot kernel for `qemu-system-x86_64 -kernel`.
 * The guest needs RAM beyond the region: at least {@link guestMemoryMiBFor}`(dirtyMiB)`.
 * @throws RangeError on a region size or rate out of range.
 */
export function buildGuestImage(opts: GuestImageOptions): Buffer {
  validate(opts);
  const a = assemble();
  const image = a.finish();
  const ticks = ticksPerPageFor(opts.rateMiBps);
  image.writeUInt32LE(GUEST_LOAD_ADDRESS + image.length, GUEST_OFFSETS.loadEndAddr);
  image.writeUInt32LE(a.addressOf('entry'), GUEST_OFFSETS.entryAddr);
  image.writeUInt32LE(GUEST_REGION_START, GUEST_OFFSETS.regionStart);
  image.writeUInt32LE(GUEST_REGION_START + opts.dirtyMiB * 1048576, GUEST_OFFSETS.regionEnd);
  image.writeUInt32LE(ticks, GUEST_OFFSETS.ticksPerPage);
  image.writeUInt32LE(
    Math.max(ticks, Math.round((PIT_HZ * GUEST_CREDIT_CAP_MS) / 1000)),
    GUEST_OFFSETS.creditCap,
  );
  return image;
}

/** Builds the image ({@link buildGuestImage}) and writes it to `path`. */
export function writeGuestImage(path: string, opts: GuestImageOptions): void {
  writeFileSync(path, buildGuestImage(opts));
}

/** Smallest guest RAM (MiB) that holds the kernel and a region of `dirtyMiB`, with headroom. */
export function guestMemoryMiBFor(dirtyMiB: number): number {
  return GUEST_REGION_START / 1048576 + dirtyMiB + 8;
}

/** Reads the patched parameters back from an image built by {@link buildGuestImage}. */
export function readGuestImageParams(image: Buffer): GuestImageParams {
  if (image.length < GUEST_OFFSETS.code || image.readUInt32LE(0) !== MULTIBOOT_MAGIC) {
    throw new Error('not a dirty-memory guest image (no Multiboot magic at offset 0)');
  }
  const regionStart = image.readUInt32LE(GUEST_OFFSETS.regionStart);
  const regionEnd = image.readUInt32LE(GUEST_OFFSETS.regionEnd);
  const ticksPerPage = image.readUInt32LE(GUEST_OFFSETS.ticksPerPage);
  return {
    regionStart,
    regionEnd,
    ticksPerPage,
    creditCap: image.readUInt32LE(GUEST_OFFSETS.creditCap),
    dirtyMiB: (regionEnd - regionStart) / 1048576,
    rateMiBps: ticksPerPage === 0 ? 0 : PIT_HZ / ticksPerPage / (1048576 / GUEST_PAGE_SIZE),
  };
}

/**
 * Decodes the guest's status block from the four words HMP `xp /4wx 0x100030` prints
 * (or from any 16 bytes read at {@link GUEST_STATUS_ADDRESS}).
 */
export function parseGuestStatus(words: readonly number[]): GuestStatus {
  if (words.length < 4) throw new Error(`need 4 status words, got ${words.length}`);
  return {
    running: words[0] === GUEST_STATUS_MAGIC,
    pagesWritten: words[1]!,
    sweeps: words[2]!,
    effectiveEnd: words[3]!,
  };
}

/**
 * Parses the text of HMP `xp /4wx <addr>` (`0000000000100030: 0x59545244 0x00000005 …`)
 * into 32-bit words.
 */
export function parseXpWords(text: string): number[] {
  const words: number[] = [];
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*[0-9a-f]+:\s*(.*)$/i.exec(line);
    if (!m) continue;
    for (const w of m[1]!.trim().split(/\s+/))
      if (/^0x[0-9a-f]+$/i.test(w)) words.push(Number.parseInt(w, 16));
  }
  return words;
}

/** The assembly listing of the kernel (addresses, bytes, source, comments). */
export function guestListing(): string {
  return formatListing(guestListingLines(), GUEST_LOAD_ADDRESS);
}

/** The listing lines of the kernel, with label references resolved. */
export function guestListingLines(): ListingLine[] {
  const a = assemble();
  a.finish();
  return a.listing();
}
