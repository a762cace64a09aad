/**
 * The six checks that span several parameters and need no I/O (Ganeti's `check_*` functions
 * in `hv_kvm/validation.py`). They run after the per-key checks, and only when every parameter
 * they read passed its per-key check, so each sees well-typed values.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { HvParamProblem } from '../errors.js';
import { displayValue } from './messages.js';
import { pythonTruthy } from './python-values.js';
import type { HvParameterName, KvmHvParams } from './registry.js';
import { VALID_SERIAL_SPEEDS } from './value-sets.js';

/** A rule that spans several parameters; `problems` receives values that passed the per-key checks. */
export interface CrossParameterRule {
  /** Ganeti's function name, for reference. */
  readonly name: string;
  /** Every parameter the rule reads. */
  readonly params: readonly HvParameterName[];
  /** What the rule demands, for the generated docs. */
  readonly summary: string;
  problems(params: KvmHvParams): HvParamProblem[];
}

/** SPICE options that make sense only with `spice_bind` set. */
export const SPICE_ADDITIONAL_PARAMETERS = [
  'spice_ip_version',
  'spice_password_file',
  'spice_image_compression',
  'spice_jpeg_wan_compression',
  'spice_zlib_glz_wan_compression',
  'spice_streaming_video',
  'spice_use_tls',
] as const satisfies readonly HvParameterName[];

const problem = (param: HvParameterName, message: string): HvParamProblem => ({ param, message });

/** The six syntax-level rules, in Ganeti's order. */
export const CROSS_PARAMETER_RULES: readonly CrossParameterRule[] = [
  {
    name: 'check_boot_parameters',
    params: ['boot_order', 'cdrom_image_path', 'kernel_path', 'root_path'],
    summary:
      'boot_order cdrom needs cdrom_image_path (reported on boot_order); a non-empty kernel_path needs root_path (reported on kernel_path).',
    problems(p) {
      const out: HvParamProblem[] = [];
      if (p.boot_order === 'cdrom' && !p.cdrom_image_path) {
        out.push(
          problem(
            'boot_order',
            "Cannot boot from cdrom without an ISO path: boot_order is 'cdrom' but cdrom_image_path is empty",
          ),
        );
      }
      if (p.kernel_path && !p.root_path) {
        out.push(
          problem(
            'kernel_path',
            `Need a root partition for the instance: kernel_path is set ('${displayValue(p.kernel_path)}') but root_path is empty`,
          ),
        );
      }
      return out;
    },
  },
  {
    name: 'check_security_model',
    params: ['security_model', 'security_domain'],
    summary:
      'security_model user needs security_domain (reported on security_model); none and pool forbid it (reported on security_domain).',
    problems(p) {
      if (p.security_model === 'user' && !p.security_domain) {
        return [
          problem('security_model', "Security model 'user' needs security_domain, the user to run QEMU as"),
        ];
      }
      if ((p.security_model === 'none' || p.security_model === 'pool') && p.security_domain) {
        return [
          problem(
            'security_domain',
            `security_domain ('${displayValue(p.security_domain)}') cannot be set with security model '${p.security_model}'`,
          ),
        ];
      }
      return [];
    },
  },
  {
    name: 'check_console_parameters',
    params: ['serial_console', 'serial_speed'],
    summary: `With serial_console on, serial_speed must be one of: ${VALID_SERIAL_SPEEDS.join(', ')} (reported on serial_speed).`,
    problems(p) {
      if (p.serial_console && !(VALID_SERIAL_SPEEDS as readonly number[]).includes(p.serial_speed)) {
        return [
          problem(
            'serial_speed',
            `Invalid serial console speed ${displayValue(p.serial_speed)}, must be one of: ${VALID_SERIAL_SPEEDS.join(', ')}`,
          ),
        ];
      }
      return [];
    },
  },
  {
    name: 'check_vnc_parameters',
    params: ['vnc_x509_verify', 'vnc_x509_path'],
    summary: 'vnc_x509_verify needs vnc_x509_path (reported on vnc_x509_verify).',
    problems(p) {
      return p.vnc_x509_verify && !p.vnc_x509_path
        ? [
            problem(
              'vnc_x509_verify',
              'vnc_x509_verify is on but vnc_x509_path is empty: cannot verify clients without certificates',
            ),
          ]
        : [];
    },
  },
  {
    name: 'check_spice_parameters',
    params: ['spice_bind', ...SPICE_ADDITIONAL_PARAMETERS],
    summary:
      'An IPv4 spice_bind needs spice_ip_version 0 or 4, an IPv6 one 0 or 6 (reported on spice_ip_version); without spice_bind, ' +
      `${SPICE_ADDITIONAL_PARAMETERS.join(', ')} must be empty, 0 or false (each reported on itself).`,
    problems(p) {
      if (p.spice_bind) {
        const version = p.spice_ip_version;
        if (version !== 0 && isIPv4(p.spice_bind) && version !== 4) {
          return [
            problem(
              'spice_ip_version',
              `SPICE: spice_bind '${p.spice_bind}' is an IPv4 address but spice_ip_version is ${version}`,
            ),
          ];
        }
        if (version !== 0 && isIPv6(p.spice_bind) && version !== 6) {
          return [
            problem(
              'spice_ip_version',
              `SPICE: spice_bind '${p.spice_bind}' is an IPv6 address but spice_ip_version is ${version}`,
            ),
          ];
        }
        return [];
      }
      return SPICE_ADDITIONAL_PARAMETERS.filter((name) => pythonTruthy(p[name])).map((name) =>
        problem(name, `SPICE: ${name} ('${displayValue(p[name])}') needs spice_bind to be set`),
      );
    },
  },
  {
    name: 'check_disk_cache_parameters',
    params: ['disk_aio', 'disk_cache'],
    summary: 'disk_aio native needs disk_cache none (reported on disk_aio).',
    problems(p) {
      return p.disk_aio === 'native' && p.disk_cache !== 'none'
        ? [
            problem(
              'disk_aio',
              `disk_aio 'native' needs disk_cache 'none' (current disk_cache: '${displayValue(p.disk_cache)}')`,
            ),
          ]
        : [];
    },
  },
];
