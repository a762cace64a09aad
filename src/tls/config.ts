/**
 * The migration TLS configuration of a node: where its certificates live (QEMU's x509
 * directory layout), whether TLS is required, the host name to check and the peers the
 * destination accepts. Option checks are pure; file checks read certificates (never keys:
 * a key is only checked to be readable, its contents never reach an error or a log).
 */
import { X509Certificate } from 'node:crypto';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { TlsConfigError } from '../errors.js';

/** Migration over TLS, as `KVMHypervisorOptions.tls`. */
export interface MigrationTlsOptions {
  /**
   * Absolute path of the node's certificate directory in QEMU's layout: `ca-cert.pem`,
   * `server-cert.pem` + `server-key.pem` (used when this node is the destination) and
   * `client-cert.pem` + `client-key.pem` (when it is the source). QEMU reads the files
   * itself, so they must be readable by the QEMU process.
   */
  dir: string;
  /**
   * `true` (default): a QEMU or monitor dialect that cannot migrate over TLS is refused
   * with a `MigrationError` naming its version. `false`: such a QEMU migrates in clear and
   * a warning is logged (for a cluster being upgraded). It never relaxes the checks of
   * the certificates, nor `allowedPeers`.
   */
  required?: boolean;
  /**
   * Source side: the name the destination's server certificate must carry
   * (`tls-hostname`); default: the migration target as given to `migrateInstance`.
   */
  hostname?: string;
  /**
   * Destination side: the x509 distinguished names of the client certificates allowed
   * to feed this node (`tls-authz` with an `authz-list`, QEMU 4.0+), as QEMU prints them
   * in its refusal, e.g. `CN=node1.example.org` or `O=Example,CN=node1`. Without it any
   * certificate signed by the CA is accepted.
   */
  allowedPeers?: readonly string[];
  /**
   * `true`: a private key readable or writable by group or others (mode `0o077` bits set)
   * is used with a warning instead of refused. Default: refused, naming the file, its mode
   * and the `chmod` that fixes it.
   */
  allowInsecureKeyPermissions?: boolean;
}

/** The files of QEMU's x509 layout that each end needs. */
export const TLS_FILES = {
  server: ['ca-cert.pem', 'server-cert.pem', 'server-key.pem'],
  client: ['ca-cert.pem', 'client-cert.pem', 'client-key.pem'],
} as const;

/** Which end of a migration a node plays: QEMU's `endpoint` of `tls-creds-x509`. */
export type TlsEndpoint = keyof typeof TLS_FILES;

// Characters that would break out of a QEMU option string or a log line.
const CONTROL = /[\u0000-\u001f\u007f]/;
const HOST =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** Problems of the options themselves (no I/O); `[]` when they are usable. */
export function tlsOptionProblems(tls: MigrationTlsOptions): string[] {
  const problems: string[] = [];
  if (typeof tls.dir !== 'string' || tls.dir === '' || !isAbsolute(tls.dir)) {
    problems.push(`dir ${JSON.stringify(tls.dir)} is not an absolute path`);
  } else if (CONTROL.test(tls.dir)) {
    problems.push(`dir ${JSON.stringify(tls.dir)} contains a control character`);
  }
  if (tls.allowInsecureKeyPermissions !== undefined && typeof tls.allowInsecureKeyPermissions !== 'boolean') {
    problems.push(
      `allowInsecureKeyPermissions ${JSON.stringify(tls.allowInsecureKeyPermissions)} is not a boolean`,
    );
  }
  if (tls.required !== undefined && typeof tls.required !== 'boolean') {
    problems.push(`required ${JSON.stringify(tls.required)} is not a boolean`);
  }
  if (tls.hostname !== undefined && (typeof tls.hostname !== 'string' || !HOST.test(tls.hostname))) {
    problems.push(`hostname ${JSON.stringify(tls.hostname)} is not a host name`);
  }
  if (tls.allowedPeers !== undefined) {
    if (!Array.isArray(tls.allowedPeers) || tls.allowedPeers.length === 0) {
      problems.push(`allowedPeers ${JSON.stringify(tls.allowedPeers)} must be a non-empty list of DNs`);
    } else {
      for (const dn of tls.allowedPeers) {
        if (typeof dn !== 'string' || !/^[A-Za-z][\w.-]*=/.test(dn) || CONTROL.test(dn)) {
          problems.push(
            `allowedPeers entry ${JSON.stringify(dn)} is not a distinguished name (e.g. CN=node1)`,
          );
        }
      }
    }
  }
  return problems;
}

