/**
 * What a real QEMU answers, by version: the texts and behaviours the real-QEMU tests
 * expect, each with the release range it was observed on. Derived from the version the
 * monitor reports, so one test body checks every release.
 */
import { type QemuVersion, versionAtLeast } from '../../src/qemu/version.js';

/** QMP answers that depend on the version. */
export interface QmpExpectations {
  /** `desc` of CommandNotFound. */
  commandNotFound(command: string): string;
  /** `desc` of the GenericError for an enum parameter given an unknown value. */
  badEnumValue(parameter: string, value: string): string;
}

/** QMP answers of `version`. */
export function expectedQmp(version: QemuVersion): QmpExpectations {
  return {
    commandNotFound: (command) => `The command ${command} has not been found`,
    // Observed: 5.2 says "Invalid parameter 'nope'", 7.2 and later the sentence below
    // (6.0–7.1 not observed; 6.0 is where the suite draws the line).
    badEnumValue: (parameter, value) =>
      versionAtLeast(version, 6, 0)
        ? `Parameter '${parameter}' does not accept value '${value}'`
        : `Invalid parameter '${value}'`,
  };
}

/** HMP answers that depend on the version. */
export interface HmpExpectations {
  /** `migrate_set_speed` / `migrate_set_downtime` exist (removed in QEMU 6.0). */
  hasLegacySpeedCommands: boolean;
  /** The answer to a command this QEMU does not have. */
  unknownCommand(command: string): string;
  /** The error of `migrate_set_capability <name> on` for a name QEMU does not know. */
  badCapability(name: string): string;
  /** The `info migrate_parameters` line for a bandwidth of `bytes` per second. */
  maxBandwidthLine(bytes: number): string;
  /** The `info migrate_parameters` line for a downtime limit of `ms`. */
  downtimeLimitLine(ms: number): string;
}

/** HMP answers of `version`. */
export function expectedHmp(version: QemuVersion): HmpExpectations {
  return {
    hasLegacySpeedCommands: !versionAtLeast(version, 6, 0),
    unknownCommand: (command) => `unknown command: '${command}'`,
    badCapability: (name) => `invalid parameter value: ${name}`,
    maxBandwidthLine: (bytes) => `max-bandwidth: ${bytes} bytes/second`,
    downtimeLimitLine: (ms) => `downtime-limit: ${ms} ms`,
  };
}
