/**
 * Time tapes: the reads a machine made of its environment (virtual time, the calendar clock,
 * randomness) while it ran one slice, recorded in order, and played back to a probe machine that
 * re-runs that slice instruction by instruction. The probe must see the same values in the same
 * order: v86 derives time from its instruction counter, which a probe (interpreting, stopping
 * between instructions) advances differently from the machine that ran the slice whole.
 */
import type { GuestEnvironment } from "./guest-environment.js";

export interface TimeTape {
  now: number[];
  epoch: number[];
  random: number[];
  randomU32: number[];
}

/** Passes every read through to `inner`; between `start` and `stop` it also keeps them. */
export class TapeRecorder implements GuestEnvironment {
  private tape: TimeTape | undefined;

  constructor(private readonly inner: GuestEnvironment) {}

  start(): void {
    this.tape = { now: [], epoch: [], random: [], randomU32: [] };
  }

  stop(): TimeTape {
    const t = this.tape;
    if (!t) throw new Error("TapeRecorder.stop: not recording");
    this.tape = undefined;
    return t;
  }

  private keep(kind: keyof TimeTape, v: number): number {
    this.tape?.[kind].push(v);
    return v;
  }

  nowMs(): number {
    return this.keep("now", this.inner.nowMs());
  }

  epochMs(): number {
    return this.keep("epoch", this.inner.epochMs());
  }

  random(): number {
    return this.keep("random", this.inner.random());
  }

  randomU32(): number {
    return this.keep("randomU32", this.inner.randomU32());
  }
}

/** The tape ran out: the probe read more than the machine did (it left the recorded path). */
export class TapeExhaustedError extends Error {}

/**
 * Plays a tape back. `intercept` sees every time read first: a number it returns is the answer and
 * the tape is not used (a probe answers the reads its own traps cause). `holdNext` makes the next time read return the
 * slice's first value without using the tape: the read v86 makes on entering its main loop, which
 * the machine that ran the slice made once and a probe makes on every entry.
 */
export class TapePlayer implements GuestEnvironment {
  private tape: TimeTape | undefined;
  private at = { now: 0, epoch: 0, random: 0, randomU32: 0 };
  intercept: () => number | undefined = () => undefined;
  holdNext = false;
  /**
   * Past the tape's end, reads repeat its last value instead of throwing: a probe run freely from
   * inside its slice goes on past the slice's end (v86's main loop counts its budget from where it
   * was entered), and what it does there is thrown away.
   */
  lenient = false;

  /** The slice's first time read (v86's main-loop entry), once a tape is loaded. */
  get first(): number | undefined {
    return this.tape?.now[0];
  }

  /** No tape: reads answer 0 (while a machine is built or restored, before its slice's tape is loaded). */
  unload(): void {
    this.tape = undefined;
  }

  load(tape: TimeTape): void {
    this.tape = tape;
    // the first time read of a slice is v86's main-loop entry: held, not played
    this.at = { now: 1, epoch: 0, random: 0, randomU32: 0 };
  }

  /** Reads left of each kind (all zero once the slice's end has been played). */
  get left(): { now: number; epoch: number; random: number; randomU32: number } {
    const t = this.tape ?? { now: [], epoch: [], random: [], randomU32: [] };
    return { now: t.now.length - this.at.now, epoch: t.epoch.length - this.at.epoch, random: t.random.length - this.at.random, randomU32: t.randomU32.length - this.at.randomU32 };
  }

  private next(kind: keyof TimeTape): number {
    // before a tape is loaded: the machine being built (its state is replaced by the slice's start)
    if (!this.tape) return 0;
    const list = this.tape[kind];
    if (this.at[kind] >= list.length && this.lenient) return list.at(-1) ?? 0;
    if (this.at[kind] >= list.length) throw new TapeExhaustedError(`the probe read ${kind} more often than the recorded slice did (${list.length} reads)`);
    return list[this.at[kind]++]!;
  }

  nowMs(): number {
    if (this.holdNext && this.tape) {
      this.holdNext = false;
      const first = this.tape.now[0];
      if (first === undefined) throw new TapeExhaustedError("the recorded slice read no time");
      return first;
    }
    const held = this.intercept();
    return held !== undefined ? held : this.next("now");
  }

  epochMs(): number {
    return this.next("epoch");
  }

  random(): number {
    return this.next("random");
  }

  randomU32(): number {
    return this.next("randomU32");
  }
}
