/**
 * The node-side checks that span several parameters or need outside facts (Ganeti's
 * `validate_*` functions): users, network interfaces, QEMU's help and machine list, QEMU's version.
 * A check that needs a {@link ValidationContext} field is skipped when the field is absent.
 */
import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { HvParamProblem } from '../errors.js';
import { formatVersion } from '../qemu/version.js';
import { validationProblem } from './messages.js';
import { isNormAbsPath } from './paths.js';
import type { HvParameterName, KvmHvParams } from './registry.js';
import type { ValidationContext } from './types.js';

/** A node-side rule; `problems` receives values of the right type. */
export interface NodeParameterRule {
  /** Ganeti's function name, for reference. */
  readonly name: string;
  /** Every parameter the rule reads. */
  readonly params: readonly HvParameterName[];
  /** What the rule demands, for the generated docs. */
  readonly summary: string;
  problems(params: KvmHvParams, context: ValidationContext): Promise<HvParamProblem[]>;
}

/** Default password database for `security_domain`. */
export const DEFAULT_PASSWD_FILE = '/etc/passwd';

/** True when `user` has an entry in the passwd file (the local part of `getpwnam`). */
async function userExists(user: string, passwdFile: string): Promise<boolean> {
  const text = await readFile(passwdFile, 'utf8');
  return text.split('\n').some((line) => line.split(':', 1)[0] === user && line.includes(':'));
}

/** True when a network interface of that name exists on this node (or in `context.interfaces`). */
async function interfaceExists(name: string, context: ValidationContext): Promise<boolean> {
  if (context.interfaces) return context.interfaces.includes(name);
  if (Object.hasOwn(networkInterfaces(), name)) return true;
  // networkInterfaces() lists only interfaces that have an address; sysfs lists them all.
  if (name === '' || name === '.' || name === '..' || name.includes('/')) return false;
  try {
    await stat(`/sys/class/net/${name}`);
    return true;
  } catch {
    return false;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The five node-side rules, in Ganeti's order. */
export const NODE_PARAMETER_RULES: readonly NodeParameterRule[] = [
  {
    name: 'validate_security_model',
    params: ['security_model', 'security_domain'],
    summary: `With security_model user, security_domain must be a user in the passwd file (${DEFAULT_PASSWD_FILE}).`,
    async problems(p, context) {
      if (p.security_model !== 'user' || !p.security_domain) return [];
      const passwdFile = context.passwdFile ?? DEFAULT_PASSWD_FILE;
      let exists: boolean;
      try {
        exists = await userExists(p.security_domain, passwdFile);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        return [
          validationProblem('security_domain', `cannot read ${passwdFile}: ${reason}`, p.security_domain),
        ];
      }
      return exists
        ? []
        : [validationProblem('security_domain', `no such user in ${passwdFile}`, p.security_domain)];
    },
  },
  {
    name: 'validate_vnc_parameters',
    params: ['vnc_bind_address'],
    summary:
      'A non-empty vnc_bind_address must be an IPv4 or IPv6 address, an existing network interface or an absolute normalized path.',
    async problems(p, context) {
      const bind = p.vnc_bind_address;
      if (!bind || isIP(bind) !== 0 || isNormAbsPath(bind) || (await interfaceExists(bind, context)))
        return [];
      return [
        validationProblem(
          'vnc_bind_address',
          'must be an IPv4 or IPv6 address, an existing network interface or an absolute normalized path',
          bind,
        ),
      ];
    },
  },
  {
    name: 'validate_spice_parameters',
    params: ['spice_bind', 'vnc_bind_address'],
    summary:
      'A non-empty spice_bind excludes vnc_bind_address, must be an IP address or an existing network interface, ' +
      'and needs a QEMU whose --help lists -spice (checked when kvmHelp is given).',
    async problems(p, context) {
      const bind = p.spice_bind;
      if (!bind) return [];
      const out: HvParamProblem[] = [];
      if (p.vnc_bind_address) {
        out.push(
          validationProblem(
            'spice_bind',
            `SPICE and VNC cannot both be enabled (vnc_bind_address is '${p.vnc_bind_address}')`,
            bind,
          ),
        );
      }
      if (context.kvmHelp !== undefined && !/^-spice\s/m.test(context.kvmHelp)) {
        out.push(
          validationProblem('spice_bind', 'this QEMU does not support SPICE (no -spice in kvm --help)', bind),
        );
      }
      if (isIP(bind) === 0 && !(await interfaceExists(bind, context))) {
        out.push(
          validationProblem('spice_bind', 'must be an IP address or an existing network interface', bind),
        );
      }
      return out;
    },
  },
  {
    name: 'validate_machine_version',
    params: ['machine_version'],
    summary:
      'A non-empty machine_version must be a PC machine listed by kvm -machine ? (checked when machineList is given).',
    async problems(p, context) {
      const machine = p.machine_version;
      if (!machine || context.machineList === undefined) return [];
      const listed = new RegExp(`^(${escapeRegExp(machine)})[ ]+.*PC`, 'm').test(context.machineList);
      return listed
        ? []
        : [validationProblem('machine_version', 'not a machine type this QEMU supports', machine)];
    },
  },
  {
    name: 'validate_disk_parameters',
    params: ['disk_aio'],
    summary: 'disk_aio io_uring needs QEMU 5.0 or later (checked when qemuVersion is given).',
    async problems(p, context) {
      const version = context.qemuVersion;
      if (p.disk_aio !== 'io_uring' || version === undefined || version.major >= 5) return [];
      return [
        validationProblem(
          'disk_aio',
          `io_uring needs QEMU 5.0 or later, this is ${formatVersion(version)}`,
          p.disk_aio,
        ),
      ];
    },
  },
];
