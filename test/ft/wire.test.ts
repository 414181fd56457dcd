// The wire codec: every message round-trips; bad frames are rejected with a stable code.
import { describe, expect, it } from "vitest";
import { packr, WireError, WireErrorCode, wireFrameBytesMax } from "../../ft/wire/envelope.js";
import { decodeConsoleClientMessage, decodeConsoleServerMessage, encodeConsoleMessage } from "../../ft/wire/console-messages.js";
import { decodePeerMessage, encodePeerMessage, type PeerMessage } from "../../ft/wire/peer-messages.js";

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof WireError) return e.code;
    throw e;
  }
  throw new Error("expected a WireError");
}

describe("wire codec", () => {
  it("round-trips every peer message", () => {
    const msgs: PeerMessage[] = [
      { type: "hello", epoch: 0, nodeId: "b", have: 12 },
      { type: "log", epoch: 3, first: 7, entries: [{ kind: "serial", slice: 4, icount: 2 ** 40, data: new Uint8Array([1, 2]), source: { client: "c", seq: 9 } }, { kind: "progress", slice: 5, icount: 2 ** 40 + 1 }] },
      { type: "ack", epoch: 3, have: 9, complete: 5, executed: 4 },
      { type: "heartbeat", epoch: 3, nodeId: "a" },
      { type: "heartbeat", epoch: 3, nodeId: "a", at: 1_700_000_000_123 },
      { type: "heartbeat", epoch: 3, nodeId: "b", echo: 1_700_000_000_123 },
      { type: "ack", epoch: 3, have: 9, complete: 5, executed: 4, echo: 77 },
      { type: "hello", epoch: 2, nodeId: "c", have: 0, join: true },
      { type: "hello", epoch: 2, nodeId: "c", have: 0, url: "http://10.0.0.2:7102" },
      { type: "hello", epoch: 2, nodeId: "c", have: 0, url: "https://[fd00::2]:7102/" },
      { type: "hello", epoch: 2, nodeId: "c", have: 7, run: "9f2c01d4a5b6e7f8" },
      { type: "checkpoint", epoch: 2, first: 40, slice: 17, part: 1, parts: 3, data: new Uint8Array([9, 8, 7]), console: 1234, inputs: [["client-a", 7]] },
      { type: "checkpoint", epoch: 2, first: 40, slice: 17, part: 0, parts: 3, data: new Uint8Array([9]), console: 1234, inputs: [], consoleTail: new Uint8Array([65, 66]) },
    ];
    for (const m of msgs) expect(decodePeerMessage(encodePeerMessage(m))).toEqual(m);
    const badPart = packr.pack({ v: 1, type: "checkpoint", epoch: 2, first: 1, slice: 1, part: 3, parts: 3, data: new Uint8Array(1), console: 0, inputs: [] });
    expect(codeOf(() => decodePeerMessage(badPart))).toBe(WireErrorCode.malformed);
    const longTail = packr.pack({ v: 1, type: "checkpoint", epoch: 2, first: 1, slice: 1, part: 0, parts: 1, data: new Uint8Array(1), console: 1, inputs: [], consoleTail: new Uint8Array(2) });
    expect(codeOf(() => decodePeerMessage(longTail))).toBe(WireErrorCode.malformed);
  });

  it("round-trips console messages", () => {
    expect(decodeConsoleClientMessage(encodeConsoleMessage({ type: "attach", clientId: "x", offset: 5 }))).toEqual({ type: "attach", clientId: "x", offset: 5 });
    expect(decodeConsoleClientMessage(encodeConsoleMessage({ type: "input", seq: 1, data: new Uint8Array([65]) }))).toEqual({ type: "input", seq: 1, data: new Uint8Array([65]) });
    expect(decodeConsoleClientMessage(encodeConsoleMessage({ type: "input", seq: 2, data: new Uint8Array([0x1e, 0x9e]), keys: true }))).toEqual({ type: "input", seq: 2, data: new Uint8Array([0x1e, 0x9e]), keys: true });
    expect(decodeConsoleServerMessage(encodeConsoleMessage({ type: "status", role: "primary", epoch: 2, live: true }))).toEqual({ type: "status", role: "primary", epoch: 2, live: true });
  });

  it("rejects garbage, wrong versions, unknown types, bad fields and oversized frames", () => {
    expect(codeOf(() => decodePeerMessage(new Uint8Array([0x81])))).toBe(WireErrorCode.undecodable);
    expect(codeOf(() => decodePeerMessage(packr.pack([1, 2, 3])))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 2, type: "ack" })))).toBe(WireErrorCode.version);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "launch" })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "ack", epoch: 1, have: -1, complete: 0, executed: 0 })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "ack", epoch: 1, have: 1, complete: 0, executed: 0, echo: -5 })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "heartbeat", epoch: 1, nodeId: "a", at: "soon" })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "log", epoch: 1, first: 0, entries: [[99, 0, 0]] })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodePeerMessage(new Uint8Array(wireFrameBytesMax + 1)))).toBe(WireErrorCode.tooLarge);
    expect(codeOf(() => decodeConsoleClientMessage(packr.pack({ v: 1, type: "input", seq: 1, data: new Uint8Array(5000) })))).toBe(WireErrorCode.malformed);
    // keys are one keyboard log entry at most (256 scancodes)
    expect(codeOf(() => decodeConsoleClientMessage(packr.pack({ v: 1, type: "input", seq: 1, data: new Uint8Array(257), keys: true })))).toBe(WireErrorCode.malformed);
    expect(codeOf(() => decodeConsoleClientMessage(packr.pack({ v: 1, type: "attach", clientId: "", offset: 0 })))).toBe(WireErrorCode.malformed);
    // the hello's address goes to the web view's pages: an http(s) host:port, nothing else
    for (const url of ["javascript:alert(1)", "http://a/b?c", "ws://10.0.0.2:7102", "http://a b"]) {
      expect(codeOf(() => decodePeerMessage(packr.pack({ v: 1, type: "hello", epoch: 1, nodeId: "b", have: 0, url })))).toBe(WireErrorCode.malformed);
    }
  });

  it("refuses a peer header a backup cannot build a machine from (it was passed on unchecked: a clock without a rate ran the guest on NaN time)", () => {
    const header = {
      format: 3,
      v86: "0.5.462",
      lockstep: "0.1.0",
      machine: { name: "tiny", description: "", kind: "multiboot", memoryMiB: 32, files: { multiboot: { path: "tiny.bin", sha256: "a".repeat(64) } } },
      disk: { bytes: 1 << 20, location: "/shared/disk-tiny.img" },
      clock: { epochMs: 1_700_000_000_000, msPerInstruction: 1e-5, seed: 7 },
      initialState: { kind: "power-on" },
      digestEverySlices: 1000,
      recordedAt: "2026-01-01T00:00:00.000Z",
    };
    const frame = (h: unknown) => packr.pack({ v: 1, type: "header", epoch: 1, nodeId: "a", header: h, releasedThrough: 0 });
    expect(decodePeerMessage(frame(header))).toEqual({ type: "header", epoch: 1, nodeId: "a", header, releasedThrough: 0 });
    const bad = (h: unknown) => {
      try {
        decodePeerMessage(frame(h));
      } catch (e) {
        if (e instanceof WireError) return `${e.code} ${e.message}`;
        throw e;
      }
      throw new Error("expected a WireError");
    };
    expect(bad({ ...header, clock: { epochMs: 0, seed: 1 } })).toMatch(/^LOCKSTEP_ERR_WIRE_MALFORMED .*clock\.msPerInstruction must be a number/);
    expect(bad({ ...header, machine: { ...header.machine, files: [] } })).toMatch(/machine\.files must be a map, not a list of 0 items/);
    expect(bad({ ...header, disk: { bytes: 100 } })).toMatch(/disk\.bytes must be an integer from 512/);
    expect(bad({ ...header, disk: { bytes: 1 << 20, location: 5 } })).toMatch(/disk\.location must be a non-empty string, not 5/);
  });

  it("quotes a huge unknown type or version short in the refusal (the whole value went into the message and the node's log)", () => {
    const messageOf = (b: Uint8Array) => {
      try {
        decodePeerMessage(b);
      } catch (e) {
        if (e instanceof WireError) return e.message;
        throw e;
      }
      throw new Error("expected a WireError");
    };
    expect(messageOf(packr.pack({ v: 1, type: "t".repeat(2 ** 20) }))).toMatch(/^Unknown frame type "t{40}…"$/);
    expect(messageOf(packr.pack({ v: "v".repeat(2 ** 20), type: "ack" }))).toMatch(/^Frame has version "v{40}…"; this side speaks 1$/);
  });
});
