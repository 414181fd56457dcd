/**
 * The virtual clock: guest time as a pure function of the 64-bit instruction count and the clock
 * adjustments the log carries:
 *
 *     t(icount) = baseMs + (icount - baseIcount) * msPerInstruction
 *
 * `baseMs` moves forward when the guest halts (by v86's time to its next deadline, a deterministic
 * value) and when a logged adjustment says so; `msPerInstruction` changes only through logged
 * adjustments, which rebase the formula so that time stays continuous. Every read is strictly greater
 * than the one before: v86's TSC code extrapolates with hidden statics when it sees the same value
 * twice. Timer interrupts, RDTSC and PIT/RTC reads all derive from this clock, so none
 * of them is ever logged. The clock never reads the host's time; pacing to wall time is the
 * recorder's business, expressed through `advance` and `setRate`.
 */
import type { GuestEnvironment } from "../emulator/guest-environment.js";

export interface ClockParams {
  /** Unix epoch ms the guest's RTC reads at virtual time 0. */
  epochMs: number;
  /** Nominal speed: ms of guest time per instruction (1e-5 = 100 MIPS). */
  msPerInstruction: number;
  /** Seed of the guest's random generator (RDRAND, Math.random). */
  seed: number;
}

export interface ClockState {
  baseMs: number;
  baseIcount: number;
  msPerInstruction: number;
  lastReadMs: number;
  rng: [number, number, number, number];
}

/** See `epochMs()`. */
export const rtcPhaseMs = 500;

/** The smallest step between two reads: 1 ns. */
const readEpsilonMs = 1e-6;

export class VirtualClock implements GuestEnvironment {
  private baseMs = 0;
  private baseIcount = 0;
  private msPerInstructionNow: number;
  private lastReadMs = 0;
  private rng: Xoshiro128;
  private readIcount: () => number = () => 0;

  constructor(readonly params: ClockParams) {
    this.msPerInstructionNow = params.msPerInstruction;
    this.rng = new Xoshiro128(params.seed);
  }

  /** Connects the clock to the machine's live instruction count. */
  attach(readIcount: () => number): void {
    this.readIcount = readIcount;
  }

  get msPerInstruction(): number {
    return this.msPerInstructionNow;
  }

  /** Guest time at an instruction count, without the strictly-increasing adjustment. */
  timeAt(icount: number): number {
    return this.baseMs + (icount - this.baseIcount) * this.msPerInstructionNow;
  }

  /** Guest time now (no read side effect): the larger of the formula and the last read. */
  peekMs(): number {
    return Math.max(this.timeAt(this.readIcount()), this.lastReadMs);
  }

  nowMs(): number {
    const t = this.timeAt(this.readIcount());
    this.lastReadMs = t > this.lastReadMs ? t : this.lastReadMs + readEpsilonMs;
    return this.lastReadMs;
  }

  /**
   * The guest's calendar clock (RTC, `Date`): the epoch plus guest time, plus `rtcPhaseMs`. The
   * RTC shows whole seconds and Linux reads it once at boot, truncating: with the RTC's seconds
   * ticking at the half second, the guest's clock starts within ±0.5 s of the host's instead of
   * anywhere up to 1 s behind it.
   */
  epochMs(): number {
    return Math.floor(this.params.epochMs + this.peekMs() + rtcPhaseMs);
  }

  random(): number {
    return this.rng.next() / 4294967296;
  }

  randomU32(): number {
    return this.rng.next();
  }

  /** Moves guest time forward by `ms` (idle time, or catching up with wall time). Never backwards. */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new Error(`VirtualClock.advance: bad amount ${ms}`);
    this.baseMs += ms;
  }

  /** Changes the rate from the given instruction count on, keeping time continuous. */
  setRate(msPerInstruction: number, icount: number): void {
    if (!(msPerInstruction > 0) || !Number.isFinite(msPerInstruction)) {
      throw new Error(`VirtualClock.setRate: bad rate ${msPerInstruction}`);
    }
    this.baseMs = this.timeAt(icount);
    this.baseIcount = icount;
    this.msPerInstructionNow = msPerInstruction;
  }

  save(): ClockState {
    return {
      baseMs: this.baseMs,
      baseIcount: this.baseIcount,
      msPerInstruction: this.msPerInstructionNow,
      lastReadMs: this.lastReadMs,
      rng: this.rng.save(),
    };
  }

  restore(state: ClockState): void {
    this.baseMs = state.baseMs;
    this.baseIcount = state.baseIcount;
    this.msPerInstructionNow = state.msPerInstruction;
    this.lastReadMs = state.lastReadMs;
    this.rng.restore(state.rng);
  }
}

/** xoshiro128**: small, fast, and its whole state fits in a log header. */
class Xoshiro128 {
  private s: Uint32Array;
  constructor(seed: number) {
    // splitmix32 expands the seed into four non-zero words
    this.s = new Uint32Array(4);
    let z = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) >>> 0;
      let x = z;
      x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
      x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (x ^ (x >>> 16)) >>> 0 || 1;
    }
  }
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }
  save(): [number, number, number, number] {
    return [this.s[0]!, this.s[1]!, this.s[2]!, this.s[3]!];
  }
  restore(words: [number, number, number, number]): void {
    this.s.set(words);
  }
}

const rotl = (x: number, k: number) => ((x << k) | (x >>> (32 - k))) >>> 0;
