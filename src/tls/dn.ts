/**
 * X.509 distinguished names in the form QEMU compares them (`tls-authz`): the relative
 * names in the certificate's own order, joined by commas (`O=Example,CN=node1`), which is
 * the reverse of what `openssl x509 -subject -nameopt RFC2253` prints. Pure.
 */
import { X509Certificate } from 'node:crypto';

/** Splits a DN at its unescaped commas (`\,` stays inside a value). */
export function dnParts(dn: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < dn.length; i++) {
    const c = dn[i];
    if (c === '\\' && i + 1 < dn.length) {
      cur += c + dn[i + 1];
      i++;
    } else if (c === ',') {
      parts.push(cur.trim());
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur.trim());
  return parts;
}

/**
 * The DN and, when it has more than one relative name, the same names in the reverse
 * order: QEMU matches the certificate's order only, and RFC 2253 tools print the reverse,
 * so an allowed peer written either way is accepted.
 */
export function dnOrders(dn: string): string[] {
  const parts = dnParts(dn);
  if (parts.length < 2) return [dn];
  const reversed = [...parts].reverse().join(',');
  const same = parts.join(',');
  return reversed === same ? [dn] : [dn, reversed];
}

/** A value escaped as in a DN string (RFC 4514 specials). */
const escapeValue = (v: string): string =>
  v
    .replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
    .replace(/^([ #])/, '\\$1')
    .replace(/ $/, '\\ ');

/**
 * The subject of a PEM certificate as QEMU prints and matches it (`allowedPeers`, the
 * `--tls-peer` value): certificate order, comma-joined. Throws on a file that is not a
 * PEM certificate, with the parser's reason.
 */
export function certificateDn(pem: string | Buffer): string {
  const cert = new X509Certificate(pem);
  // Node prints one relative name per line, in the certificate's order.
  return cert.subject
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const eq = l.indexOf('=');
      return eq < 0 ? l : `${l.slice(0, eq)}=${escapeValue(l.slice(eq + 1))}`;
    })
    .join(',');
}
