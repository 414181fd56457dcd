/**
 * Serial input: bytes that arrived on COM1 from the console. Record: the primary queues bytes as they
 * arrive and logs them at the next slice boundary; replay: the bytes are delivered to the UART at
 * exactly that boundary. Input from a console client carries its (client, seq) so that a backup that
 * takes over knows which input was applied and applies a client's resent input exactly once.
 */
import type { EntryCodec } from "./log-entry.js";

export interface SerialInputEntry {
  kind: "serial";
  slice: number;
  icount: number;
  data: Uint8Array;
  source?: InputSource;
}

/** Bytes per entry at most; longer input is split (bounds frame size). */
export const serialChunkBytesMax = 4096;

export const serialInput: EntryCodec<SerialInputEntry> = {
  kind: "serial",
  code: 1,
  encodeFields: (e) => (e.source ? [e.data, e.source.client, e.source.seq] : [e.data]),
  decodeFields(slice, icount, [data, client, seq]) {
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > serialChunkBytesMax) {
      throw `data must be 1 to ${serialChunkBytesMax} bytes`;
    }
    const entry: SerialInputEntry = { kind: "serial", slice, icount, data: new Uint8Array(data) }; // a plain copy: msgpackr yields Buffers that view the whole frame
    return withSource(entry, client, seq);
  },
};

/** A console client's input: which client, and its sequence number (see the console protocol). */
export interface InputSource {
  client: string;
  seq: number;
}

/** The entry with the (client, seq) of the console input it carries, checked, if the log gave one. */
export function withSource<E extends { source?: InputSource }>(entry: E, client: unknown, seq: unknown): E {
  if (client === undefined) return entry;
  if (typeof client !== "string" || client.length === 0 || client.length > 64) throw "source client must be a string of 1 to 64 characters";
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 1) throw "source seq must be a positive integer";
  entry.source = { client, seq };
  return entry;
}
