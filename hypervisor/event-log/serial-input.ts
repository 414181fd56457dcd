/**
 * Serial input: bytes that arrived on COM1 from the console. Record: the primary queues bytes as they
 * arrive and logs them at the next slice boundary; replay: the bytes are delivered to the UART at
 * exactly that boundary.
 */
import type { EntryCodec } from "./log-entry.js";

export interface SerialInputEntry {
  kind: "serial";
  slice: number;
  icount: number;
  data: Uint8Array;
}

/** Bytes per entry at most; longer input is split (bounds frame size). */
export const serialChunkBytesMax = 4096;

export const serialInput: EntryCodec<SerialInputEntry> = {
  kind: "serial",
  code: 1,
  encodeFields: (e) => [e.data],
  decodeFields(slice, icount, [data]) {
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > serialChunkBytesMax) {
      throw `data must be 1 to ${serialChunkBytesMax} bytes`;
    }
    // a plain copy: msgpackr yields Buffers that view the whole frame
    return { kind: "serial", slice, icount, data: new Uint8Array(data) };
  },
};
