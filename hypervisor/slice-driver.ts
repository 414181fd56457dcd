/**
 * The slice driver: the one place where the machine advances, shared by the recorder and the
 * replayer so that both apply the same rules in the same order.
 *
 * At boundary k (k slices done) the entries logged for k are applied in log order, then:
 *   - if the last slice ended in HLT and no clock entry was applied at k, guest time advances by
 *     v86's time to its next timer deadline (the implicit idle advance, never logged);
 *   - then slice k+1 runs.
 * A clock entry at a halted boundary replaces the implicit advance (the primary's idle wait was cut
 * short by input). These rules make execution a pure function of (machine config, log).
 */
import { DiskCompletionError, type BounceDisk } from "../emulator/bounce-disk.js";
import type { SliceResult, V86Machine } from "../emulator/v86-machine.js";
import type { LogEntry } from "./event-log/log-entry.js";
import type { VirtualClock } from "./virtual-clock.js";

/**
 * The smallest idle advance. v86's timers report 0 ms to the next deadline when it is exactly now
 * but fire only once time has passed it (strict comparisons), so an idle advance of 0 would spin.
 */
export const idleAdvanceMinMs = 0.001;

export interface DriverState {
  slice: number;
  halted: boolean;
  nextDeadlineMs: number;
}

export class SliceDriver {
  /** Slices completed: the number of the current boundary. */
  slice = 0;
  halted = false;
  nextDeadlineMs = 0;
  private clockAppliedAtBoundary = false;

  constructor(
    readonly machine: V86Machine,
    readonly clock: VirtualClock,
  ) {}

  get icount(): number {
    return this.machine.icount;
  }

  /** Applies one execution-affecting entry at the current boundary. */
  apply(entry: LogEntry): void {
    switch (entry.kind) {
      case "serial":
        this.machine.sendSerial(entry.data);
        break;
      case "keys":
        this.machine.sendKeys(entry.data);
        break;
      case "clock":
        if (entry.advanceMs !== undefined) this.clock.advance(entry.advanceMs);
        if (entry.msPerInstruction !== undefined) this.clock.setRate(entry.msPerInstruction, this.machine.icount);
        this.clockAppliedAtBoundary = true;
        break;
      case "disk-read":
        this.disk().supplyRead(entry.id, entry.at, entry.data);
        break;
      case "disk-write":
        this.disk().completeWrite(entry.id);
        break;
      case "net":
        if (!this.machine.hasNic) throw new DiskCompletionError("the log delivers a network frame but this machine has no network card");
        this.machine.sendNet(entry.data);
        break;
      case "control":
        if (entry.action === "checkpoint") this.machine.clearJit();
        break;
      case "progress":
      case "digest":
        break;
    }
  }

  /** The driver's own state at a boundary (for checkpoints). */
  save(): DriverState {
    if (this.clockAppliedAtBoundary) throw new Error("SliceDriver.save: entries were applied at this boundary");
    return { slice: this.slice, halted: this.halted, nextDeadlineMs: this.nextDeadlineMs };
  }

  restore(state: DriverState): void {
    this.slice = state.slice;
    this.halted = state.halted;
    this.nextDeadlineMs = state.nextDeadlineMs;
    this.clockAppliedAtBoundary = false;
  }

  private disk(): BounceDisk {
    const disk = this.machine.disk;
    if (!disk) throw new DiskCompletionError("the log completes a disk request but this machine has no disk");
    return disk;
  }

  /** The implicit idle advance this boundary will take if nothing else is applied. */
  idleAdvanceMs(): number {
    if (!this.halted) return 0;
    // main_loop returns the time to v86's next timer deadline (at most 100 ms, also when the guest
    // halted with interrupts off).
    return Math.max(this.nextDeadlineMs, idleAdvanceMinMs);
  }

  /** Ends the boundary (implicit idle advance) and runs the next slice. */
  runSlice(): SliceResult {
    if (this.halted && !this.clockAppliedAtBoundary) this.clock.advance(this.idleAdvanceMs());
    this.clockAppliedAtBoundary = false;
    const result = this.machine.runSlice();
    this.slice++;
    this.halted = result.halted;
    this.nextDeadlineMs = result.nextDeadlineMs;
    return result;
  }
}
