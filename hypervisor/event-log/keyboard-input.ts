/**
 * Keyboard input: PS/2 scancodes for the 8042. Record: queued as they arrive, logged at the next
 * slice boundary; replay: delivered to the keyboard controller at exactly that boundary. Keys typed
 * at a console client (the screen) carry its (client, seq), as serial input does, so that a new
 * primary applies a client's resent keys exactly once.
 */
import type { EntryCodec } from "./log-entry.js";
import { withSource, type InputSource } from "./serial-input.js";

export interface KeyboardInputEntry {
  kind: "keys";
  slice: number;
  icount: number;
  data: Uint8Array;
  source?: InputSource;
}

export const keyboardChunkBytesMax = 256;

export const keyboardInput: EntryCodec<KeyboardInputEntry> = {
  kind: "keys",
  code: 2,
  encodeFields: (e) => (e.source ? [e.data, e.source.client, e.source.seq] : [e.data]),
  decodeFields(slice, icount, [data, client, seq]) {
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > keyboardChunkBytesMax) {
      throw `data must be 1 to ${keyboardChunkBytesMax} scancodes`;
    }
    // a plain copy: msgpackr yields Buffers that view the whole frame
    return withSource<KeyboardInputEntry>({ kind: "keys", slice, icount, data: new Uint8Array(data) }, client, seq);
  },
};
