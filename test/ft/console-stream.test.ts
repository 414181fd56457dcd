// The console stream holds output back until its slice is released, serves any offset it retains,
// and acknowledges input only once the input's slice is released.
import { describe, expect, it } from "vitest";
import { appliedClientsMax, ConsoleStream } from "../../ft/core/console-stream.js";
import { decodePeerMessage, encodePeerMessage } from "../../ft/wire/peer-messages.js";

const text = (d: Uint8Array | undefined) => new TextDecoder().decode(d);

describe("ConsoleStream", () => {
  it("releases output by slice and serves offsets", () => {
    const s = new ConsoleStream();
    s.append(1, new TextEncoder().encode("ab"));
    s.append(3, new TextEncoder().encode("cde"));
    s.append(4, new TextEncoder().encode("f"));
    expect(s.read(0)!.data.length).toBe(0);
    s.release(2);
    expect(text(s.read(0)!.data)).toBe("ab");
    s.release(4);
    expect(text(s.read(0)!.data)).toBe("abcdef");
    expect(text(s.read(3)!.data)).toBe("def");
    expect(text(s.read(2, 2)!.data)).toBe("cd");
  });

  it("acknowledges input applied at boundary k once slice k+1 is released, once", () => {
    const s = new ConsoleStream();
    s.inputApplied(4, "c", 1);
    s.inputApplied(5, "c", 2);
    expect(s.release(4)).toEqual([]);
    expect(s.release(5)).toEqual([{ client: "c", seq: 1 }]);
    expect(s.release(9)).toEqual([{ client: "c", seq: 2 }]);
    expect(s.release(9)).toEqual([]);
    expect(s.appliedInput.get("c")).toBe(2);
  });

  it("retains a bounded tail", () => {
    const s = new ConsoleStream(10);
    for (let i = 0; i < 10; i++) s.append(i + 1, new TextEncoder().encode("xxxx"));
    s.release(100);
    expect(s.retainedFrom).toBeGreaterThan(0);
    expect(s.read(0)).toBeUndefined();
    expect(text(s.read(36)!.data)).toBe("xxxx");
  });

  it("a stream started from a checkpoint serves the primary's tail before its offset", () => {
    const primary = new ConsoleStream();
    primary.append(1, new TextEncoder().encode("hello "));
    primary.append(2, new TextEncoder().encode("world"));
    primary.append(3, new TextEncoder().encode("!"));
    primary.release(2);
    const tail = primary.releasedTail(8);
    expect(text(tail)).toBe("lo world");
    const joined = new ConsoleStream();
    joined.startAt(primary.released, [["c", 3]], tail);
    expect(joined.retainedFrom).toBe(3);
    expect(text(joined.read(3)!.data)).toBe("lo world");
    expect(joined.read(2)).toBeUndefined();
    joined.append(3, new TextEncoder().encode("!"));
    expect(text(joined.read(5)!.data)).toBe(" world");
    joined.release(3);
    expect(text(joined.read(5)!.data)).toBe(" world!");
    expect(joined.end).toBe(primary.end);
  });

  it("forgets the oldest acknowledged clients, so a checkpoint's input list stays bounded (10,001 clients typed)", () => {
    const s = new ConsoleStream();
    for (let i = 0; i < 10_001; i++) {
      s.inputApplied(i, `client-${i}`, 1);
      s.release(i + 1);
    }
    // the newest client's ack is due only now; it is kept, with the most recent others
    s.inputApplied(20_000, "late", 3);
    expect(s.appliedInput.size).toBeLessThanOrEqual(appliedClientsMax + 1);
    expect(s.appliedInput.get("late")).toBe(3);
    expect(s.appliedInput.get("client-10000")).toBe(1);
    expect(s.appliedInput.has("client-0")).toBe(false);
    const inputs = [...s.appliedInput.entries()];
    const m = { type: "checkpoint" as const, epoch: 1, first: 5, slice: 9, part: 0, parts: 1, data: new Uint8Array(1), console: 0, inputs };
    expect(decodePeerMessage(encodePeerMessage(m))).toEqual(m);
  });

  it("never forgets a client whose acknowledgement is still due", () => {
    const s = new ConsoleStream();
    for (let i = 0; i <= appliedClientsMax; i++) s.inputApplied(i, `c${i}`, 1); // nothing released yet
    expect(s.appliedInput.size).toBe(appliedClientsMax + 1);
    expect(s.appliedInput.get("c0")).toBe(1);
    s.release(appliedClientsMax + 1);
    s.inputApplied(appliedClientsMax + 1, "next", 1);
    expect(s.appliedInput.size).toBe(appliedClientsMax);
    expect(s.appliedInput.has("c0")).toBe(false);
  });
});

