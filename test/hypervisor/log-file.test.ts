// The log file: round trip, and every kind of damage reported with a stable code and an offset.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { decodeEntry, encodeEntry, logFormatVersion, type LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { LogReader, LogWriter, packr, type LogHeader } from "../../hypervisor/log-file.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-logfile-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const header: LogHeader = {
  format: logFormatVersion,
  v86: "test",
  lockstep: "0.0.0",
  machine: { name: "tiny", description: "", kind: "multiboot", memoryMiB: 32, files: {} },
  disk: null,
  clock: { epochMs: 1, msPerInstruction: 1e-5, seed: 3 },
  initialState: { kind: "power-on" },
  digestEverySlices: 10,
  recordedAt: "2026-01-01T00:00:00.000Z",
};

const entries: LogEntry[] = [
  { kind: "clock", slice: 1, icount: 4071, advanceMs: 9.5 },
  { kind: "serial", slice: 1, icount: 4071, data: new TextEncoder().encode("ping\r") },
  { kind: "keys", slice: 3, icount: 5000, data: Uint8Array.from([0x1e, 0x9e]) },
  { kind: "clock", slice: 4, icount: 6000, msPerInstruction: 2e-5 },
  { kind: "digest", slice: 10, icount: 2 ** 40 + 5, digest: "0123456789abcdef" },
  { kind: "progress", slice: 10, icount: 2 ** 40 + 5 },
  { kind: "disk-read", slice: 10, icount: 2 ** 40 + 5, id: 3, at: 512, data: new Uint8Array(1024).fill(7) },
  { kind: "disk-write", slice: 10, icount: 2 ** 40 + 5, id: 4 },
  { kind: "control", slice: 11, icount: 2 ** 40 + 9, action: "power-off" },
];

function writeLog(name: string): string {
  const path = join(dir, name);
  const w = new LogWriter(path, header);
  for (const e of entries) w.append(e);
  w.close();
  return path;
}

function readAll(path: string, allowTruncated = false): LogEntry[] {
  const r = new LogReader(path, { allowTruncated });
  const out: LogEntry[] = [];
  for (let e = r.next(); e; e = r.next()) out.push(e);
  r.close();
  return out;
}

function errorOf(fn: () => unknown): LockstepError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LockstepError) return e;
    throw e;
  }
  throw new Error("expected a LockstepError");
}

describe("log file", () => {
  it("round-trips the header and every kind of entry, 64-bit counts included", () => {
    const path = writeLog("ok.lslog");
    const r = new LogReader(path);
    expect(r.header).toEqual(header);
    r.close();
    expect(readAll(path)).toEqual(entries);
  });

  it("refuses to overwrite an existing log unless asked", () => {
    const path = writeLog("exists.lslog");
    expect(errorOf(() => new LogWriter(path, header)).code).toBe(ErrorCode.usage);
    new LogWriter(path, header, { overwrite: true }).close();
  });

  it("reports truncation with the offset of the partial frame, or stops there when allowed", () => {
    const path = writeLog("cut.lslog");
    const bytes = readFileSync(path);
    const cut = join(dir, "cut2.lslog");
    writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
    const e = errorOf(() => readAll(cut));
    expect(e.code).toBe(ErrorCode.logTruncated);
    expect(e.message).toMatch(/truncated at offset \d+/);
    expect(readAll(cut, true)).toEqual(entries.slice(0, -1));
  });

  it("reports a corrupted frame with its offset", () => {
    const path = writeLog("bad.lslog");
    const bytes = readFileSync(path);
    bytes[bytes.length - 2] = bytes[bytes.length - 2]! ^ 0x55;
    writeFileSync(path, bytes);
    const e = errorOf(() => readAll(path));
    expect(e.code).toBe(ErrorCode.logCorrupt);
    expect(e.message).toMatch(/corrupt at offset \d+: frame 8 fails its checksum/);
  });

  it("reports an unknown format version, a foreign file and a corrupt header", () => {
    const path = writeLog("v.lslog");
    const bytes = readFileSync(path);
    bytes.writeUInt32BE(99, 8);
    writeFileSync(path, bytes);
    const e = errorOf(() => new LogReader(path));
    expect(e.code).toBe(ErrorCode.logVersion);
    expect(e.message).toContain("format version 99");

    writeFileSync(join(dir, "foreign"), "hello world, not a log at all");
    expect(errorOf(() => new LogReader(join(dir, "foreign"))).code).toBe(ErrorCode.logCorrupt);

    const h = readFileSync(writeLog("h.lslog"));
    h[25] = h[25]! ^ 1;
    writeFileSync(join(dir, "h2.lslog"), h);
    expect(errorOf(() => new LogReader(join(dir, "h2.lslog"))).message).toMatch(/corrupt header/);

    expect(errorOf(() => new LogReader(join(dir, "absent.lslog"))).code).toBe(ErrorCode.logMissing);
  });

  it("rejects malformed entries by field", () => {
    const bad = (raw: unknown) => errorOf(() => decodeEntry(packr.unpack(packr.pack(raw)), "t")).message;
    expect(bad([99, 0, 0])).toMatch(/unknown kind code 99/);
    expect(bad([1, -1, 0, new Uint8Array([1])])).toMatch(/slice -1/);
    expect(bad([1, 0, 0, new Uint8Array(0)])).toMatch(/serial: data/);
    expect(bad([3, 0, 0, -5, null])).toMatch(/advanceMs/);
    expect(bad([3, 0, 0, null, null])).toMatch(/adjusts nothing/);
    expect(bad([5, 0, 0, "xyz"])).toMatch(/16 hex digits/);
    expect(bad([6, 0, 0, "explode"])).toMatch(/unknown action/);
    expect(bad("nope")).toMatch(/not an array/);
    for (const e of entries) expect(decodeEntry(packr.unpack(packr.pack(encodeEntry(e))), "t")).toEqual(e);
  });
});