/** Throws {@link TlsConfigError} listing every problem of the options. */
export function checkTlsOptions(tls: MigrationTlsOptions): void {
  const problems = tlsOptionProblems(tls);
  if (problems.length > 0) throw new TlsConfigError(problems);
}

async function readable(path: string): Promise<string | undefined> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return `${path} is not a regular file`;
    await access(path, constants.R_OK);
    return undefined;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return `${path} is missing`;
    if (code === 'EACCES') return `${path} is not readable`;
    return `${path} cannot be read (${code ?? String(e)})`;
  }
}

async function certificate(path: string, problems: string[]): Promise<X509Certificate | undefined> {
  try {
    return new X509Certificate(await readFile(path));
  } catch (e) {
    problems.push(`${path} is not a PEM certificate (${e instanceof Error ? e.message : String(e)})`);
    return undefined;
  }
}

/** The key's mode when group or others may read or write it, else undefined. */
async function looseKeyMode(path: string): Promise<number | undefined> {
  const mode = (await stat(path)).mode & 0o777;
  return (mode & 0o077) === 0 ? undefined : mode;
}

/**
 * Checks the files `endpoint` needs in `tls.dir`: present and readable, the certificates
 * parse, are valid now, the node's certificate is issued and signed by `ca-cert.pem`, and
 * the private key is not readable or writable by group or others (refused unless
 * `allowInsecureKeyPermissions`; its contents are never read). Throws
 * {@link TlsConfigError} listing every problem, before anything is sent to QEMU; resolves
 * with the warnings (a loose key mode that was allowed).
 */
export async function checkTlsFiles(
  tls: MigrationTlsOptions,
  endpoint: TlsEndpoint,
  now: Date = new Date(),
): Promise<string[]> {
  const warnings: string[] = [];
  checkTlsOptions(tls);
  const problems: string[] = [];
  const [caFile, certFile] = TLS_FILES[endpoint].map((f) => join(tls.dir, f));
  for (const f of TLS_FILES[endpoint]) {
    const p = await readable(join(tls.dir, f));
    if (p) problems.push(p);
  }
  if (problems.length === 0) {
    const ca = await certificate(caFile!, problems);
    const cert = await certificate(certFile!, problems);
    for (const [file, c] of [
      [caFile!, ca],
      [certFile!, cert],
    ] as const) {
      if (!c) continue;
      if (new Date(c.validFrom) > now) problems.push(`${file} is not valid before ${c.validFrom}`);
      if (new Date(c.validTo) < now) problems.push(`${file} expired on ${c.validTo}`);
    }
    if (ca && cert && (!cert.checkIssued(ca) || !cert.verify(ca.publicKey))) {
      problems.push(`${certFile} is not signed by the CA in ${caFile} (${cert.issuer.replace(/\n/g, ',')})`);
    }
    const keyFile = join(tls.dir, TLS_FILES[endpoint][2]);
    const mode = await looseKeyMode(keyFile);
    if (mode !== undefined) {
      const text = `${keyFile} is readable or writable by group or others (mode 0${mode.toString(8)}): a private key must be 0600 (chmod 600 ${keyFile}; the QEMU process's user must still read it)`;
      if (tls.allowInsecureKeyPermissions === true) warnings.push(text);
      else problems.push(`${text}, or set allowInsecureKeyPermissions to use it anyway`);
    }
  }
  if (problems.length > 0) throw new TlsConfigError([`${endpoint} end: ${problems.join('; ')}`]);
  return warnings;
}
