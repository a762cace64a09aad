/**
 * Post-copy recovery, one step per node: pause a post-copy migration (`migrate-pause`),
 * accept a recovery on the destination (`migrate-recover`) and resume on the source
 * (`migrate` with `resume`). Each step works on one {@link VmChannel} within one
 * {@link Deadline}, sends one command and reads the migration status around it; the
 * policy of when to call them belongs to the caller.
 *
 * In post-copy the VM's memory is split between the two hosts: the destination runs the
 * VM and fetches missing pages from the source. A broken stream is survivable (both ends
 * go to `postcopy-paused` and can be reconnected), losing either QEMU is not. So no step
 * here stops, resumes or cancels a VM; a step that cannot do its part throws a
 * `MigrationError` naming the migration status it found (`status`), quoting QEMU.
 *
 * Measured on QEMU 5.2, 7.2, 10.0 and 11.1 (TCG, two QEMUs on one host):
 * - `migrate-pause` is accepted in `postcopy-active` (5.2, 7.2) and also in
 *   `postcopy-recover` (10.0, 11.1; from QEMU 8.2's recovery series), refused otherwise
 *   ("migrate-pause is currently only supported during postcopy-active state"). Pausing
 *   one end breaks the stream: the other end reaches `postcopy-paused` within ~0.1 s.
 * - A destination stays `postcopy-paused` after `migrate-recover` until the source
 *   connects; 5.2 and 7.2 send a `MIGRATION` event `setup` for it. 5.2 refuses a second
 *   `migrate-recover` ("Migrate recovery is triggered already"); 7.2, 10.0 and 11.1 accept
 *   it again. From 7.2 the destination's `-incoming` listener stays open through
 *   post-copy and accepts a resumed source by itself; 5.2 closes it.
 * - The source resumes through `postcopy-recover-setup` (10.0+), `postcopy-recover`,
 *   `postcopy-active`. A resume nobody listens for is accepted and leaves the source
 *   `postcopy-paused`. 10.0+ keep "Postcopy migration is paused by the user" as
 *   `error-desc` after a pause.
 * - At the switch to post-copy the source reports `device` (10.0, 11.1), then on 11.1
 *   `postcopy-device`; the 11.1 destination `postcopy-device`, then `postcopy-active`.
 */

import { Deadline } from '../core/deadline.js';
import { errorText } from '../core/error-text.js';
import { HmpError, type MigrationError, QmpError } from '../errors.js';
import { formatVersion, type QemuVersion, versionAtLeast } from '../qemu/version.js';
import { isDeadline, type VmChannel } from './channel.js';
import {
  describeCommand,
  type MonitorCommand,
  migratePauseCommand,
  migrateRecoverCommand,
  migrateResumeCommand,
} from './dialect.js';
import type { MigrationProgress } from './types.js';

/** What {@link pausePostcopy} did. */
export interface PostcopyPauseResult {
  /** `paused`: QEMU took `migrate-pause`; `already-paused`: this end was `postcopy-paused` already. */
  action: 'paused' | 'already-paused';
  /**
   * The migration status read last: `postcopy-paused` once QEMU got there (within
   * {@link POSTCOPY_CONFIRM_MS}); undefined when it could not be read in time.
   */
  status: string | undefined;
  /** True when the command went out of band (`exec-oob`). */
  outOfBand: boolean;
}

/** What {@link acceptPostcopyRecovery} did. */
export interface PostcopyRecoveryResult {
  /**
   * `listening`: QEMU took `migrate-recover` and listens on `uri`; `already-listening`:
   * QEMU 5.2 had taken an earlier `migrate-recover`, whose URI stays in effect.
   */
  action: 'listening' | 'already-listening';
  /** The URI asked for. */
  uri: string;
  /** The migration status read afterwards (`postcopy-paused` until the source connects), when read in time. */
  status: string | undefined;
  /** True when the command went out of band (`exec-oob`). */
  outOfBand: boolean;
}

