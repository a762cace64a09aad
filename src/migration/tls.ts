/**
 * Puts a node's migration TLS credentials in place on a VM's monitor and takes them away
 * again. Objects left by an earlier run that never cleaned up are removed first, so a
 * set-up never fails on a duplicate id. Removal runs every command on its own: one
 * failing does not skip the next.
 */

import type { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { MigrationError } from '../errors.js';
import { versionAtLeast } from '../qemu/version.js';
import type { MigrationTlsOptions } from '../tls/config.js';
import type { VmChannel } from './channel.js';
import { describeCommand } from './dialect.js';
import {
  isObjectMissing,
  objectDelCommand,
  TLS_AUTHZ_ID,
  TLS_CREDS_ID,
  type TlsPlan,
  tlsResetCommands,
  tlsSetupCommands,
  tlsUnsupported,
} from './tls-commands.js';
import { migrationUri } from './uri.js';

/** Throws `MigrationError` (nothing changed) when this QEMU cannot do `plan`. */
function checkTlsSupport(ch: VmChannel, plan: TlsPlan): void {
  const why = tlsUnsupported(ch.monitor.protocol, ch.monitor.version, plan);
  if (why) throw ch.error(`cannot migrate over TLS: ${why}`, undefined);
}

/** Deletes our objects, ignoring "not found"; returns the problems (logged). */
async function deleteObjects(ch: VmChannel, deadline: Deadline): Promise<string[]> {
  const problems: string[] = [];
  for (const id of [TLS_AUTHZ_ID, TLS_CREDS_ID]) {
    const cmd = objectDelCommand(ch.monitor.protocol, id);
    try {
      await ch.send(cmd, deadline);
    } catch (e) {
      if (isObjectMissing(errorText(e))) continue;
      const text = `'${describeCommand(cmd)}' failed: ${errorText(e)}`;
      ch.log.error({ err: errorText(e) }, `removing TLS object: ${text}`);
      problems.push(text);
    }
  }
  return problems;
}

/**
 * Creates the credentials (and on a destination with peers the authorization) object and
 * sets the `tls-*` parameters. On a failure, what was done is undone and a
 * `MigrationError` with QEMU's reason is thrown (e.g. "Unable to access credentials
 * …/server-cert.pem").
 */
export async function applyTls(ch: VmChannel, plan: TlsPlan, deadline: Deadline): Promise<void> {
  checkTlsSupport(ch, plan);
  const { protocol, version } = ch.monitor;
  // Left over by a run that ended before its clean-up (QEMU refuses a duplicate id).
  const stale = await deleteObjects(ch, deadline);
  if (stale.length > 0) throw ch.error(`cannot remove stale TLS objects: ${stale.join('; ')}`);
  try {
    for (const cmd of tlsSetupCommands(protocol, version, plan)) {
      await ch.must(cmd, `setting up migration TLS (${plan.endpoint})`, deadline);
    }
  } catch (e) {
    await removeTls(ch, deadline);
    throw e;
  }
  ch.log.info(
    { endpoint: plan.endpoint, dir: plan.dir, allowedPeers: plan.allowedPeers?.length ?? 0 },
    'migration TLS credentials in place',
  );
}

/**
 * Clears the `tls-*` parameters and deletes our objects. Best effort: every command is
 * sent even when one fails; returns the problems, which are also logged.
 */
export async function removeTls(ch: VmChannel, deadline: Deadline): Promise<string[]> {
  const problems: string[] = [];
  const { protocol, version } = ch.monitor;
  // Where HMP would store "" literally (10.1+), a reset would set TLS instead of clearing
  // it; TLS is never set up there, so there is nothing to reset.
  const resets =
    protocol === 'hmp' && versionAtLeast(version, 10, 1) ? [] : tlsResetCommands(protocol, version);
  for (const cmd of resets) {
    try {
      await ch.send(cmd, deadline);
    } catch (e) {
      const text = `'${describeCommand(cmd)}' failed: ${errorText(e)}`;
      ch.log.error({ err: errorText(e) }, `resetting TLS parameters: ${text}`);
      problems.push(text);
    }
  }
  problems.push(...(await deleteObjects(ch, deadline)));
  if (problems.length === 0) ch.log.info({}, 'migration TLS credentials removed');
  return problems;
}

/** The URI a destination listens on (`migrate-incoming`); a bad address is a `MigrationError` that changed nothing. */
export function listenUri(instance: string, listen: string, port: number): string {
  try {
    return migrationUri(listen, port);
  } catch (e) {
    throw new MigrationError(`instance '${instance}': listen: ${errorText(e)}`, {
      instance,
      changedVm: false,
    });
  }
}

/**
 * Whether this QEMU can migrate over TLS with `tls`; where it cannot, `required: false`
 * migrates in clear with a warning, and the default throws `MigrationError` naming the version.
 */
export function tlsUsable(
  ch: VmChannel,
  tls: MigrationTlsOptions | undefined,
  endpoint: 'server' | 'client',
): boolean {
  if (!tls) return false;
  const why = tlsUnsupported(ch.monitor.protocol, ch.monitor.version, {
    endpoint,
    ...(tls.allowedPeers ? { allowedPeers: tls.allowedPeers } : {}),
  });
  if (why === undefined) return true;
  if (tls.required !== false) {
    throw new MigrationError(`instance '${ch.instance}': cannot migrate over TLS: ${why}`, {
      instance: ch.instance,
      changedVm: false,
    });
  }
  ch.log.warn({ why }, 'TLS not required and not possible with this QEMU: migrating in clear');
  return false;
}
