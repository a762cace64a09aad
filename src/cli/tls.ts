/**
 * The TLS options of `kvm-hv accept` and `kvm-hv migrate`: the node's certificate
 * directory (QEMU's x509 layout), and the destination's allowed peers or the source's
 * expected server name. They become `KVMHypervisorOptions.tls`.
 */
import type { Command } from 'commander';
import { checkTlsOptions, type MigrationTlsOptions } from '../tls/config.js';
import { UsageError } from './errors.js';
import { collect } from './util.js';

/** The parsed TLS options of a command. */
export interface TlsCliOptions {
  tlsDir?: string;
  tlsPeer?: string[];
  tlsHostname?: string;
}

const DIR_HELP =
  "migrate over TLS with this node's certificate directory (ca-cert.pem, server-*.pem, client-*.pem)";

/** Adds `--tls-dir` and `--tls-peer` (destination side). */
export function destinationTlsOptions(cmd: Command): Command {
  return cmd
    .option('--tls-dir <dir>', `${DIR_HELP}; needs --listen`)
    .option(
      '--tls-peer <dn>',
      'with --tls-dir: accept only a source whose client certificate has this DN, e.g. CN=node1 (repeatable; QEMU 4.0+)',
      collect,
    );
}

/** Adds `--tls-dir` and `--tls-hostname` (source side). */
export function sourceTlsOptions(cmd: Command): Command {
  return cmd
    .option('--tls-dir <dir>', DIR_HELP)
    .option(
      '--tls-hostname <name>',
      "with --tls-dir: the name the destination's server certificate must carry (default: --target)",
    );
}

/** `KVMHypervisorOptions.tls` from the command's options, or undefined without `--tls-dir`. */
export function tlsFromCli(opts: TlsCliOptions): MigrationTlsOptions | undefined {
  if (opts.tlsDir === undefined) {
    if (opts.tlsPeer || opts.tlsHostname)
      throw new UsageError('--tls-peer and --tls-hostname need --tls-dir');
    return undefined;
  }
  const tls: MigrationTlsOptions = {
    dir: opts.tlsDir,
    ...(opts.tlsPeer ? { allowedPeers: opts.tlsPeer } : {}),
    ...(opts.tlsHostname ? { hostname: opts.tlsHostname } : {}),
  };
  // Before any monitor is opened: a bad value fails fast, naming it.
  checkTlsOptions(tls);
  return tls;
}