/** What {@link resumePostcopy} did. */
export interface PostcopyResumeResult {
  /** Always `resumed`: the source left `postcopy-paused`. */
  action: 'resumed';
  /** The URI the source reconnected to. */
  uri: string;
  /**
   * The first status seen that shows the source connected: `postcopy-recover`,
   * `postcopy-active`, `postcopy-device` or `completed`.
   */
  status: string;
}

/** How long a step watches the status settle after QEMU took its command (ms), within its deadline. */
const POSTCOPY_CONFIRM_MS = 3000;
/**
 * How long {@link resumePostcopy} waits for the source to leave `postcopy-paused` (ms),
 * within its deadline: a listening destination is reached in well under a second.
 */
const POSTCOPY_RESUME_CONFIRM_MS = 10_000;
/** Source statuses while a resume is not through yet. */
const RESUMING: ReadonlySet<string> = new Set(['postcopy-paused', 'postcopy-recover-setup']);
/** Source statuses that show a resume got through: connected, running again, done. */
const RESUMED: ReadonlySet<string> = new Set([
  'postcopy-recover',
  'postcopy-active',
  'postcopy-device',
  'completed',
]);
/**
 * Statuses that last a moment on the way into or back to post-copy: the switch-over
 * (`device`, 11.1's `postcopy-device`) and a reconnection (`postcopy-recover-setup`).
 */
const TRANSIENT: ReadonlySet<string> = new Set(['device', 'postcopy-device', 'postcopy-recover-setup']);
/** Tries of `migrate-pause` refused in a {@link TRANSIENT} or pausable status. */
const PAUSE_ATTEMPTS = 3;
/** Status poll interval while a step confirms (ms). */
const CONFIRM_POLL_MS = 50;
/** One status query of a step never waits longer than this (ms), within its deadline. */
const QUERY_CAP_MS = 5000;

/**
 * The statuses in which this QEMU takes `migrate-pause`: `postcopy-active`, and from 8.2
 * also `postcopy-recover` (measured: 5.2 and 7.2 refuse it there, 10.0 and 11.1 take it).
 */
export function postcopyPauseStatuses(version: QemuVersion): string[] {
  return versionAtLeast(version, 8, 2) ? ['postcopy-active', 'postcopy-recover'] : ['postcopy-active'];
}

/**
 * Pauses a post-copy migration on this end (source or destination): `migrate-pause`, out
 * of band over QMP where `oob` was negotiated (it then overtakes in-band commands stuck
 * behind QEMU's main loop), else in band; `migrate_pause` over HMP. Pausing one end
 * breaks the stream, so the other end pauses too; pausing it as well is harmless.
 *
 * The command goes first, without a status read before it (a read is in band): QEMU
 * itself refuses it outside the states it allows (see {@link postcopyPauseStatuses}).
 * Then the status is read: `postcopy-paused` after a refusal means this end was paused
 * already (`already-paused`, a no-op); a status that passes in a moment (`device`,
 * `postcopy-device` at the switch-over, `postcopy-recover-setup`) or one it pauses in is
 * tried again, up to three times; any other status is a `MigrationError` naming it.
 * After an accepted pause the status is watched until `postcopy-paused`, for at most
 * {@link POSTCOPY_CONFIRM_MS}.
 *
 * @throws MigrationError with `status` when QEMU refuses in another state; with
 *   `unresponsive` when the deadline cut the command; naming the command otherwise.
 */
