/**
 * Migration over TLS, as monitor commands: the credentials object (`tls-creds-x509`), the
 * authorization list (`authz-list` / `authz-simple`), the `tls-*` migration parameters,
 * `migrate-incoming`, and what undoes them. Pure: functions return commands or the reason
 * a QEMU cannot do it; `tls.ts` sends them.
 *
 * | QEMU          | QMP                                        | HMP                                            |
 * |---------------|--------------------------------------------|------------------------------------------------|
 * | < 2.7         | no TLS migration                           | no TLS migration                               |
 * | 2.7 – 3.1     | `object-add` with `props`; no `tls-authz`  | `object_add`; no `tls-authz`                   |
 * | 4.0 – 5.2     | `object-add` with `props`; `authz-list`    | `authz-simple` (one peer: no lists in 5.2 HMP) |
 *
 * The destination always gets an authorization object from 4.0 (allow-all without peers).
 * | 6.0 – 10.0    | flat `object-add`                          | `authz-list` with `rules.N.*` keys             |
 * | 9.1+          | `migrate-incoming` with `exit-on-error: false` | (HMP cannot pass it)                       |
 * | 10.1+ HMP     |                                            | refused: 11.1's HMP stores `""` literally, so the parameters cannot be reset |
 */
import type { MonitorProtocol } from '../monitor/types.js';
import { formatVersion, type QemuVersion, versionAtLeast } from '../qemu/version.js';
import type { TlsEndpoint } from '../tls/config.js';
import { dnOrders } from '../tls/dn.js';
import type { MonitorCommand } from './dialect.js';

/** Id of the credentials object kvm-hypervisor creates on either end. */
export const TLS_CREDS_ID = 'kvmhv-migration-tls';
/** Id of the authorization object on the destination. */
export const TLS_AUTHZ_ID = 'kvmhv-migration-authz';

/** What one end sets up. */
export interface TlsPlan {
  endpoint: TlsEndpoint;
  /** Certificate directory (QEMU's layout). */
  dir: string;
  /** Source only: `tls-hostname` (empty: QEMU takes the host of the URI). */
  hostname?: string;
  /** Destination only: allowed client DNs (`tls-authz`). */
  allowedPeers?: readonly string[];
}

/**
 * Why this QEMU cannot do `plan` over `protocol`, or undefined when it can. The text
 * names the QEMU version and what is missing.
 */
export function tlsUnsupported(
  protocol: MonitorProtocol,
  version: QemuVersion,
  plan: Pick<TlsPlan, 'endpoint' | 'allowedPeers'>,
): string | undefined {
  const v = formatVersion(version);
  if (!versionAtLeast(version, 2, 7)) return `QEMU ${v} has no TLS migration (tls-creds: QEMU 2.7+)`;
  const peers = plan.endpoint === 'server' ? (plan.allowedPeers?.length ?? 0) : 0;
  if (peers > 0 && !versionAtLeast(version, 4, 0)) {
    return `QEMU ${v} cannot restrict the peers of a migration (tls-authz: QEMU 4.0+)`;
  }
  if (protocol === 'hmp') {
    if (versionAtLeast(version, 10, 1)) {
      return `QEMU ${v}'s HMP cannot reset the tls-* migration parameters to empty (it stores "" literally), so TLS could not be undone; use QMP`;
    }
    if (peers > 1 && !versionAtLeast(version, 6, 0)) {
      return `QEMU ${v}'s HMP object_add cannot build an authz-list; it takes one allowed peer (authz-simple), not ${peers}`;
    }
  }
  return undefined;
}

/** A QemuOpts value: `,` is doubled so a DN or a path cannot add options. */
const optValue = (s: string): string => s.replaceAll(',', ',,');

function objectAdd(
  protocol: MonitorProtocol,
  version: QemuVersion,
  qomType: string,
  id: string,
  props: Record<string, unknown>,
  hmpProps: [string, string][],
): MonitorCommand {
  if (protocol === 'hmp') {
    const opts = hmpProps.map(([k, val]) => `${k}=${optValue(val)}`).join(',');
    return { kind: 'hmp', line: `object_add ${qomType},id=${id},${opts}` };
  }
  // QEMU 6.0 removed `props` (5.2 takes both forms; older ones only `props`).
  const args = versionAtLeast(version, 6, 0)
    ? { 'qom-type': qomType, id, ...props }
    : { 'qom-type': qomType, id, props };
  return { kind: 'qmp', execute: 'object-add', arguments: args };
}

/**
 * The destination's authorization object: the allowed DNs, or (without peers) a list that
 * allows every certificate the CA signed. It always exists because an empty `tls-authz`
 * is taken as the id "" by multifd channels (QEMU 7.2: "Cannot find QAuthZ object ID").
 */
