/**
 * Disk completions (README, "The shared disk"). The guest's disk requests are issued
 * deterministically (every machine fed the same log issues the same requests with the same ids);
 * only their completions come from outside, so only those are logged.
 *
 * - disk-read: a part of the data of read request `id`, starting `at` bytes into it. Record: the
 *   primary's backend read lands in a bounce buffer and is logged at the next slice boundary, split
 *   into parts of at most `diskDataChunkBytes`; replay: the parts are handed to the guest's disk
 *   controller at exactly that boundary, and the request completes with its last part. The backup
 *   and the offline replayer never read the disk.
 * - disk-write: write request `id` is on the disk. Record: logged at the first boundary after the
 *   primary's backend write returned (writes are issued only once the backup has the log through the
 *   slice that issued them: the output rule); replay: the guest's controller is told the write is
 *   done. A backup that takes over re-issues every request it has no completion for.
 */
import type { EntryCodec } from "./log-entry.js";

export interface DiskReadEntry {
  kind: "disk-read";
  slice: number;
  icount: number;
  id: number;
  at: number;
  data: Uint8Array;
}

export interface DiskWriteEntry {
  kind: "disk-write";
  slice: number;
  icount: number;
  id: number;
}

/** Read data per entry at most (bounds frame and message sizes). */
export const diskDataChunkBytes = 256 * 1024;

const isId = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 1;

export const diskRead: EntryCodec<DiskReadEntry> = {
  kind: "disk-read",
  code: 7,
  encodeFields: (e) => [e.id, e.at, e.data],
  decodeFields(slice, icount, [id, at, data]) {
    if (!isId(id)) throw "request id must be a positive integer";
    if (typeof at !== "number" || !Number.isSafeInteger(at) || at < 0 || at % 512 !== 0) throw "offset into the request must be a non-negative multiple of 512";
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > diskDataChunkBytes) throw `data must be 1 to ${diskDataChunkBytes} bytes`;
    return { kind: "disk-read", slice, icount, id, at, data: new Uint8Array(data) };
  },
};

export const diskWrite: EntryCodec<DiskWriteEntry> = {
  kind: "disk-write",
  code: 8,
  encodeFields: (e) => [e.id],
  decodeFields(slice, icount, [id]) {
    if (!isId(id)) throw "request id must be a positive integer";
    return { kind: "disk-write", slice, icount, id };
  },
};
