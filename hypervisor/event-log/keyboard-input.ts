/**
 * Keyboard input: PS/2 scancodes for the 8042. Record: queued as they arrive, logged at the next
 * slice boundary; replay: delivered to the keyboard controller at exactly that boundary.
 */
import type { EntryCodec } from "./log-entry.js";

export interface KeyboardInputEntry {
  kind: "keys";
  slice: number;
  icount: number;
  data: Uint8Array;
}

export const keyboardChunkBytesMax = 256;

export const keyboardInput: EntryCodec<KeyboardInputEntry> = {
  kind: "keys",
  code: 2,
  encodeFields: (e) => [e.data],
  decodeFields(slice, icount, [data]) {
    if (!(data instanceof Uint8Array) || data.length === 0 || data.length > keyboardChunkBytesMax) {
      throw `data must be 1 to ${keyboardChunkBytesMax} scancodes`;
    }
    // a plain copy: msgpackr yields Buffers that view the whole frame
    return { kind: "keys", slice, icount, data: new Uint8Array(data) };
  },
};
