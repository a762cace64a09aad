/**
 * Throwaway certificates for TLS migration (demo and tests), made with the `openssl`
 * command: one CA, and for each node a directory in QEMU's x509 layout with a server and
 * a client certificate signed by it. Not for production: keys are unencrypted and the CA
 * key stays beside them (in `<dir>/ca/`, outside the node directories).
 */
import { execFile } from 'node:child_process';
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { HypervisorError } from '../errors.js';

const run = promisify(execFile);

/** Options of {@link generateTestPki}. */
export interface TestPkiOptions {
  /** Folder to create the CA and the node directories in (created with mode 0700). */
  dir: string;
  /** Node names: one directory each, with certificates whose subject is `CN=<name>` (server) and `CN=<name>-client`. */
  nodes: readonly string[];
  /** The CA's common name (default `kvm-hypervisor test CA`). */
  caName?: string;
  /** Names and addresses the server certificates are valid for (default `localhost`, `127.0.0.1`, `::1`). */
  hosts?: readonly string[];
  /** Validity in days (default 2). */
  days?: number;
  /** The openssl binary (default `openssl` on the PATH). */
  openssl?: string;
  /**
   * An organization before the common name in every node subject (`/O=<org>/CN=<name>`),
   * for DNs of more than one name; `serverDn`/`clientDn` are then `O=<org>,CN=…`.
   */
  organization?: string;
}

/** One node's certificate directory. */
export interface TestPkiNode {
  /** QEMU's layout: `ca-cert.pem`, `server-cert.pem`, `server-key.pem`, `client-cert.pem`, `client-key.pem`. */
  dir: string;
  /** The server certificate's subject, as QEMU prints a DN (`CN=<name>`). */
  serverDn: string;
  /** The client certificate's subject (`CN=<name>-client`): what a destination's `allowedPeers` lists. */
  clientDn: string;
}

/** What {@link generateTestPki} made. */
export interface TestPki {
  /** The CA certificate (also copied into every node directory). */
  caCert: string;
  /** Each node by name. */
  nodes: Record<string, TestPkiNode>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/;

/** The install hint shown when `openssl` is missing. */
export const OPENSSL_INSTALL_HINT =
  'openssl not found: install it with `sudo apt-get install -y openssl` (Debian/Ubuntu) or `sudo dnf install -y openssl`';

async function openssl(bin: string, args: string[]): Promise<void> {
  try {
    await run(bin, args, { timeout: 30_000 });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new HypervisorError(OPENSSL_INSTALL_HINT);
    // openssl's stderr names files and options, never key material.
    throw new HypervisorError(
      `openssl ${args[0]} failed: ${(err.stderr ?? err.message).trim().slice(0, 500)}`,
    );
  }
}

function san(hosts: readonly string[]): string {
  return hosts.map((h) => (/^[\d.]+$/.test(h) || h.includes(':') ? `IP:${h}` : `DNS:${h}`)).join(',');
}

async function issue(
  bin: string,
  ca: { cert: string; key: string },
  out: { cert: string; key: string },
  subject: string,
  extensions: string,
  days: number,
  work: string,
): Promise<void> {
  const csr = `${out.cert}.csr`;
  const ext = `${out.cert}.ext`;
  await openssl(bin, [
    'req',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    out.key,
    '-out',
    csr,
    '-subj',
    subject,
  ]);
  await writeFile(ext, extensions);
  await openssl(bin, [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    ca.cert,
    '-CAkey',
    ca.key,
    '-CAcreateserial',
    '-CAserial',
    join(work, 'ca.srl'),
    '-out',
    out.cert,
    '-days',
    String(days),
    '-extfile',
    ext,
  ]);
  await chmod(out.key, 0o600);
  await rm(csr, { force: true });
  await rm(ext, { force: true });
}

/**
 * Makes a CA and, for each node, a directory `<dir>/<node>/` in QEMU's x509 layout
 * (ECDSA P-256 keys). Throws `HypervisorError` when `openssl` is missing or fails, or a
 * node name is not a plain host label.
 */
export async function generateTestPki(options: TestPkiOptions): Promise<TestPki> {
  const bin = options.openssl ?? 'openssl';
  const days = options.days ?? 2;
  const hosts = options.hosts ?? ['localhost', '127.0.0.1', '::1'];
  for (const n of options.nodes) {
    if (options.organization !== undefined && !NAME.test(options.organization))
      throw new HypervisorError(
        `test PKI: organization ${JSON.stringify(options.organization)} is not a plain label`,
      );
    if (!NAME.test(n) || n === 'ca')
      throw new HypervisorError(`test PKI: node name ${JSON.stringify(n)} is not a host label`);
  }
  await mkdir(options.dir, { recursive: true, mode: 0o700 });
  const caDir = join(options.dir, 'ca');
  await mkdir(caDir, { recursive: true, mode: 0o700 });
  const ca = { cert: join(caDir, 'ca-cert.pem'), key: join(caDir, 'ca-key.pem') };
  await openssl(bin, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    ca.key,
    '-out',
    ca.cert,
    '-days',
    String(days),
    '-subj',
    `/CN=${options.caName ?? 'kvm-hypervisor test CA'}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  await chmod(ca.key, 0o600);
  const nodes: Record<string, TestPkiNode> = {};
  for (const name of options.nodes) {
    const dir = join(options.dir, name);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await openssl(bin, ['x509', '-in', ca.cert, '-out', join(dir, 'ca-cert.pem')]);
    const usage = 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n';
    const org = options.organization === undefined ? '' : `/O=${options.organization}`;
    const dnOrg = options.organization === undefined ? '' : `O=${options.organization},`;
    await issue(
      bin,
      ca,
      { cert: join(dir, 'server-cert.pem'), key: join(dir, 'server-key.pem') },
      `${org}/CN=${name}`,
      `${usage}extendedKeyUsage=serverAuth\nsubjectAltName=${san(hosts)}\n`,
      days,
      caDir,
    );
    await issue(
      bin,
      ca,
      { cert: join(dir, 'client-cert.pem'), key: join(dir, 'client-key.pem') },
      `${org}/CN=${name}-client`,
      `${usage}extendedKeyUsage=clientAuth\n`,
      days,
      caDir,
    );
    nodes[name] = { dir, serverDn: `${dnOrg}CN=${name}`, clientDn: `${dnOrg}CN=${name}-client` };
  }
  return { caCert: ca.cert, nodes };
}
