/**
 * MachineSession: a machine, its virtual clock and its slice driver, built the same way for every
 * role (run, record, replay, primary, backup) so that they can only differ in what drives them.
 */
import type { LoadedMachine } from "../emulator/machine-config.js";
import { TapeRecorder } from "../emulator/time-tape.js";
import { V86Machine } from "../emulator/v86-machine.js";
import { SliceDriver } from "./slice-driver.js";
import { VirtualClock, type ClockParams } from "./virtual-clock.js";

export interface SessionOptions {
  loaded: LoadedMachine;
  /** Size of the guest's hard disk in bytes (none if absent). Its data comes through a DiskPort or the log. */
  diskBytes?: number;
  clock: ClockParams;
  jit?: boolean;
  /** Keep a TapeRecorder between the clock and the machine (a debugger tapes the slices it probes). */
  tape?: boolean;
}

/** 100 MIPS: close to what v86 reaches on this kind of host; the recorder corrects it live. */
export const nominalMsPerInstruction = 1e-5;

export function defaultClockParams(epochMs: number, seed: number): ClockParams {
  return { epochMs, msPerInstruction: nominalMsPerInstruction, seed };
}

export class MachineSession {
  private constructor(
    readonly machine: V86Machine,
    readonly clock: VirtualClock,
    readonly driver: SliceDriver,
    /** With `tape`: records what the machine reads of its environment, when started. */
    readonly tape?: TapeRecorder,
  ) {}

  static async open(options: SessionOptions): Promise<MachineSession> {
    const clock = new VirtualClock(options.clock);
    const tape = options.tape ? new TapeRecorder(clock) : undefined;
    const machine = await V86Machine.create({
      loaded: options.loaded,
      env: tape ?? clock,
      ...(options.diskBytes !== undefined ? { diskBytes: options.diskBytes } : {}),
      ...(options.jit !== undefined ? { jit: options.jit } : {}),
    });
    clock.attach(() => machine.liveIcount());
    return new MachineSession(machine, clock, new SliceDriver(machine, clock), tape);
  }

  close(): void {
    this.machine.destroy();
  }
}