export async function pausePostcopy(ch: VmChannel, deadline: Deadline): Promise<PostcopyPauseResult> {
  const cmd = migratePauseCommand(ch.monitor.protocol);
  const pausable = postcopyPauseStatuses(ch.monitor.version);
  let outOfBand = false;
  for (let attempt = 1; ; attempt++) {
    try {
      outOfBand = await sendAllowingOutOfBand(ch, cmd, deadline);
      break;
    } catch (e) {
      if (!isQemuRefusal(e)) throw stepFailed(ch, 'pausing the post-copy migration', cmd, e);
      const status = await readStatus(ch, deadline);
      if (status?.status === 'postcopy-paused') {
        ch.log.info({ status: status.status }, 'post-copy already paused on this end');
        return { action: 'already-paused', status: status.status, outOfBand: false };
      }
      // Refused in a passing state (the switch-over, a reconnection) or just before one
      // it pauses in: ask again.
      const passing = status && (TRANSIENT.has(status.status) || pausable.includes(status.status));
      if (passing && attempt < PAUSE_ATTEMPTS && !deadline.over()) {
        await deadline.sleep(CONFIRM_POLL_MS);
        continue;
      }
      throw ch.error(
        `cannot pause the post-copy migration: its status is ${describeStatus(status)}; QEMU ${formatVersion(ch.monitor.version)} pauses only in ${pausable.map((s) => `'${s}'`).join(' or ')} (QEMU: ${refusalText(e)})`,
        e,
        statusDetail(status),
      );
    }
  }
  ch.log.info({ outOfBand }, 'post-copy pause sent');
  const seen = await watchStatus(ch, deadline, (s) => s === 'postcopy-paused');
  return { action: 'paused', status: seen?.status, outOfBand };
}

/**
 * Accepts a post-copy recovery on the destination: `migrate-recover {uri}` (out of band
 * over QMP where possible) / `migrate_recover URI`, after which QEMU listens on `uri` for
 * the source's {@link resumePostcopy}. QEMU takes it only while the incoming migration is
 * `postcopy-paused`; a refusal is explained with the status read afterwards (and the run
 * state, to tell a source given by mistake). QEMU 5.2's "Migrate recovery is triggered
 * already" while still paused is `already-listening`: the earlier call's URI is in effect.
 *
 * From QEMU 7.2 the original `-incoming` listener stays open during post-copy, and on
 * 7.2 a `migrate-recover` on that same port was once refused ("Address already in use")
 * after a resume had gone through the original listener: a fresh port always works.
 *
 * @throws MigrationError with `status` when QEMU refuses (its text quoted); with
 *   `unresponsive` when the deadline cut the command.
 */
export async function acceptPostcopyRecovery(
  ch: VmChannel,
  uri: string,
  deadline: Deadline,
): Promise<PostcopyRecoveryResult> {
  checkUri(ch, uri, 'accept a post-copy recovery');
  const cmd = migrateRecoverCommand(ch.monitor.protocol, uri);
  let outOfBand = false;
  try {
    outOfBand = await sendAllowingOutOfBand(ch, cmd, deadline);
  } catch (e) {
    if (!isQemuRefusal(e)) throw stepFailed(ch, 'accepting the post-copy recovery', cmd, e);
    const status = await readStatus(ch, deadline);
    if (status?.status === 'postcopy-paused' && /triggered already/i.test(refusalText(e))) {
      ch.log.warn(
        { uri },
        'QEMU already accepted a post-copy recovery; the URI of that call stays in effect',
      );
      return { action: 'already-listening', uri, status: status.status, outOfBand: false };
    }
    throw ch.error(
      `cannot accept the post-copy recovery on ${uri}: the incoming migration's status is ${describeStatus(status)}${await sourceHint(ch, deadline, 'migrate-recover runs on the destination')}; QEMU accepts it only in 'postcopy-paused' (QEMU: ${refusalText(e)})`,
      e,
      statusDetail(status),
    );
  }
  const status = await readStatus(ch, deadline);
  ch.log.info({ uri, outOfBand, status: status?.status }, 'post-copy recovery accepted; listening');
  return { action: 'listening', uri, status: status?.status, outOfBand };
}

