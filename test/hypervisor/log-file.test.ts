// The log file: round trip, and every kind of damage reported with a stable code and an offset.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { errorOf } from "../support/lockstep-error-of.js";
import { ErrorCode } from "../../emulator/lockstep-error.js";
import { decodeEntry, encodeEntry, logFormatVersion, type LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { digestEverySlicesMax, LogReader, LogWriter, packr, type LogHeader } from "../../hypervisor/log-file.js";

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
  { kind: "net", slice: 10, icount: 2 ** 40 + 5, data: new Uint8Array(60).fill(0xab) },
  { kind: "control", slice: 11, icount: 2 ** 40 + 9, action: "power-off" },
];

function writeLog(name: string): string {
  const path = join(dir, name);
  const w = new LogWriter(path, header);
  for (const e of entries) w.append(e);
  w.close();
  return path;
}

/** A log with any header and entries, written through the real writer (which checks neither). */
function writeCrafted(name: string, h: unknown, es: LogEntry[] = []): string {
  const path = join(dir, name);
  const w = new LogWriter(path, h as LogHeader, { overwrite: true });
  for (const e of es) w.append(e);
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
    expect(e.message).toMatch(/corrupt at offset \d+: frame 9 fails its checksum/);
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
    // a network frame over the MTU (or shorter than an Ethernet header) is refused by the log, not given to the NIC
    expect(bad([9, 0, 0, new Uint8Array(1519)])).toMatch(/net: frame must be 14 to 1518 bytes/);
    expect(bad([9, 0, 0, new Uint8Array(13)])).toMatch(/net: frame must be 14 to 1518 bytes/);
    for (const e of entries) expect(decodeEntry(packr.unpack(packr.pack(encodeEntry(e))), "t")).toEqual(e);
  });

  it("refuses a crafted header naming the field, instead of crashing its readers with a TypeError", () => {
    const crafted: Array<[string, (h: Record<string, any>) => void, RegExp]> = [
      ["no machine", (h) => delete h.machine, /machine must be a map, not undefined/],
      ["a NIC of another kind", (h) => (h.machine.nic = { type: "e1000", mac: "52:54:00:12:34:56" }), /machine\.nic\.type must be "ne2k", not "e1000"/],
      ["a NIC with a multicast MAC", (h) => (h.machine.nic = { type: "ne2k", mac: "01:00:5e:00:00:01" }), /machine\.nic\.mac must be a unicast MAC address/],
      ["files not a map", (h) => (h.machine.files = null), /machine\.files must be a map, not null/],
      ["a file without its hash", (h) => (h.machine.files = { multiboot: { path: "tiny.bin" } }), /machine\.files\.multiboot\.sha256 must be a sha256/],
      ["an unknown file role", (h) => (h.machine.files = { kernel: { path: "k", sha256: "0".repeat(64) } }), /machine\.files must be keyed by bios/],
      ["memory as a string", (h) => (h.machine.memoryMiB = "32"), /machine\.memoryMiB must be an integer from 1 to 2048, not "32"/],
      ["an unknown kind", (h) => (h.machine.kind = "uefi"), /machine\.kind must be "multiboot", "linux" or "bios"/],
      ["a bios machine without a boot device", (h) => (h.machine.kind = "bios"), /machine\.boot must be "disk" or "cdrom" for a bios machine/],
      ["an unknown boot device", (h) => (h.machine.boot = "floppy"), /machine\.boot must be "disk" or "cdrom", not "floppy"/],
      ["no clock rate", (h) => delete h.clock.msPerInstruction, /clock\.msPerInstruction must be a number/],
      ["an epoch no Date can show", (h) => (h.clock.epochMs = 1e20), /clock\.epochMs must be a number/],
      ["a seed that is a map", (h) => (h.clock.seed = { toString: 1 }), /clock\.seed must be an integer from 0 to \d+, not a map/],
      ["a disk that is not whole sectors", (h) => (h.disk = { bytes: 1000 }), /disk\.bytes must be a multiple of 512, not 1000/],
      ["a disk without a size", (h) => (h.disk = {}), /disk\.bytes must be an integer/],
      ["another initial state", (h) => (h.initialState = { kind: "checkpoint" }), /initialState\.kind must be "power-on"/],
      ["no digests", (h) => (h.digestEverySlices = 0), /digestEverySlices must be an integer from 1 to \d+ in a log file, not 0/],
      ["digests too rare", (h) => (h.digestEverySlices = digestEverySlicesMax + 1), /digestEverySlices must be an integer from 0 to \d+/],
      ["no v86 version", (h) => (h.v86 = 7), /v86 must be a string, not 7/],
      ["a date that is not a string", (h) => (h.recordedAt = new Date(0)), /recordedAt must be a string, not a timestamp/],
    ];
    for (const [what, mutate, message] of crafted) {
      const h = structuredClone(header) as Record<string, any>;
      mutate(h);
      const e = errorOf(() => new LogReader(writeCrafted("crafted.lslog", h)));
      expect(e.code, what).toBe(ErrorCode.logCorrupt);
      expect(e.message, what).toMatch(/has a malformed header: /);
      expect(e.message, what).toMatch(message);
    }
    const list = writeCrafted("list.lslog", header);
    const body = packr.pack([1, 2, 3]);
    const listBytes = Buffer.concat([readFileSync(list).subarray(0, 20), body]);
    listBytes.writeUInt32BE(body.length, 12);
    listBytes.writeUInt32BE(crc32(body), 16);
    writeFileSync(list, listBytes);
    expect(errorOf(() => new LogReader(list)).message).toMatch(/the header must be a map, not a list of 3 items/);
    // the prefix says one format, the header another
    const other = writeCrafted("format.lslog", { ...header, format: 99 });
    const bytes = readFileSync(other);
    bytes.writeUInt32BE(logFormatVersion, 8);
    writeFileSync(other, bytes);
    expect(errorOf(() => new LogReader(other)).message).toMatch(new RegExp(`format must be ${logFormatVersion}, as its prefix says, not 99`));
  });

  it("refuses an entry with a far-future slice when read, with its offset and index (a replay ran to it for ever)", () => {
    const path = writeCrafted("far.lslog", header, [entries[0]!, { kind: "serial", slice: 10 ** 15, icount: 4071, data: Uint8Array.from([65]) }]);
    const e = errorOf(() => readAll(path));
    expect(e.code).toBe(ErrorCode.logCorrupt);
    expect(e.message).toMatch(/corrupt at offset \d+: entry 1 \(serial, slice 1000000000000000\) is 999999999999999 slices after the entry before it; the recorder logs a digest every 10 slices/);
    expect(e.details).toMatchObject({ index: 1 });
    // the first entry is bounded by power-on
    expect(errorOf(() => readAll(writeCrafted("far0.lslog", header, [{ kind: "progress", slice: 11, icount: 9 }]))).message).toMatch(/entry 0 \(progress, slice 11\) is 11 slices after power-on/);
  });

  it("refuses entries out of the order a recorder writes them (slices going back, counts disagreeing, anything after power-off)", () => {
    const cases: Array<[LogEntry[], RegExp]> = [
      [[entries[3]!, entries[2]!], /entry 1 \(keys, slice 3\) comes after an entry of slice 4: slices never go back/],
      [[entries[0]!, { ...entries[1]!, icount: 4072 }], /entry 1 \(serial, slice 1\) has instruction count 4072, another entry of that slice 4071/],
      [[entries[2]!, { ...entries[3]!, icount: 10 }], /entry 1 \(clock, slice 4\) has instruction count 10, below the 5000 of an earlier slice/],
      [[...entries, { kind: "progress", slice: 11, icount: 2 ** 40 + 9 }], /entry 10 \(progress, slice 11\) follows power-off/],
    ];
    for (const [es, message] of cases) {
      const e = errorOf(() => readAll(writeCrafted("order.lslog", header, es)));
      expect(e.code).toBe(ErrorCode.logCorrupt);
      expect(e.message).toMatch(message);
    }
  });

  it("refuses clock entries that would overflow guest time to Infinity (a replay stopped with a bare NaN error in the clock)", () => {
    const bad = (raw: unknown) => errorOf(() => decodeEntry(packr.unpack(packr.pack(raw)), "t"));
    expect(bad([3, 0, 0, 1e308, null]).message).toMatch(/advanceMs must be a number from 0 to 1000000000000/);
    expect(bad([3, 0, 0, null, 1e300]).message).toMatch(/msPerInstruction must be a number from 1e-12 to 1000/);
    expect(bad([3, 0, 0, null, 1e-300]).code).toBe(ErrorCode.logCorrupt);
  });

  it("refuses an entry whose fields are maps with toString or valueOf keys (describing them threw a TypeError)", () => {
    const bad = (raw: unknown) => errorOf(() => decodeEntry(packr.unpack(packr.pack(raw)), "t")).message;
    expect(bad([1, { toString: 1 }, 0, new Uint8Array([1])])).toMatch(/slice a map is not a non-negative integer/);
    expect(bad([1, 0, { valueOf: 0, toString: "x" }, new Uint8Array([1])])).toMatch(/instruction count a map is not/);
  });

  it("finds how a log ends without reading it entry by entry", () => {
    const r = new LogReader(writeLog("end.lslog"));
    expect(r.findEnd()).toEqual({ last: entries.at(-1), truncatedAt: undefined });
    expect(r.next()).toEqual(entries[0]);
    r.close();
    const bytes = readFileSync(join(dir, "end.lslog"));
    writeFileSync(join(dir, "end-cut.lslog"), bytes.subarray(0, bytes.length - 3));
    const cut = new LogReader(join(dir, "end-cut.lslog"));
    const end = cut.findEnd();
    expect(end.last).toEqual(entries.at(-2));
    expect(end.truncatedAt).toBeGreaterThan(0);
    cut.close();
  });
});
