/**
 * Monitor faults a test can switch on for a fake QEMU's servers: a frozen QEMU (commands
 * are read but answered only once it thaws, like a SIGSTOPped process), a stuck main loop
 * (in-band commands wait, out-of-band ones are answered, as in QEMU's monitor I/O
 * thread), and commands refused with a chosen error.
 */

/** A QMP-style error: class and description (over HMP, `desc` is printed as `Error: desc`). */
export interface FakeQmpErrorReply {
  class: string;
  desc: string;
}

/** One refusal rule of {@link FakeMonitorFaults.refuse}. */
interface Refusal {
  command: string;
  error: FakeQmpErrorReply;
  times: number;
}

/** The fault switches shared by every connection to one fake QEMU. */
export class FakeMonitorFaults {
  private frozen = false;
  private readonly held: Array<() => void> = [];
  private mainLoopStuck = false;
  private readonly heldInBand: Array<() => void> = [];
  private readonly refusals: Refusal[] = [];

  /** True while frozen. */
  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Stops answering: commands are held (no reply, no events) until {@link thaw}. */
  freeze(): void {
    this.frozen = true;
  }

  /** Answers the held commands in order and goes on answering. */
  thaw(): void {
    this.frozen = false;
    for (const run of this.held.splice(0)) run();
  }

  /** Runs `answer` now, or on {@link thaw} when frozen. */
  gate(answer: () => void): void {
    if (this.frozen) this.held.push(answer);
    else answer();
  }

  /** True while the main loop is stuck (see {@link stickMainLoop}). */
  get isMainLoopStuck(): boolean {
    return this.mainLoopStuck;
  }

  /**
   * QEMU's main loop stops (a vCPU or a migration step holding it, a post-copy destination
   * faulting on pages that never come): in-band QMP commands and HMP lines wait, in order;
   * out-of-band QMP commands are still answered.
   */
  stickMainLoop(): void {
    this.mainLoopStuck = true;
  }

  /** The main loop runs again: the waiting in-band commands are answered in order. */
  unstickMainLoop(): void {
    this.mainLoopStuck = false;
    for (const run of this.heldInBand.splice(0)) this.gate(run);
  }

  /** Runs an in-band `answer` now, or once the main loop runs again (and QEMU is not frozen). */
  gateInBand(answer: () => void): void {
    if (this.mainLoopStuck) this.heldInBand.push(answer);
    else this.gate(answer);
  }

  /** Drops the commands held while frozen or stuck (their connection is gone). */
  dropHeld(): void {
    this.held.length = 0;
    this.heldInBand.length = 0;
  }

  /**
   * Refuses the next `times` (default: every) `command` with `error`. `command` is a QMP
   * command name or an HMP command word (`info migrate` for info subcommands).
   */
  refuse(command: string, error: FakeQmpErrorReply, times = Number.POSITIVE_INFINITY): void {
    this.refusals.push({ command, error, times });
  }

  /** Removes every refusal. */
  clearRefusals(): void {
    this.refusals.length = 0;
  }

  /** The refusal for `command`, counted down, or undefined. */
  refusalFor(command: string): FakeQmpErrorReply | undefined {
    const rule = this.refusals.find((r) => r.times > 0 && r.command === command);
    if (!rule) return undefined;
    rule.times--;
    return rule.error;
  }
}
