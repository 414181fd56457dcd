/**
 * Slice progress: "the log is complete through this boundary". Record: written at every flush, so
 * a reader knows how far it may execute even when nothing else happened (the backup stops at the end
 * of what it has). Replay: marks how far a log cut short can be replayed safely.
 */
import type { EntryCodec } from "./log-entry.js";

export interface SliceProgressEntry {
  kind: "progress";
  slice: number;
  icount: number;
}

export const sliceProgress: EntryCodec<SliceProgressEntry> = {
  kind: "progress",
  code: 4,
  encodeFields: () => [],
  decodeFields: (slice, icount) => ({ kind: "progress", slice, icount }),
};