/**
 * Resumes a paused post-copy migration on the source: `migrate {uri, resume: true}` /
 * `migrate -d -r URI` (in band: QEMU does not allow it out of band), to a destination that
 * accepted the recovery ({@link acceptPostcopyRecovery}) or, from QEMU 7.2, its original
 * `-incoming` URI. QEMU takes it only in `postcopy-paused`; it answers at once and
 * connects afterwards, and a connection that fails leaves the source `postcopy-paused`
 * without an error (10.0+ pass through `postcopy-recover-setup` first). So the status is
 * then watched until it shows the source connected (`postcopy-recover`, `postcopy-active`,
 * `completed`), for at most {@link POSTCOPY_RESUME_CONFIRM_MS} within the deadline.
 * Waiting for the migration to complete is the caller's.
 *
 * @throws MigrationError with `status` when QEMU refuses (its text quoted), when the
 *   source is still `postcopy-paused` (or `postcopy-recover-setup`) after that (it did not
 *   reach `uri`; QEMU's `error-desc` quoted), when it goes to any other status, or with
 *   `unresponsive` when the deadline cut a command.
 */
export async function resumePostcopy(
  ch: VmChannel,
  uri: string,
  deadline: Deadline,
): Promise<PostcopyResumeResult> {
  checkUri(ch, uri, 'resume the post-copy migration');
  const cmd = migrateResumeCommand(ch.monitor.protocol, uri);
  try {
    await ch.send(cmd, deadline);
  } catch (e) {
    if (!isQemuRefusal(e)) throw stepFailed(ch, 'resuming the post-copy migration', cmd, e);
    const status = await readStatus(ch, deadline);
    throw ch.error(
      `cannot resume the post-copy migration to ${uri}: its status is ${describeStatus(status)}${await sourceHint(ch, deadline, 'the resume runs on the source', true)}; QEMU resumes only from 'postcopy-paused' (QEMU: ${refusalText(e)})`,
      e,
      statusDetail(status),
    );
  }
  ch.log.info({ uri }, 'post-copy resume sent');
  const started = Date.now();
  const until = Deadline.at(Math.min(deadline.at, started + POSTCOPY_RESUME_CONFIRM_MS), deadline.signal);
  let last: MigrationProgress | undefined;
  for (;;) {
    const p = await readStatus(ch, until);
    if (p) last = p;
    // `postcopy-recover-setup` is QEMU still connecting: a refused connection falls back.
    if (p && !RESUMING.has(p.status)) {
      if (!RESUMED.has(p.status)) {
        throw ch.error(
          `resumed the post-copy migration to ${uri}, then its status became ${describeStatus(p)}`,
          undefined,
          { status: p.status, ...(p.errorDesc === undefined ? {} : { reason: p.errorDesc }) },
        );
      }
      ch.log.info({ uri, status: p.status }, 'post-copy migration resumed');
      return { action: 'resumed', uri, status: p.status };
    }
    if (until.over()) break;
    await until.sleep(CONFIRM_POLL_MS);
  }
  const waited = ((Date.now() - started) / 1000).toFixed(1);
  throw ch.error(
    `resumed the post-copy migration to ${uri}, but the source is still ${describeStatus(last)} after ${waited} s: it did not reach a destination listening there; both ends stay paused, the VM split between them`,
    undefined,
    { ...statusDetail(last), ...(last?.errorDesc === undefined ? {} : { reason: last.errorDesc }) },
  );
}

/**
 * Sends `cmd` within `deadline`: out of band over a QMP monitor that negotiated `oob`,
 * else in band (asked for explicitly: a paused post-copy is worth a try in band).
 * Resolves with whether it went out of band.
 */
