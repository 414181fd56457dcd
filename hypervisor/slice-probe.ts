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
import { InstructionStepper } from "../emulator/instruction-stepper.js";
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

  /** Starts over on `slice` (this one again, or another), on the same machine. */
  reload(slice: ProbeSlice): void {
    this.slice = slice;
    this.player.unload(); // restoring reads time too: as when a probe is built (it is all replaced)
    this.machine.restoreCheckpoint(slice.start, { probe: true });
    this.machine.clearJit(); // what the checkpoint's machine had compiled is not this one's
    this.player.load(slice.tape);
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
    this.player.holdNext = true;
    const r = this.stepper.step();
    this.executed++;
    if (r === "halted") {
      // a HLT that stayed halted: v86's main loop made the slice's end itself
      if (this.left !== 0) throw new Error(`the slice halted ${this.left} instructions before its recorded end`);
      this.finished = true;
    }
    return true;
  }

  /** Steps the rest of the slice and makes its end: the probe is then at the next boundary. */
  finish(): void {
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
