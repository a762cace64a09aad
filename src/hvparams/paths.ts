/**
 * Path and URL predicates with Python's semantics (`os.path.normpath`, Ganeti's `IsUrl`).
 */

/**
 * POSIX `os.path.normpath`: collapses `//`, `.` and `..`, drops a trailing `/`. Exactly two
 * leading slashes are kept, as POSIX allows them an implementation-defined meaning.
 */
function normPath(path: string): string {
  if (path === '') return '.';
  let leadingSlashes = path.startsWith('/') ? 1 : 0;
  if (path.startsWith('//') && !path.startsWith('///')) leadingSlashes = 2;
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    const last = parts[parts.length - 1];
    if (part !== '..' || (leadingSlashes === 0 && parts.length === 0) || last === '..') parts.push(part);
    else if (parts.length > 0) parts.pop();
  }
  const joined = '/'.repeat(leadingSlashes) + parts.join('/');
  return joined === '' ? '.' : joined;
}

/** Ganeti's `IsNormAbsPath`: absolute and already normalized (`/a/../b` and `/a/` fail). */
export function isNormAbsPath(path: string): boolean {
  return path.startsWith('/') && normPath(path) === path;
}

/** Ganeti's `IsUrl`: starts with `http://`, `https://`, `ftp://` or `ftps://`. */
export function isUrl(value: string): boolean {
  return /^(?:https?|ftps?):\/\//.test(value);
}
