/**
 * POSIX shell word splitting without expansion (Python's `shlex.split`, which Ganeti uses
 * for `kvm_extra` since #1713): blanks separate words, single quotes keep everything,
 * double quotes keep everything but `\"`, `\\`, `\$`, `` \` `` and `\<newline>`, a backslash
 * outside quotes escapes the next character.
 */

/** Thrown for an unterminated quote or a trailing backslash; `message` says which. */
export class ShellSplitError extends Error {
  override name = 'ShellSplitError';
}

/** Splits `text` into words. */
export function shellSplit(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
      i += 1;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new ShellSplitError(`unterminated single quote at character ${i + 1}`);
      word += text.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= text.length) throw new ShellSplitError(`unterminated double quote at character ${i + 1}`);
        const d = text[j]!;
        if (d === '"') break;
        if (d === '\\' && j + 1 < text.length && '"\\$`\n'.includes(text[j + 1]!)) {
          if (text[j + 1] !== '\n') word += text[j + 1];
          j += 2;
        } else {
          word += d;
          j += 1;
        }
      }
      inWord = true;
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new ShellSplitError('trailing backslash');
      if (text[i + 1] !== '\n') {
        word += text[i + 1];
        inWord = true;
      }
      i += 2;
    } else {
      word += c;
      inWord = true;
      i += 1;
    }
  }
  if (inWord) words.push(word);
  return words;
}