function authzCommand(protocol: MonitorProtocol, version: QemuVersion, peers: readonly string[]) {
  // Each DN in both orders: QEMU matches the certificate's order only (measured: the RFC
  // 2253 form `CN=node1,O=Example` of an `O=Example,CN=node1` certificate is refused).
  const matches = [...new Set(peers.flatMap((dn) => dnOrders(dn)))];
  const rules = matches.map((match) => ({ match, policy: 'allow', format: 'exact' }));
  if (peers.length === 0) {
    return objectAdd(protocol, version, 'authz-list', TLS_AUTHZ_ID, { policy: 'allow' }, [
      ['policy', 'allow'],
    ]);
  }
  if (protocol === 'hmp' && !versionAtLeast(version, 6, 0)) {
    return objectAdd(protocol, version, 'authz-simple', TLS_AUTHZ_ID, {}, [['identity', peers[0]!]]);
  }
  const hmp: [string, string][] = [['policy', 'deny']];
  rules.forEach((r, i) => {
    hmp.push([`rules.${i}.match`, r.match], [`rules.${i}.policy`, 'allow'], [`rules.${i}.format`, 'exact']);
  });
  return objectAdd(protocol, version, 'authz-list', TLS_AUTHZ_ID, { policy: 'deny', rules }, hmp);
}

/** One `tls-*` parameter set to `value` ("" clears it). */
function setParameters(protocol: MonitorProtocol, values: Record<string, string>): MonitorCommand[] {
  if (protocol === 'qmp') return [{ kind: 'qmp', execute: 'migrate-set-parameters', arguments: values }];
  return Object.entries(values).map(([k, val]) => ({
    kind: 'hmp',
    line: `migrate_set_parameter ${k} ${val === '' ? '""' : val}`,
  }));
}

/** The `tls-*` parameters this version has. */
function tlsParameters(version: QemuVersion, creds: string, hostname: string, authz: string) {
  const values: Record<string, string> = { 'tls-creds': creds, 'tls-hostname': hostname };
  if (versionAtLeast(version, 4, 0)) values['tls-authz'] = authz;
  return values;
}

/**
 * Commands that put `plan` in place, in order: the credentials object, the authorization
 * object (destination with peers), then the parameters. Check {@link tlsUnsupported} first.
 */
export function tlsSetupCommands(
  protocol: MonitorProtocol,
  version: QemuVersion,
  plan: TlsPlan,
): MonitorCommand[] {
  const cmds: MonitorCommand[] = [
    objectAdd(
      protocol,
      version,
      'tls-creds-x509',
      TLS_CREDS_ID,
      { endpoint: plan.endpoint, dir: plan.dir, 'verify-peer': true },
      [
        ['endpoint', plan.endpoint],
        ['dir', plan.dir],
        ['verify-peer', 'on'],
      ],
    ),
  ];
  const authz = plan.endpoint === 'server' && versionAtLeast(version, 4, 0);
  if (authz) cmds.push(authzCommand(protocol, version, plan.allowedPeers ?? []));
  const hostname = plan.endpoint === 'client' ? (plan.hostname ?? '') : '';
  cmds.push(
    ...setParameters(protocol, tlsParameters(version, TLS_CREDS_ID, hostname, authz ? TLS_AUTHZ_ID : '')),
  );
  return cmds;
}

/** Commands that clear the `tls-*` parameters (run before the objects are deleted). */
export function tlsResetCommands(protocol: MonitorProtocol, version: QemuVersion): MonitorCommand[] {
  return setParameters(protocol, tlsParameters(version, '', '', ''));
}

/** `object-del` / `object_del` of one of our objects. */
export function objectDelCommand(protocol: MonitorProtocol, id: string): MonitorCommand {
  return protocol === 'qmp'
    ? { kind: 'qmp', execute: 'object-del', arguments: { id } }
    : { kind: 'hmp', line: `object_del ${id}` };
}

/** True when a failed `object-del` says the object does not exist (nothing to remove). */
export function isObjectMissing(message: string): boolean {
  return /object '[^']*' not found/i.test(message);
}

/**
 * `migrate-incoming` on a destination started with `-incoming defer`. On QMP from 9.1
 * it passes `exit-on-error: false`, so a failed incoming migration leaves QEMU alive to
 * report why and to be quit cleanly; older QEMUs (and HMP) exit on a load error.
 */
export function incomingCommand(
  protocol: MonitorProtocol,
  version: QemuVersion,
  uri: string,
): MonitorCommand {
  if (protocol === 'hmp') return { kind: 'hmp', line: `migrate_incoming ${uri}` };
  const args: Record<string, unknown> = { uri };
  if (versionAtLeast(version, 9, 1)) args['exit-on-error'] = false;
  return { kind: 'qmp', execute: 'migrate-incoming', arguments: args };
}
