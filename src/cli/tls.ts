/**
 * The TLS options of `kvm-hv accept` and `kvm-hv migrate`: the node's certificate
 * directory (QEMU's x509 layout), and the destination's allowed peers or the source's
 * expected server name. They become `KVMHypervisorOptions.tls`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { MigrationGuardOptions } from '../guard/guard.js';
import { checkTlsOptions, type MigrationTlsOptions } from '../tls/config.js';
import { certificateDn } from '../tls/dn.js';
import { UsageError } from './errors.js';
import { collect, print, printJson } from './util.js';

/** The parsed TLS options of a command. */
export interface TlsCliOptions {
  tlsDir?: string;
  tlsPeer?: string[];
  tlsHostname?: string;
  tlsAllowInsecureKey?: boolean;
  /** `--no-migration-guard` sets it false (commander's default for a negated flag is true). */
  migrationGuard?: boolean;
  guardAllow?: string[];
}

/** Adds `--no-migration-guard` and `--guard-allow` (both sides; docs/security.md). */
function guardOptions(cmd: Command): Command {
  return cmd
    .option(
      '--no-migration-guard',
      "use QEMU's own TLS instead of the migration guard (a silent peer can then freeze QEMU: firewall the port)",
    )
    .option(
      '--guard-allow <addr>',
      'destination: admit migration connections only from this source address (repeatable; turns the guard on in clear too)',
      collect,
    );
}

/** `KVMHypervisorOptions.migrationGuard` from the command's options (undefined: the default). */
export function guardFromCli(opts: TlsCliOptions): MigrationGuardOptions | false | undefined {
  if (opts.migrationGuard === false) {
    if (opts.guardAllow) throw new UsageError('--guard-allow and --no-migration-guard contradict each other');
    return false;
  }
  return opts.guardAllow ? { allowedAddresses: opts.guardAllow } : undefined;
}

const INSECURE_KEY_HELP =
  'with --tls-dir: use a private key that group or others can read, with a warning (default: refused)';

const DIR_HELP =
  "migrate over TLS with this node's certificate directory (ca-cert.pem, server-*.pem, client-*.pem)";

/** Adds `--tls-dir` and `--tls-peer` (destination side). */
export function destinationTlsOptions(cmd: Command): Command {
  return guardOptions(cmd)
    .option('--tls-dir <dir>', `${DIR_HELP}; needs --listen`)
    .option(
      '--tls-peer <dn>',
      'with --tls-dir: accept only a source whose client certificate has this DN, e.g. CN=node1 (repeatable; QEMU 4.0+)',
      collect,
    )
    .option('--tls-allow-insecure-key', INSECURE_KEY_HELP);
}

/** Adds `--tls-dir` and `--tls-hostname` (source side). */
export function sourceTlsOptions(cmd: Command): Command {
  return guardOptions(cmd)
    .option('--tls-dir <dir>', DIR_HELP)
    .option(
      '--tls-hostname <name>',
      "with --tls-dir: the name the destination's server certificate must carry (default: --target)",
    )
    .option('--tls-allow-insecure-key', INSECURE_KEY_HELP);
}

/** `KVMHypervisorOptions.tls` from the command's options, or undefined without `--tls-dir`. */
export function tlsFromCli(opts: TlsCliOptions): MigrationTlsOptions | undefined {
  if (opts.tlsDir === undefined) {
    if (opts.tlsPeer || opts.tlsHostname || opts.tlsAllowInsecureKey)
      throw new UsageError('--tls-peer, --tls-hostname and --tls-allow-insecure-key need --tls-dir');
    return undefined;
  }
  const tls: MigrationTlsOptions = {
    dir: opts.tlsDir,
    ...(opts.tlsPeer ? { allowedPeers: opts.tlsPeer } : {}),
    ...(opts.tlsHostname ? { hostname: opts.tlsHostname } : {}),
    ...(opts.tlsAllowInsecureKey ? { allowInsecureKeyPermissions: true } : {}),
  };
  // Before any monitor is opened: a bad value fails fast, naming it.
  checkTlsOptions(tls);
  return tls;
}

/**
 * `kvm-hv tls dn CERT…`: the subject of each certificate as QEMU matches it, which is what
 * `--tls-peer` / `allowedPeers` takes (certificate order; the reverse order that openssl's
 * RFC 2253 output shows is accepted too, except over HMP before QEMU 6.0).
 */
export function registerTlsCommand(program: Command): void {
  program
    .command('tls')
    .description('helpers for migration TLS')
    .command('dn')
    .argument('<cert...>', "PEM certificate files (e.g. a node's client-cert.pem)")
    .option('--json', 'print one JSON document on stdout')
    .description("print each certificate's subject as QEMU matches it (the value of --tls-peer)")
    .action((certs: string[], opts: { json?: boolean }) => {
      const dns = certs.map((file) => {
        let pem: Buffer;
        try {
          pem = readFileSync(file);
        } catch (e) {
          throw new UsageError(
            `tls dn: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
          );
        }
        try {
          return { file, dn: certificateDn(pem) };
        } catch (e) {
          throw new UsageError(
            `tls dn: ${file} is not a PEM certificate (${e instanceof Error ? e.message : String(e)})`,
          );
        }
      });
      if (opts.json) printJson(dns);
      else for (const d of dns) print(d.dn);
    });
}
