/**
 * Digest: the recorder's state digest (xxh64 of RAM and CPU state) at a boundary. Replay computes
 * its own at the same boundary and stops with a divergence error carrying both on mismatch (rr's
 * checksum, taken periodically).
 */
import type { EntryCodec } from "./log-entry.js";

export interface DigestEntry {
  kind: "digest";
  slice: number;
  icount: number;
  digest: string;
}

export const digestCheck: EntryCodec<DigestEntry> = {
  kind: "digest",
  code: 5,
  encodeFields: (e) => [e.digest],
  decodeFields(slice, icount, [digest]) {
    if (typeof digest !== "string" || !/^[0-9a-f]{16}$/.test(digest)) throw "digest must be 16 hex digits";
    return { kind: "digest", slice, icount, digest };
  },
};
