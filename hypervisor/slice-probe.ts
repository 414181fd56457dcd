/**
 * SliceProbe: one slice of a recording re-run instruction by instruction, for a debugger. It is a
 * throwaway machine (no JIT) built from the state at a slice boundary, fed the time tape the
 * replaying machine recorded while it ran that slice (time-tape.ts), and stepped by an
 * InstructionStepper. After the slice's last instruction, `finish` makes the slice's end as v86's
 * main loop does (its timers, then interrupts): the probe then holds exactly the state the replaying
 * machine reached at the next boundary. A probe never goes on past that: the recorded timeline is
 * the replaying machine's.
 */
import type { LoadedMachine } from "../emulator/machine-config.js";
import { InstructionStepper, roundBudget } from "../emulator/instruction-stepper.js";
import { TapePlayer, type TimeTape } from "../emulator/time-tape.js";
import { V86Machine, type MachineCheckpoint } from "../emulator/v86-machine.js";

export interface ProbeSlice {
  /** The machine at the boundary the slice starts from (captured `forProbe`). */
  start: MachineCheckpoint;
  /** What the replaying machine read of its environment while it ran the slice. */
  tape: TimeTape;
  /** Instructions the slice ran. */
  instructions: number;
}

export class SliceProbe {
  /** Instructions executed so far in the slice. */
  executed = 0;
  private finished = false;

  private constructor(
    readonly machine: V86Machine,
    private readonly player: TapePlayer,
    readonly stepper: InstructionStepper,
    public slice: ProbeSlice,
  ) {}

  static async open(loaded: LoadedMachine, slice: ProbeSlice, diskBytes?: number): Promise<SliceProbe> {
    const player = new TapePlayer();
    const machine = await V86Machine.create({ loaded, env: player, jit: false, ...(diskBytes !== undefined ? { diskBytes } : {}) });
    const stepper = new InstructionStepper(machine.probeAccess());
    player.intercept = () => (stepper.check() ? (player.first ?? 0) : undefined);
    const probe = new SliceProbe(machine, player, stepper, slice);
    probe.reload(slice);
    return probe;
  }

  /**
   * Where the slice's rounds ended by their budget (instructions into the slice; see
   * InstructionStepper.roundStart), learnt once per slice from a run of the whole slice: a step
   * cannot end a round itself, so stepping makes those ends where they were.
   */
  private static rounds = new WeakMap<ProbeSlice, number[]>();

  /** Starts over on `slice` (this one again, or another), on the same machine. */
  reload(slice: ProbeSlice): void {
    this.restore(slice);
    if (SliceProbe.rounds.has(slice)) return;
    if (slice.instructions === 0) return void SliceProbe.rounds.set(slice, []);
    // the rounds of the slice, from a run of it whole (v86's own main loop, as the replay ran it)
    const start = this.stepper.counter;
    this.player.holdNext = true;
    this.player.lenient = true;
    try {
      this.stepper.runFree([]);
    } finally {
      this.player.lenient = false;
    }
    SliceProbe.rounds.set(slice, this.stepper.budgetEnds.map((c) => (c - start) >>> 0).filter((n) => n < slice.instructions));
    this.restore(slice);
  }

  private restore(slice: ProbeSlice): void {
    this.slice = slice;
    this.player.unload(); // restoring reads time too: as when a probe is built (it is all replaced)
    this.machine.restoreCheckpoint(slice.start, { probe: true });
    this.machine.clearJit(); // what the checkpoint's machine had compiled is not this one's
    this.player.load(slice.tape);
    this.stepper.startRound();
    this.executed = 0;
    this.finished = false;
  }

  /** Instructions left in the slice. */
  get left(): number {
    return this.slice.instructions - this.executed;
  }

  /** One instruction; false when the slice has none left. */
  step(): boolean {
    if (this.left <= 0) return false;
    const ends = SliceProbe.rounds.get(this.slice) ?? [];
    this.player.holdNext = true;
    const r = this.stepper.step();
    this.executed++;
    if (r === "stepped" && ends.includes(this.executed)) this.stepper.endRound(() => this.player.nowMs());
    if (r === "halted" || r === "ended") {
      // a HLT that stayed halted, or the main loop's last round ended: v86 made the slice's end itself
      if (this.left !== 0) throw new Error(`the slice ${r === "halted" ? "halted" : "ended"} ${this.left} instructions before its recorded end`);
      this.finished = true;
    }
    return true;
  }

  /**
   * Runs on, not instruction by instruction, until execution reaches one of `breakpoints` (linear
   * addresses of code that runs at CPL 0; step off one at EIP first, or it stops there at once) or
   * the slice ends. "hit": stopped before the instruction at a breakpoint, `executed` counts what
   * ran. "end": none reached in the slice: v86's main loop made the slice's end itself (its rounds
   * continued from where the probe was, see InstructionStepper), and the probe is at the next
   * boundary. Where a run does not end the slice where the replay did (a slice recorded with v86's
   * JIT: its blocks, and so its rounds, end elsewhere than the interpreter's), the slice is stepped
   * instead, from its start: exact as far as stepping is, slower.
   */
  runUntil(breakpoints: ReadonlySet<number>): "hit" | "end" {
    // past the round's budget inside its last block (after a step or a hit there): a run would end
    // the round at once; step to where the replay's ended
    while (this.left > 0 && this.stepper.roundRan >= roundBudget) {
      this.step();
      if (this.left > 0 && breakpoints.has(this.stepper.linearEip)) return "hit";
    }
    if (this.left <= 0) {
      this.finish();
      return "end";
    }
    const from = this.executed;
    this.player.holdNext = true;
    this.player.lenient = true; // (a run that left the recorded path must not throw out of v86)
    let r: { trapped: boolean; instructions: number };
    try {
      r = this.stepper.runFree(breakpoints);
    } finally {
      this.player.lenient = false;
    }
    if (r.trapped && this.executed + r.instructions < this.slice.instructions) {
      this.executed += r.instructions;
      return "hit";
    }
    if (!r.trapped && this.executed + r.instructions === this.slice.instructions) {
      // v86's main loop made the slice's end itself, where the replaying machine's did
      this.executed = this.slice.instructions;
      this.finished = true;
      return "end";
    }
    // Not where the replay ended it: a slice recorded with v86's JIT (whose blocks, and so rounds,
    // end elsewhere than the interpreter's). Step it instead, from its start, as exactly as stepping
    // follows it (its end is compared).
    this.reload(this.slice);
    while (this.executed < from) this.step();
    while (this.left > 0) {
      this.step();
      if (this.left > 0 && breakpoints.has(this.stepper.linearEip)) return "hit";
    }
    this.finish();
    return "end";
  }

  /** Steps the rest of the slice and makes its end: the probe is then at the next boundary. */
  finish(): void {
    if (!this.finished && this.slice.instructions === 0) {
      // a slice that ran nothing (the CPU stayed halted): v86's main loop ran the timers with the
      // time it read on entry, and returned; so does the probe's
      this.player.holdNext = true;
      this.stepper.runFree([]);
      this.finished = true;
      return;
    }
    while (this.step());
    if (!this.finished) {
      this.stepper.finishSlice(() => this.player.nowMs());
      this.finished = true;
    }
  }

  close(): void {
    this.machine.destroy();
  }
}
