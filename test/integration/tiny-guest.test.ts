// The tiny guest boots without a BIOS and answers every command of its language.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuestDriver } from "../support/guest-driver.js";

const prompt = "tiny> ";
let g: GuestDriver;

/** Sends a command and returns its answer lines (echo and prompt removed). */
function ask(cmd: string): string {
  const out = g.command(cmd, prompt);
  return out.replace(cmd, "").replace(prompt, "").trim();
}

describe("tiny guest", () => {
  beforeAll(async () => {
    g = await GuestDriver.boot({ image: "tiny", epochMs: Date.UTC(2026, 10, 22, 12, 34, 56) });
    g.runUntil(prompt, 10_000);
  });
  afterAll(() => g.close());

  it("prints its banner", () => {
    expect(g.output).toContain("tiny: lockstep test kernel ready");
  });

  it("answers ping", () => {
    expect(ask("ping")).toBe("pong");
  });

  it("counts PIT ticks at 100 Hz of guest time", () => {
    const a = parseInt(ask("ticks").split(" ")[1]!, 16);
    g.runSlices(1);
    const slept = ask("sleep 32"); // 0x32 = 50 ticks
    expect(slept).toMatch(/^slept ticks 000000(32|33)$/);
    const b = parseInt(ask("ticks").split(" ")[1]!, 16);
    expect(b - a).toBeGreaterThanOrEqual(50);
    expect(b - a).toBeLessThan(60);
  });

  it("reads the TSC and reports a positive delta", () => {
    ask("tsc");
    const m = ask("tsc").match(/^tsc ([0-9A-F]{16}) delta ([0-9A-F]{8})$/);
    expect(m).not.toBeNull();
    expect(parseInt(m![2]!, 16)).toBeGreaterThan(0);
  });

  it("reads the PIT counter below its reload value", () => {
    const m = ask("pit").match(/^pit ([0-9A-F]{4})$/);
    expect(m).not.toBeNull();
    expect(parseInt(m![1]!, 16)).toBeLessThanOrEqual(11932);
  });

  it("reads the CMOS clock, which follows the virtual clock's epoch", () => {
    expect(ask("rtc")).toMatch(/^rtc 2026-11-22 12:3[4-5]:[0-5][0-9]$/);
  });

  it("reports keyboard scancodes by interrupt", () => {
    const before = parseInt(ask("keys").split(" ")[1]!, 16);
    g.keys([0x1e, 0x9e]);
    g.runUntil("kbd 9E", 1000);
    expect(g.output).toContain("kbd 1E");
    const after = parseInt(ask("keys").split(" ")[1]!, 16);
    expect(after - before).toBe(2);
  });

  it("writes and reads back a disk sector through IDE PIO", () => {
    const wrote = ask("write 5 41").match(/^wrote 00000005 hash ([0-9A-F]{8})$/);
    expect(wrote).not.toBeNull();
    const read = ask("read 5").match(/^sector 00000005 hash ([0-9A-F]{8}) first ([0-9A-F]{8})$/);
    expect(read).not.toBeNull();
    expect(read![1]).toBe(wrote![1]);
    expect(read![2]).toBe("44434241"); // bytes 41 42 43 44, little-endian
    expect(Array.from(g.disk!.subarray(5 * 512, 5 * 512 + 4))).toEqual([0x41, 0x42, 0x43, 0x44]);
    expect(ask("read 6")).toMatch(/^sector 00000006 hash [0-9A-F]{8} first 00000000$/);
  });

  it("checksums memory", () => {
    expect(ask("memsum")).toMatch(/^memsum [0-9A-F]{8}$/);
  });

  it("spins and reports elapsed ticks and TSC", () => {
    const m = ask("busy 100").match(/^busy ticks ([0-9A-F]{8}) tsc ([0-9A-F]{8})$/);
    expect(m).not.toBeNull();
    expect(parseInt(m![2]!, 16)).toBeGreaterThan(0);
  });

  it("lists its commands and rejects bad input", () => {
    expect(ask("help")).toContain("ping ticks tsc pit rtc keys read L write L B memsum busy N sleep N help");
    expect(ask("bogus")).toBe("error: unknown command (try help)");
    expect(ask("read xyz")).toBe("error: bad argument (numbers are hexadecimal)");
  });
});