async function sendAllowingOutOfBand(
  ch: VmChannel,
  cmd: MonitorCommand,
  deadline: Deadline,
): Promise<boolean> {
  const m = ch.monitor;
  if (cmd.kind === 'qmp' && m.executeOutOfBand && m.outOfBand === true) {
    ch.log.debug({ command: describeCommand(cmd) }, 'monitor command out of band');
    const remaining = deadline.remaining();
    await deadline.race(
      m.executeOutOfBand(cmd.execute, cmd.arguments, {
        fallbackInBand: true,
        ...(Number.isFinite(remaining) ? { timeoutMs: Math.max(1, Math.ceil(remaining)) } : {}),
      }),
      `'${describeCommand(cmd)}' (out of band)`,
    );
    return true;
  }
  if (cmd.kind === 'qmp') ch.log.debug({ command: cmd.execute }, 'oob not available: sent in band');
  await ch.send(cmd, deadline);
  return false;
}

/** True when QEMU answered the command with an error (as opposed to a lost or silent monitor). */
function isQemuRefusal(e: unknown): e is QmpError | HmpError {
  return e instanceof QmpError || e instanceof HmpError;
}

/** QEMU's own words from a refusal. */
function refusalText(e: QmpError | HmpError): string {
  return e instanceof QmpError ? e.desc : e.text.replace(/^Error:\s*/i, '');
}

/** The migration status within `deadline` (capped), or undefined when it cannot be read. */
async function readStatus(ch: VmChannel, deadline: Deadline): Promise<MigrationProgress | undefined> {
  try {
    return await deadline.race(ch.migrationStatus(deadline), 'query-migrate', QUERY_CAP_MS);
  } catch (e) {
    ch.log.warn({ err: errorText(e) }, 'reading the migration status failed');
    return undefined;
  }
}

/** Polls the status until `done` holds, for at most {@link POSTCOPY_CONFIRM_MS} within `deadline`. */
async function watchStatus(
  ch: VmChannel,
  deadline: Deadline,
  done: (status: string) => boolean,
): Promise<MigrationProgress | undefined> {
  const until = Deadline.at(Math.min(deadline.at, Date.now() + POSTCOPY_CONFIRM_MS), deadline.signal);
  let last: MigrationProgress | undefined;
  for (;;) {
    last = (await readStatus(ch, until)) ?? last;
    if ((last && done(last.status)) || until.over()) return last;
    await until.sleep(CONFIRM_POLL_MS);
  }
}

function describeStatus(p: MigrationProgress | undefined): string {
  if (!p) return 'unknown (it could not be read)';
  return `'${p.status}'${p.errorDesc ? ` (${p.errorDesc})` : ''}`;
}

function statusDetail(p: MigrationProgress | undefined): { status?: string } {
  return p ? { status: p.status } : {};
}

/**
 * A note when the VM's run state says the step was sent to the wrong end: a post-copy
 * source is `finish-migrate`/`postmigrate`, a destination runs (or is paused).
 */
async function sourceHint(
  ch: VmChannel,
  deadline: Deadline,
  rule: string,
  wantSource = false,
): Promise<string> {
  const run = await deadline.race(ch.vmStatus(deadline), 'query-status', QUERY_CAP_MS).catch(() => undefined);
  if (!run) return '';
  const isSource = run.status === 'finish-migrate' || run.status === 'postmigrate';
  if (isSource === wantSource) return '';
  return ` and its run state '${run.status}' says this is the ${isSource ? 'source' : 'destination'} (${rule})`;
}

/** Refuses a URI that would not survive an HMP command line or is empty. */
function checkUri(ch: VmChannel, uri: string, what: string): void {
  if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(uri)) {
    throw ch.error(
      `cannot ${what}: ${JSON.stringify(uri)} is not a migration URI (scheme:address, no spaces)`,
      undefined,
      {},
    );
  }
}

/** A command that failed without QEMU's refusal: lost monitor, deadline, unreadable reply. */
function stepFailed(ch: VmChannel, what: string, cmd: MonitorCommand, e: unknown): MigrationError {
  const timedOut = isDeadline(e);
  return ch.error(
    `${what} failed: '${describeCommand(cmd)}': ${errorText(e)}${timedOut ? ' (QEMU did not answer in time; it may still act on it)' : ''}`,
    e,
  );
}
