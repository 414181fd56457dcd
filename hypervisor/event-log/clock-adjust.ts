/**
 * Clock adjustment: the only way wall time enters the guest. Record: the live primary logs one when
 * guest time must jump forward to catch up with wall time, when input ends an idle wait before
 * v86's next timer deadline (`advanceMs` then replaces the implicit idle advance of that halted
 * boundary), or when the emulator's speed makes a new rate necessary. Replay: applied verbatim;
 * `advanceMs` is never negative, so guest time never goes backwards.
 */
import type { EntryCodec } from "./log-entry.js";

/**
 * Bounds of what a log may say about time: far beyond any real run (a forward jump of 31 years; a
 * rate of 10^-12 to 1000 ms per instruction) but small enough that guest time stays finite. An
 * overflow to Infinity would stop the machine with a bare error deep in the clock instead of a
 * refusal of the entry that caused it.
 */
export const clockAdvanceMsMax = 1e12;
export const msPerInstructionMin = 1e-12;
export const msPerInstructionMax = 1e3;

export function isRate(v: unknown): v is number {
  return typeof v === "number" && v >= msPerInstructionMin && v <= msPerInstructionMax;
}

export interface ClockAdjustEntry {
  kind: "clock";
  slice: number;
  icount: number;
  /** Move guest time forward by this many ms. */
  advanceMs?: number;
  /** New ms of guest time per instruction from this boundary on. */
  msPerInstruction?: number;
}

export const clockAdjust: EntryCodec<ClockAdjustEntry> = {
  kind: "clock",
  code: 3,
  encodeFields: (e) => [e.advanceMs ?? null, e.msPerInstruction ?? null],
  decodeFields(slice, icount, [advanceMs, msPerInstruction]) {
    const entry: ClockAdjustEntry = { kind: "clock", slice, icount };
    if (advanceMs !== null) {
      if (typeof advanceMs !== "number" || !(advanceMs >= 0 && advanceMs <= clockAdvanceMsMax)) throw `advanceMs must be a number from 0 to ${clockAdvanceMsMax}`;
      entry.advanceMs = advanceMs;
    }
    if (msPerInstruction !== null) {
      if (!isRate(msPerInstruction)) throw `msPerInstruction must be a number from ${msPerInstructionMin} to ${msPerInstructionMax}`;
      entry.msPerInstruction = msPerInstruction;
    }
    if (entry.advanceMs === undefined && entry.msPerInstruction === undefined) throw "adjusts nothing";
    return entry;
  },
};
