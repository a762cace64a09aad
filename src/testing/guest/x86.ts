/**
 * A tiny 32-bit x86 assembler: just the instructions the dirty-memory guest needs, each
 * method emitting the machine code of one instruction and a line of Intel-syntax listing.
 *
 * Labels may be used before they are defined; {@link Assembler.finish} patches every
 * reference (relative jumps and absolute addresses) once the whole program is laid out.
 * The code is meant to run in 32-bit protected mode with flat segments, as Multiboot
 * loaders leave the CPU, so every address is a plain 32-bit linear address.
 */

/** The eight 32-bit general-purpose registers, in encoding order. */
const REG32 = ['eax', 'ecx', 'edx', 'ebx', 'esp', 'ebp', 'esi', 'edi'] as const;
/** A 32-bit general-purpose register. */
export type Reg32 = (typeof REG32)[number];
/** The eight 8-bit registers, in encoding order. */
const REG8 = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'] as const;
/** An 8-bit register. */
export type Reg8 = (typeof REG8)[number];

/** Conditions of `jcc`, with their opcode nibble (`0F 80+cc`). */
const CONDITIONS = { o: 0x0, b: 0x2, ae: 0x3, e: 0x4, ne: 0x5, be: 0x6, a: 0x7 } as const;
/** A `jcc` condition (unsigned comparisons only). */
export type Condition = keyof typeof CONDITIONS;

/** An absolute memory operand: a fixed address, or the address of a label. */
export type MemRef = number | string;

/** One line of the assembler listing. */
export interface ListingLine {
  /** Offset of the first byte from the start of the image. */
  offset: number;
  /** The machine code (after label patching once {@link Assembler.finish} ran). */
  bytes: number[];
  /** Intel-syntax text, or `name:` for a label line. */
  text: string;
  /** Free comment, shown after `;` in {@link formatListing}. */
  comment?: string;
}

interface Fixup {
  /** Offset of the 4-byte field to patch. */
  at: number;
  /** `rel32`: target − end of instruction; `abs32`: origin + label offset. */
  kind: 'rel32' | 'abs32';
  label: string;
  /** For rel32: the offset of the end of the instruction. */
  end: number;
  /** The listing line to refresh. */
  line: ListingLine;
}

const hex = (n: number, width = 0) => '0x' + (n >>> 0).toString(16).padStart(width, '0');

