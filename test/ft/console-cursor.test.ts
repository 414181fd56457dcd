// The console client's input: serial bytes and keyboard scancodes share one sequence (one
// exactly-once path); keys go in messages of at most one keyboard log entry, and a resend keeps
// what each message was.
import { describe, expect, it } from "vitest";
import { ConsoleCursor } from "../../ft/core/console-cursor.js";
import { consoleKeysBytesMax } from "../../ft/wire/console-messages.js";
import { keyboardChunkBytesMax } from "../../hypervisor/event-log/keyboard-input.js";

describe("ConsoleCursor input", () => {
  it("numbers serial and key input in one sequence; keys in messages of one keyboard entry at most", () => {
    expect(consoleKeysBytesMax).toBe(keyboardChunkBytesMax);
    const c = new ConsoleCursor();
    const serial = c.input(new Uint8Array(10))!;
    const keys = c.input(new Uint8Array(consoleKeysBytesMax + 10).fill(0x1e), true)!;
    expect(serial.map((m) => m.type === "input" && [m.seq, m.data.length, m.keys])).toEqual([[1, 10, undefined]]);
    expect(keys.map((m) => m.type === "input" && [m.seq, m.data.length, m.keys])).toEqual([
      [2, consoleKeysBytesMax, true],
      [3, 10, true],
    ]);
    expect(c.pending().map((m) => m.type === "input" && [m.seq, m.keys])).toEqual([
      [1, undefined],
      [2, true],
      [3, true],
    ]);
  });
});
