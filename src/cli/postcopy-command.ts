/**
 * `kvm-hv postcopy pause|accept-recovery|resume NAME`: the post-copy recovery steps one
 * node at a time, for an operator bringing back a broken post-copy stream by hand (after
 * `kvm-hv migrate` or `runMigration` gave up: the VM is split between the hosts).
 */
import type { Command } from 'commander';
import { KVMHypervisor } from '../kvm.js';
import { migrationUri } from '../migration/uri.js';
import { UsageError } from './errors.js';
import { commandInstance, hvOption, monitorOptions, type VmOptions, withHypervisor } from './target.js';
import { loggerFor, numberArg, print, printJson } from './util.js';

interface PostcopyStepOptions extends VmOptions {
  hvparams?: string[];
  uri?: string;
  listen?: string;
  target?: string;
  port?: number;
  timeout?: number;
}

/** The URI of a step: `--uri`, else `host` with `--port` (default `migration_port + 1`). */
function stepUri(opts: PostcopyStepOptions, host: string | undefined, flag: string): string {
  if (opts.uri !== undefined) {
    if (host !== undefined || opts.port !== undefined) {
      throw new UsageError(`give either --uri or ${flag} (with --port), not both`);
    }
    return opts.uri;
  }
  if (host === undefined) throw new UsageError(`give --uri, or ${flag} (with --port)`);
  const instance = commandInstance(opts, opts.hvparams ?? []);
  const port = opts.port ?? KVMHypervisor.instanceParameters(instance).migration_port + 1;
  return migrationUri(host, port);
}

const stepOptions = (opts: PostcopyStepOptions) =>
  opts.timeout === undefined ? {} : { timeoutMs: opts.timeout * 1000 };

export function registerPostcopyCommand(program: Command): void {
  const postcopy = program
    .command('postcopy')
    .description(
      'recover a broken post-copy stream by hand: pause on both nodes, accept-recovery on the destination, resume on the source',
    )
    .addHelpText(
      'after',
      '\nIn post-copy the VM is split between the two hosts: stop neither QEMU. Once the network works,\n' +
        'run `postcopy pause` on both nodes, `postcopy accept-recovery --listen ADDR` on the destination,\n' +
        '`postcopy resume --target HOST` on the source (same --port on both; default migration_port + 1),\n' +
        'then `kvm-hv status` until completed, and finalize both ends as usual.',
    );
  const common = (c: Command) =>
    monitorOptions(c)
      .addOption(hvOption())
      .option('--timeout <seconds>', 'give up after this many seconds (default 30)', numberArg('--timeout'))
      .option('--json', 'print one JSON document on stdout');

  common(postcopy.command('pause'))
    .description("pause this node's post-copy migration (out of band over QMP); a no-op if paused already")
    .action(async (opts: PostcopyStepOptions, cmd: Command) => {
      await withHypervisor(opts, loggerFor(cmd), async (hv, name) => {
        const r = await hv.pausePostcopy(commandInstance(opts, opts.hvparams ?? []), stepOptions(opts));
        if (opts.json) printJson({ instance: name, ...r });
        else print(`post-copy of '${name}': ${r.action} (status: ${r.status ?? 'unknown'})`);
      });
    });

  common(postcopy.command('accept-recovery'))
    .description('destination: listen for the source again (migrate-recover); requires postcopy-paused')
    .option('--listen <address>', "this node's address to listen on")
    .option('--port <port>', 'port to listen on (default: migration_port + 1)', numberArg('--port'))
    .option('--uri <uri>', 'the whole URI instead (e.g. tcp:0.0.0.0:8103)')
    .action(async (opts: PostcopyStepOptions, cmd: Command) => {
      const uri = stepUri(opts, opts.listen, '--listen');
      await withHypervisor(opts, loggerFor(cmd), async (hv, name) => {
        const r = await hv.acceptPostcopyRecovery(
          commandInstance(opts, opts.hvparams ?? []),
          uri,
          stepOptions(opts),
        );
        if (opts.json) printJson({ instance: name, ...r });
        else
          print(
            `'${name}' ${r.action} on ${r.uri} (status: ${r.status ?? 'unknown'}); resume the source now`,
          );
      });
    });

  common(postcopy.command('resume'))
    .description('source: reconnect to the destination (migrate with resume); requires postcopy-paused')
    .option('--target <host>', 'the destination host')
    .option('--port <port>', 'the port it listens on (default: migration_port + 1)', numberArg('--port'))
    .option('--uri <uri>', 'the whole URI instead (e.g. tcp:192.0.2.2:8103)')
    .action(async (opts: PostcopyStepOptions, cmd: Command) => {
      const uri = stepUri(opts, opts.target, '--target');
      await withHypervisor(opts, loggerFor(cmd), async (hv, name) => {
        const r = await hv.resumePostcopy(commandInstance(opts, opts.hvparams ?? []), uri, stepOptions(opts));
        if (opts.json) printJson({ instance: name, ...r });
        else
          print(`post-copy of '${name}' resumed to ${r.uri} (status: ${r.status}); wait with kvm-hv status`);
      });
    });
}
