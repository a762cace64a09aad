import { describe, expect, it } from 'vitest';
import { Assembler, formatListing } from '../../src/testing/guest/x86.js';

const bytes = (f: (a: Assembler) => void, origin = 0x1000) => {
  const a = new Assembler(origin);
  f(a);
  return [...a.finish()];
};

describe('x86 encoder', () => {
  it.each<[string, (a: Assembler) => void, number[]]>([
    ['mov eax, imm32', (a) => a.movImm('eax', 0x12345678), [0xb8, 0x78, 0x56, 0x34, 0x12]],
    ['mov edi, imm32', (a) => a.movImm('edi', 1), [0xbf, 1, 0, 0, 0]],
    ['mov al, imm8', (a) => a.movImm8('al', 0x34), [0xb0, 0x34]],
    ['mov dh, imm8', (a) => a.movImm8('dh', 0xff), [0xb6, 0xff]],
    ['mov edi, edx', (a) => a.mov('edi', 'edx'), [0x89, 0xd7]],
    ['mov dh, al', (a) => a.mov8('dh', 'al'), [0x88, 0xc6]],
    ['mov esi, [abs]', (a) => a.load('esi', 0x100020), [0x8b, 0x35, 0x20, 0x00, 0x10, 0x00]],
    ['mov [abs], edi', (a) => a.store(0x10003c, 'edi'), [0x89, 0x3d, 0x3c, 0x00, 0x10, 0x00]],
    ['mov [esi], eax', (a) => a.storeIndirect('esi', 'eax'), [0x89, 0x06]],
    ['mov edx, [ebx+8]', (a) => a.loadIndirect('edx', 'ebx', 8), [0x8b, 0x53, 0x08]],
    ['mov eax, [ebp-4]', (a) => a.loadIndirect('eax', 'ebp', -4), [0x8b, 0x45, 0xfc]],
    ['movzx ebx, dx', (a) => a.movzx16('ebx', 'edx'), [0x0f, 0xb7, 0xda]],
    ['add esi, 0x1000', (a) => a.addImm('esi', 0x1000), [0x81, 0xc6, 0x00, 0x10, 0x00, 0x00]],
    ['add eax, 8 (imm8 form)', (a) => a.addImm('eax', 8), [0x83, 0xc0, 0x08]],
    ['and eax, 0xffff', (a) => a.andImm('eax', 0xffff), [0x81, 0xe0, 0xff, 0xff, 0, 0]],
    ['cmp ecx, -1 (imm8 form)', (a) => a.cmpImm('ecx', -1), [0x83, 0xf9, 0xff]],
    ['add ebp, eax', (a) => a.add('ebp', 'eax'), [0x01, 0xc5]],
    ['sub eax, edx', (a) => a.sub('eax', 'edx'), [0x29, 0xd0]],
    ['xor ebp, ebp', (a) => a.xor('ebp', 'ebp'), [0x31, 0xed]],
    ['cmp esi, edi', (a) => a.cmp('esi', 'edi'), [0x39, 0xfe]],
    ['test ecx, ecx', (a) => a.test('ecx', 'ecx'), [0x85, 0xc9]],
    ['test eax, 1', (a) => a.testImm('eax', 1), [0xf7, 0xc0, 1, 0, 0, 0]],
    ['shl edx, 10', (a) => a.shlImm('edx', 10), [0xc1, 0xe2, 0x0a]],
    ['cmp ebp, [abs]', (a) => a.cmpMem('ebp', 0x10002c), [0x3b, 0x2d, 0x2c, 0x00, 0x10, 0x00]],
    ['inc dword [abs]', (a) => a.incMem(0x100034), [0xff, 0x05, 0x34, 0x00, 0x10, 0x00]],
    ['out 0x43, al', (a) => a.outAl(0x43), [0xe6, 0x43]],
    ['in al, 0x40', (a) => a.inAl(0x40), [0xe4, 0x40]],
    ['cli; hlt', (a) => a.cli().hlt(), [0xfa, 0xf4]],
  ])('%s', (_name, f, expected) => {
    expect(bytes(f)).toEqual(expected);
  });

  it('resolves backward and forward jumps relative to the next instruction', () => {
    const code = bytes((a) => a.label('top').jmp('top').jcc('b', 'end').hlt().label('end'));
    // jmp top: E9, rel = 0 - 5 = -5
    expect(code.slice(0, 5)).toEqual([0xe9, 0xfb, 0xff, 0xff, 0xff]);
    // jb end: 0F 82, rel = 12 - 11 = 1 (skips the hlt)
    expect(code.slice(5, 11)).toEqual([0x0f, 0x82, 0x01, 0x00, 0x00, 0x00]);
  });

  it('resolves label addresses against the origin', () => {
    const a = new Assembler(0x100000);
    a.load('eax', 'data').label('data').dd([7]);
    const code = [...a.finish()];
    expect(code.slice(2, 6)).toEqual([0x06, 0x00, 0x10, 0x00]);
    expect(a.addressOf('data')).toBe(0x100006);
  });

  it('fails on undefined and duplicate labels', () => {
    expect(() => bytes((a) => a.jmp('nowhere'))).toThrow(/undefined label 'nowhere'/);
    expect(() => bytes((a) => a.label('x').label('x'))).toThrow(/defined twice/);
  });

  it('rejects operands it cannot encode', () => {
    expect(() => bytes((a) => a.movImm8('al', 256))).toThrow(RangeError);
    expect(() => bytes((a) => a.movImm('eax', 2 ** 32))).toThrow(RangeError);
    expect(() => bytes((a) => a.storeIndirect('ebp', 'eax'))).toThrow(/SIB|disp8/);
    expect(() => bytes((a) => a.loadIndirect('eax', 'ebx', 200))).toThrow(/disp8/);
    expect(() => bytes((a) => a.shlImm('eax', 32))).toThrow(/shift/);
  });

  it('formats a listing with addresses, patched bytes and comments', () => {
    const a = new Assembler(0x100000);
    a.label('loop', 'top').cli('mask').jmp('loop');
    a.finish();
    const text = formatListing(a.listing(), a.origin);
    expect(text.split('\n')).toEqual([
      expect.stringMatching(/^00100000 +loop: +; top$/),
      expect.stringMatching(/^00100000 {2}fa +cli +; mask$/),
      expect.stringMatching(/^00100001 {2}e9 fa ff ff ff +jmp loop$/),
    ]);
  });
});