function u32(n: number): number[] {
  if (!Number.isInteger(n) || n < -0x80000000 || n > 0xffffffff) {
    throw new RangeError(`not a 32-bit value: ${n}`);
  }
  const v = n >>> 0;
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

function u8(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new RangeError(`not an 8-bit value: ${n}`);
  return n;
}

const r32 = (r: Reg32) => REG32.indexOf(r);
const r8 = (r: Reg8) => REG8.indexOf(r);
/** ModRM byte. */
const modrm = (mod: number, reg: number, rm: number) => (mod << 6) | (reg << 3) | rm;

/**
 * Assembles 32-bit x86 code for a fixed load address (`origin`). Each instruction method
 * appends to the image and returns `this`, so short sequences read like a listing.
 */
export class Assembler {
  /** The linear address the first byte will be loaded at. */
  readonly origin: number;
  private readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: Fixup[] = [];
  private readonly lines: ListingLine[] = [];

  /** @param origin linear address of the first byte of the image. */
  constructor(origin: number) {
    this.origin = origin;
  }

  /** Current offset from the start of the image. */
  get offset(): number {
    return this.bytes.length;
  }

  /** Defines `name` at the current offset. Each label may be defined once. */
  label(name: string, comment?: string): this {
    if (this.labels.has(name)) throw new Error(`label '${name}' defined twice`);
    this.labels.set(name, this.offset);
    this.lines.push({ offset: this.offset, bytes: [], text: `${name}:`, ...(comment ? { comment } : {}) });
    return this;
  }

  /** The offset of a defined label. */
  offsetOf(name: string): number {
    const at = this.labels.get(name);
    if (at === undefined) throw new Error(`undefined label '${name}'`);
    return at;
  }

  /** The linear address of a defined label (`origin + offset`). */
  addressOf(name: string): number {
    return this.origin + this.offsetOf(name);
  }

  private emit(code: number[], text: string, comment?: string): ListingLine {
    const line: ListingLine = { offset: this.offset, bytes: code, text, ...(comment ? { comment } : {}) };
    this.bytes.push(...code);
    this.lines.push(line);
    return line;
  }

  /** Emits `code` whose last 4 bytes are an absolute address (a number or a label). */
  private emitWithAddress(
    prefix: number[],
    mem: MemRef,
    text: string,
    comment?: string,
    suffix: number[] = [],
  ) {
    const start = this.offset;
    const addr = typeof mem === 'number' ? u32(mem) : [0, 0, 0, 0];
    const line = this.emit([...prefix, ...addr, ...suffix], text, comment);
    if (typeof mem === 'string') {
      this.fixups.push({ at: start + prefix.length, kind: 'abs32', label: mem, end: 0, line });
    }
  }

  private memText(mem: MemRef): string {
    return typeof mem === 'number' ? `[${hex(mem)}]` : `[${mem}]`;
  }

  /** Appends raw 32-bit little-endian data words (`dd`). */
  dd(values: number[], comment?: string): this {
    this.emit(values.flatMap(u32), `dd ${values.map((v) => hex(v, 8)).join(', ')}`, comment);
    return this;
  }

  /** Appends `count` zero bytes, or pads with `fill` (`times N db X`). */
  fill(count: number, fill = 0, comment?: string): this {
    if (count > 0) this.emit(Array(count).fill(u8(fill)), `times ${count} db ${hex(fill, 2)}`, comment);
    return this;
  }

  /** Pads with zero bytes up to the next multiple of `n`. */
  align(n: number, comment?: string): this {
    return this.fill((n - (this.offset % n)) % n, 0, comment);
  }

  /** `cli`: mask maskable interrupts. */
  cli(comment?: string): this {
    this.emit([0xfa], 'cli', comment);
    return this;
  }

  /** `hlt`: stop until the next interrupt. */
  hlt(comment?: string): this {
    this.emit([0xf4], 'hlt', comment);
    return this;
  }

  /** `mov r32, imm32` (`B8+r id`). */
  movImm(dst: Reg32, imm: number, comment?: string): this {
    this.emit([0xb8 + r32(dst), ...u32(imm)], `mov ${dst}, ${hex(imm)}`, comment);
    return this;
  }

  /** `mov r8, imm8` (`B0+r ib`). */
  movImm8(dst: Reg8, imm: number, comment?: string): this {
    this.emit([0xb0 + r8(dst), u8(imm)], `mov ${dst}, ${hex(imm)}`, comment);
    return this;
  }

  /** `mov r32, r32` (`89 /r`). */
  mov(dst: Reg32, src: Reg32, comment?: string): this {
    this.emit([0x89, modrm(3, r32(src), r32(dst))], `mov ${dst}, ${src}`, comment);
    return this;
  }

  /** `mov r8, r8` (`88 /r`). */
  mov8(dst: Reg8, src: Reg8, comment?: string): this {
    this.emit([0x88, modrm(3, r8(src), r8(dst))], `mov ${dst}, ${src}`, comment);
    return this;
  }

  /** `mov r32, [addr]` (`8B /r`, disp32). */
  load(dst: Reg32, mem: MemRef, comment?: string): this {
    this.emitWithAddress([0x8b, modrm(0, r32(dst), 5)], mem, `mov ${dst}, ${this.memText(mem)}`, comment);
    return this;
  }

  /** `mov r32, [base + disp8]` (`8B /r`, mod 01); `base` must not be esp. */
  loadIndirect(dst: Reg32, base: Reg32, disp: number, comment?: string): this {
    if (base === 'esp') throw new Error('[esp + disp] needs a SIB byte');
    if (!Number.isInteger(disp) || disp < -128 || disp > 127) throw new RangeError(`not a disp8: ${disp}`);
    this.emit(
      [0x8b, modrm(1, r32(dst), r32(base)), disp & 0xff],
      `mov ${dst}, [${base}${disp < 0 ? '-' : '+'}${hex(Math.abs(disp))}]`,
      comment,
    );
    return this;
  }

  /** `cmp r32, [addr]` (`3B /r`, disp32): flags of `reg − mem`. */
  cmpMem(a: Reg32, mem: MemRef, comment?: string): this {
    this.emitWithAddress([0x3b, modrm(0, r32(a), 5)], mem, `cmp ${a}, dword ${this.memText(mem)}`, comment);
    return this;
  }

  /** `mov [addr], r32` (`89 /r`, disp32). */
  store(mem: MemRef, src: Reg32, comment?: string): this {
    this.emitWithAddress([0x89, modrm(0, r32(src), 5)], mem, `mov ${this.memText(mem)}, ${src}`, comment);
    return this;
  }

  /** `mov [base], r32` (`89 /r`, no displacement); `base` must not be esp or ebp. */
  storeIndirect(base: Reg32, src: Reg32, comment?: string): this {
    if (base === 'esp' || base === 'ebp') throw new Error(`[${base}] needs a SIB byte or disp8`);
    this.emit([0x89, modrm(0, r32(src), r32(base))], `mov [${base}], ${src}`, comment);
    return this;
  }

  /** `movzx r32, r16` (`0F B7 /r`); `src` names the 32-bit register whose low half is read. */
  movzx16(dst: Reg32, src: Reg32, comment?: string): this {
    this.emit([0x0f, 0xb7, modrm(3, r32(dst), r32(src))], `movzx ${dst}, ${src.slice(1)}`, comment);
    return this;
  }

  private alu(ext: number, op: string, dst: Reg32, imm: number, comment?: string): this {
    const signed = imm | 0;
    if (signed >= -128 && signed <= 127) {
      this.emit([0x83, modrm(3, ext, r32(dst)), signed & 0xff], `${op} ${dst}, ${hex(imm)}`, comment);
    } else {
      this.emit([0x81, modrm(3, ext, r32(dst)), ...u32(imm)], `${op} ${dst}, ${hex(imm)}`, comment);
    }
    return this;
  }

  /** `add r32, imm` (`83 /0 ib` or `81 /0 id`). */
  addImm(dst: Reg32, imm: number, comment?: string): this {
    return this.alu(0, 'add', dst, imm, comment);
  }

  /** `and r32, imm` (`83 /4 ib` or `81 /4 id`). */
  andImm(dst: Reg32, imm: number, comment?: string): this {
    return this.alu(4, 'and', dst, imm, comment);
  }

  /** `cmp r32, imm` (`83 /7 ib` or `81 /7 id`). */
  cmpImm(dst: Reg32, imm: number, comment?: string): this {
    return this.alu(7, 'cmp', dst, imm, comment);
  }

  /** `add r32, r32` (`01 /r`). */
  add(dst: Reg32, src: Reg32, comment?: string): this {
    this.emit([0x01, modrm(3, r32(src), r32(dst))], `add ${dst}, ${src}`, comment);
    return this;
  }

  /** `sub r32, r32` (`29 /r`). */
  sub(dst: Reg32, src: Reg32, comment?: string): this {
    this.emit([0x29, modrm(3, r32(src), r32(dst))], `sub ${dst}, ${src}`, comment);
    return this;
  }

  /** `xor r32, r32` (`31 /r`). */
  xor(dst: Reg32, src: Reg32, comment?: string): this {
    this.emit([0x31, modrm(3, r32(src), r32(dst))], `xor ${dst}, ${src}`, comment);
    return this;
  }

  /** `cmp r32, r32` (`39 /r`): flags of `a − b`. */
  cmp(a: Reg32, b: Reg32, comment?: string): this {
    this.emit([0x39, modrm(3, r32(b), r32(a))], `cmp ${a}, ${b}`, comment);
    return this;
  }

  /** `test r32, r32` (`85 /r`). */
  test(a: Reg32, b: Reg32, comment?: string): this {
    this.emit([0x85, modrm(3, r32(b), r32(a))], `test ${a}, ${b}`, comment);
    return this;
  }

  /** `test r32, imm32` (`F7 /0 id`). */
  testImm(a: Reg32, imm: number, comment?: string): this {
    this.emit([0xf7, modrm(3, 0, r32(a)), ...u32(imm)], `test ${a}, ${hex(imm)}`, comment);
    return this;
  }

  /** `shl r32, imm8` (`C1 /4 ib`). */
  shlImm(dst: Reg32, count: number, comment?: string): this {
    if (!Number.isInteger(count) || count < 0 || count > 31)
      throw new RangeError(`bad shift count: ${count}`);
    this.emit([0xc1, modrm(3, 4, r32(dst)), count], `shl ${dst}, ${count}`, comment);
    return this;
  }

  /** `inc dword [addr]` (`FF /0`, disp32). */
  incMem(mem: MemRef, comment?: string): this {
    this.emitWithAddress([0xff, modrm(0, 0, 5)], mem, `inc dword ${this.memText(mem)}`, comment);
    return this;
  }

  /** `out imm8, al` (`E6 ib`). */
  outAl(port: number, comment?: string): this {
    this.emit([0xe6, u8(port)], `out ${hex(port)}, al`, comment);
    return this;
  }

  /** `in al, imm8` (`E4 ib`). */
  inAl(port: number, comment?: string): this {
    this.emit([0xe4, u8(port)], `in al, ${hex(port)}`, comment);
    return this;
  }

  private rel32(code: number[], label: string, text: string, comment?: string): this {
    const start = this.offset;
    const line = this.emit([...code, 0, 0, 0, 0], text, comment);
    this.fixups.push({ at: start + code.length, kind: 'rel32', label, end: this.offset, line });
    return this;
  }

  /** `jmp rel32` (`E9 cd`) to a label. */
  jmp(label: string, comment?: string): this {
    return this.rel32([0xe9], label, `jmp ${label}`, comment);
  }

  /** `jcc rel32` (`0F 80+cc cd`) to a label. */
  jcc(cond: Condition, label: string, comment?: string): this {
    return this.rel32([0x0f, 0x80 + CONDITIONS[cond]], label, `j${cond} ${label}`, comment);
  }

  /**
   * Resolves every label reference and returns the machine code. Throws on an undefined
   * label. The assembler can still be inspected ({@link listing}) afterwards.
   */
  finish(): Buffer {
    for (const f of this.fixups) {
      const target = this.offsetOf(f.label);
      const value = f.kind === 'rel32' ? target - f.end : this.origin + target;
      const patched = u32(value);
      for (let i = 0; i < 4; i++) {
        this.bytes[f.at + i] = patched[i]!;
        f.line.bytes[f.at - f.line.offset + i] = patched[i]!;
      }
    }
    return Buffer.from(this.bytes);
  }

  /** The listing so far: one line per instruction, label and data directive. */
  listing(): ListingLine[] {
    return this.lines.map((l) => ({ ...l, bytes: [...l.bytes] }));
  }
}

/**
 * Formats a listing like an assembler's `-l` output: address, bytes, source, comment.
 * Data runs longer than 8 bytes are shortened with `…`.
 */
export function formatListing(lines: ListingLine[], origin = 0): string {
  return lines
    .map((l) => {
      const addr = (origin + l.offset).toString(16).padStart(8, '0');
      const shown = l.bytes.slice(0, 8).map((b) => b.toString(16).padStart(2, '0'));
      const bytes = (shown.join(' ') + (l.bytes.length > 8 ? ' …' : '')).padEnd(26);
      const text = l.text.endsWith(':') ? l.text : `    ${l.text}`;
      const comment = l.comment ? `; ${l.comment}` : '';
      return `${addr}  ${bytes} ${text.padEnd(30)} ${comment}`.trimEnd();
    })
    .join('\n');
}
