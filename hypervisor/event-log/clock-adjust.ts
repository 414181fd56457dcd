/**
 * Clock adjustment: the only way wall time enters the guest. Record: the live primary logs one when
 * guest time must jump forward to catch up with wall time, when input ends an idle wait before
 * v86's next timer deadline (`advanceMs` then replaces the implicit idle advance of that halted
 * boundary), or when the emulator's speed makes a new rate necessary. Replay: applied verbatim;
 * `advanceMs` is never negative, so guest time never goes backwards.
 */
import type { EntryCodec } from "./log-entry.js";

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
      if (typeof advanceMs !== "number" || !(advanceMs >= 0) || !Number.isFinite(advanceMs)) throw "advanceMs must be a finite number >= 0";
      entry.advanceMs = advanceMs;
    }
    if (msPerInstruction !== null) {
      if (typeof msPerInstruction !== "number" || !(msPerInstruction > 0) || !Number.isFinite(msPerInstruction)) {
        throw "msPerInstruction must be a finite number > 0";
      }
      entry.msPerInstruction = msPerInstruction;
    }
    if (entry.advanceMs === undefined && entry.msPerInstruction === undefined) throw "adjusts nothing";
    return entry;
  },
};
