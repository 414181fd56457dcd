// Keys for a guest's keyboard: characters, and what a terminal (or the web view) sends for keys that
// type none — arrows and editing keys (extended: 0xE0 before make and break), function keys, Ctrl.
import { describe, expect, it } from "vitest";
import { scancodesFor, scancodesForTerminal } from "../../emulator/scancodes.js";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");

describe("scancodes", () => {
  it("types characters with Shift where a US keyboard needs it", () => {
    expect(hex(scancodesFor("aA\r"))).toBe("1e 9e 2a 1e 9e aa 1c 9c");
  });

  it("turns a terminal's escape sequences into their keys, and control characters into Ctrl", () => {
    expect(hex(scancodesForTerminal("\x1b[A\x1b[D"))).toBe("e0 48 e0 c8 e0 4b e0 cb");
    expect(hex(scancodesForTerminal("\x1bOP\x1b[24~"))).toBe("3b bb 58 d8");
    expect(hex(scancodesForTerminal("\x1b[3~\x1b[5~"))).toBe("e0 53 e0 d3 e0 49 e0 c9");
    expect(hex(scancodesForTerminal("\x03"))).toBe("1d 2e ae 9d"); // Ctrl-C
    expect(hex(scancodesForTerminal("\x1b"))).toBe("01 81"); // Esc alone
    expect(hex(scancodesForTerminal("x\t\x7f\r"))).toBe("2d ad 0f 8f 0e 8e 1c 9c");
  });
});
