/**
 * Control: events of the run itself rather than of the guest. `power-off` ends a recording cleanly:
 * a log without it was cut short (the recorder died), which replay reports. `checkpoint`: the primary
 * captured the machine at this boundary (for a joining backup, or a recording's periodic
 * checkpoint); capturing clears the JIT cache, which decides where later slices end, so every
 * machine that follows the log clears its own there too.
 */
import type { EntryCodec } from "./log-entry.js";

export const controlActions = ["power-off", "checkpoint"] as const;
export type ControlAction = (typeof controlActions)[number];

export interface ControlEntry {
  kind: "control";
  slice: number;
  icount: number;
  action: ControlAction;
}

export const control: EntryCodec<ControlEntry> = {
  kind: "control",
  code: 6,
  encodeFields: (e) => [e.action],
  decodeFields(slice, icount, [action]) {
    if (!(controlActions as readonly unknown[]).includes(action)) throw `unknown action ${JSON.stringify(action)}`;
    return { kind: "control", slice, icount, action: action as ControlAction };
  },
};
