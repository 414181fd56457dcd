/**
 * The log file: everything needed to re-execute a recorded run.
 *
 *   prefix   "LOCKSTEP" (8 bytes) | u32 format version | u32 header bytes | u32 crc32(header)
 *   header   msgpack LogHeader
 *   frames   u32 payload bytes | u32 crc32(payload) | payload (msgpack of one encoded entry)
 *
 * All integers are big-endian. The file is append-only and a reader may read it while it is being
 * written: a frame is either whole or (at the end) missing, never rewritten. Truncation (a partial
 * frame at the end) and corruption (a bad checksum or an undecodable frame) are reported with the byte
 * offset of the frame; `allowTruncated` stops cleanly at the last whole frame instead.
 *
 * A log file is untrusted input: the header is checked field by field after decoding, and the
 * entries must follow each other the way a recorder writes them: slices never go back, entries of
 * one slice share its instruction count, a later slice never has a smaller one, nothing follows
 * power-off, and no two consecutive entries (nor power-on and the first) are more than
 * `digestEverySlices` slices apart, since the recorder logs a digest at least that often. That last
 * rule bounds the work a replay does on the word of one entry: a log naming a far-future slice is
 * refused when read, instead of being executed for ever.
 *
 * Over 400 lines on purpose: the writer, the reader and the header check share the one file format
 * defined here; split, each half would restate it.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import { describeValue, ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import { fileRoles, isUnicastMac, memoryMiBMax, type DiskSpec, type FileRef, type FileRole, type MachineConfig, type NicSpec } from "../emulator/machine-config.js";
import { isRate, msPerInstructionMax, msPerInstructionMin } from "./event-log/clock-adjust.js";
import { decodeEntry, encodeEntry, logFormatVersion, type LogEntry } from "./event-log/log-entry.js";
import type { ClockParams } from "./virtual-clock.js";
import { packr } from "./msgpack.js";

const magic = Buffer.from("LOCKSTEP", "ascii");
const prefixBytes = 8 + 4 + 4 + 4;
const frameHeadBytes = 8;
/** Bounds: a header or a frame larger than this is corrupt, not data. */
export const headerBytesMax = 16 * 2 ** 20;
export const frameBytesMax = 4 * 2 ** 20;
/**
 * Digest cadence at most (slices). A log file's entries are at most this far apart, so it also
 * bounds how many slices a replay runs before it can tell whether the log agrees with it.
 */
export const digestEverySlicesMax = 100_000;
/** The JavaScript Date range: a header's epoch must be a representable date. */
const epochMsMax = 8.64e15;

// re-exported for hypervisor/checkpoint.ts, which packs checkpoints with the same configuration
export { packr };

export interface DiskInfo {
  bytes: number;
  /** sha256 of the contents the guest started with, when known. */
  sha256?: string;
  /** It was made fresh from this spec. */
  fresh?: DiskSpec;
  /** Where the primary's disk lives ("file PATH", "nbd://..."), for a backup that takes over. */
  location?: string;
}

export interface LogHeader {
  format: number;
  v86: string;
  lockstep: string;
  machine: MachineConfig;
  /** The guest's disk (null: none). Replay needs none of it: the log carries every read's data. */
  disk: DiskInfo | null;
  clock: ClockParams;
  initialState: { kind: "power-on" };
  digestEverySlices: number;
  recordedAt: string;
  /**
   * false: recorded with v86's JIT off (`record --no-jit`). How many instructions a slice holds
   * depends on it (the JIT checks its budget only between compiled blocks), so a replay must run
   * the same way. Absent: the JIT was on.
   */
  jit?: false;
}

type Fields = Record<string, unknown>;

/**
 * Checks a decoded header field by field (everything the replayer, the dump and a backup use) and
 * returns it, rebuilt from the checked fields. Throws LOCKSTEP_ERR_LOG_CORRUPT naming the field;
 * `where` begins the message ("Log FILE", "The primary's log"). The machine is checked for its
 * shape only: whether it is the machine here is `checkHeader`'s business.
 */
export function validateHeader(raw: unknown, where: string): LogHeader {
  const bad = (field: string, want: string, value: unknown): never => {
    throw new LockstepError(ErrorCode.logCorrupt, `${where} has a malformed header: ${field} must be ${want}, not ${describeValue(value)}`, undefined, { field });
  };
  const map = (v: unknown, field: string): Fields => {
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Date) bad(field, "a map", v);
    return v as Fields;
  };
  const str = (v: unknown, field: string, nonEmpty = false): string => {
    if (typeof v !== "string" || (nonEmpty && v.length === 0)) bad(field, nonEmpty ? "a non-empty string" : "a string", v);
    return v as string;
  };
  const int = (v: unknown, field: string, least: number, most = Number.MAX_SAFE_INTEGER): number => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < least || v > most) bad(field, `an integer from ${least} to ${most}`, v);
    return v as number;
  };
  const sha256 = (v: unknown, field: string): string => {
    if (typeof v !== "string" || !/^[0-9a-f]{64}$/.test(v)) bad(field, "a sha256 (64 hex digits)", v);
    return v as string;
  };
  const diskSpec = (v: unknown, field: string): DiskSpec => {
    const d = map(v, field);
    const format = d.format === "ext2" || d.format === "raw" ? d.format : bad(`${field}.format`, `"ext2" or "raw"`, d.format);
    return { sizeMiB: int(d.sizeMiB, `${field}.sizeMiB`, 1), format };
  };

  const nicSpec = (v: unknown, field: string): NicSpec => {
    const n = map(v, field);
    if (n.type !== "ne2k") bad(`${field}.type`, `"ne2k"`, n.type);
    if (typeof n.mac !== "string" || !isUnicastMac(n.mac)) bad(`${field}.mac`, "a unicast MAC address", n.mac);
    return { type: "ne2k", mac: n.mac as string };
  };

  const h = map(raw, "the header");
  const m = map(h.machine, "machine");
  const kind = m.kind === "multiboot" || m.kind === "linux" || m.kind === "bios" ? m.kind : bad("machine.kind", `"multiboot", "linux" or "bios"`, m.kind);
  const boot = m.boot === undefined ? undefined : m.boot === "disk" || m.boot === "cdrom" ? m.boot : bad("machine.boot", `"disk" or "cdrom"`, m.boot);
  if (kind === "bios" && boot === undefined) bad("machine.boot", `"disk" or "cdrom" for a bios machine`, m.boot);
  const files: Partial<Record<FileRole, FileRef>> = {};
  for (const [role, ref] of Object.entries(map(m.files, "machine.files"))) {
    if (!(fileRoles as readonly string[]).includes(role)) bad("machine.files", `keyed by ${fileRoles.join(", ")}`, role);
    const r = map(ref, `machine.files.${role}`);
    files[role as FileRole] = { path: str(r.path, `machine.files.${role}.path`), sha256: sha256(r.sha256, `machine.files.${role}.sha256`) };
  }
  const machine: MachineConfig = {
    name: str(m.name, "machine.name", true),
    description: str(m.description, "machine.description"),
    kind,
    ...(boot !== undefined ? { boot } : {}),
    memoryMiB: int(m.memoryMiB, "machine.memoryMiB", 1, memoryMiBMax),
    ...(m.cmdline !== undefined ? { cmdline: str(m.cmdline, "machine.cmdline") } : {}),
    files,
    ...(m.disk !== undefined ? { disk: diskSpec(m.disk, "machine.disk") } : {}),
    ...(m.nic !== undefined ? { nic: nicSpec(m.nic, "machine.nic") } : {}),
  };

  let disk: DiskInfo | null = null;
  if (h.disk !== null) {
    const d = map(h.disk, "disk");
    const bytes = int(d.bytes, "disk.bytes", 512);
    if (bytes % 512 !== 0) bad("disk.bytes", "a multiple of 512", bytes);
    disk = {
      bytes,
      ...(d.sha256 !== undefined ? { sha256: sha256(d.sha256, "disk.sha256") } : {}),
      ...(d.fresh !== undefined ? { fresh: diskSpec(d.fresh, "disk.fresh") } : {}),
      ...(d.location !== undefined ? { location: str(d.location, "disk.location", true) } : {}),
    };
  }

  const c = map(h.clock, "clock");
  if (typeof c.epochMs !== "number" || !(Math.abs(c.epochMs) <= epochMsMax)) bad("clock.epochMs", `a number from -${epochMsMax} to ${epochMsMax}`, c.epochMs);
  if (!isRate(c.msPerInstruction)) bad("clock.msPerInstruction", `a number from ${msPerInstructionMin} to ${msPerInstructionMax}`, c.msPerInstruction);
  const clock: ClockParams = { epochMs: c.epochMs as number, msPerInstruction: c.msPerInstruction as number, seed: int(c.seed, "clock.seed", 0) };

  if (map(h.initialState, "initialState").kind !== "power-on") bad("initialState.kind", `"power-on"`, (h.initialState as Fields).kind);
  return {
    format: int(h.format, "format", 1),
    v86: str(h.v86, "v86"),
    lockstep: str(h.lockstep, "lockstep"),
    machine,
    disk,
    clock,
    initialState: { kind: "power-on" },
    digestEverySlices: int(h.digestEverySlices, "digestEverySlices", 0, digestEverySlicesMax),
    recordedAt: str(h.recordedAt, "recordedAt"),
    ...(h.jit === undefined || h.jit === true ? {} : h.jit === false ? { jit: false as const } : bad("jit", "false or absent", h.jit)),
  };
}

export function encodeHeader(header: LogHeader): Buffer {
  const body = packr.pack(header);
  const prefix = Buffer.alloc(prefixBytes);
  magic.copy(prefix, 0);
  prefix.writeUInt32BE(header.format, 8);
  prefix.writeUInt32BE(body.length, 12);
  prefix.writeUInt32BE(crc32(body), 16);
  return Buffer.concat([prefix, body]);
}

export function encodeFrame(entry: LogEntry): Buffer {
  const payload = packr.pack(encodeEntry(entry));
  const head = Buffer.alloc(frameHeadBytes);
  head.writeUInt32BE(payload.length, 0);
  head.writeUInt32BE(crc32(payload), 4);
  return Buffer.concat([head, payload]);
}

/** Appends frames to a log file; `flush` makes everything appended so far readable. */
export class LogWriter {
  private fd: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  bytesWritten = 0;
  entriesWritten = 0;

  constructor(
    readonly path: string,
    header: LogHeader,
    options: { overwrite?: boolean } = {},
  ) {
    try {
      this.fd = openSync(path, options.overwrite ? "w" : "wx");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new LockstepError(
        ErrorCode.usage,
        code === "EEXIST" ? `Log file ${path} already exists` : `Log file ${path} cannot be created: ${code}`,
        code === "EEXIST" ? "choose another name or pass --force" : undefined,
      );
    }
    this.write(encodeHeader(header));
  }

  append(entry: LogEntry): void {
    const frame = encodeFrame(entry);
    this.pending.push(frame);
    this.pendingBytes += frame.length;
    this.entriesWritten++;
    if (this.pendingBytes >= 1 << 16) this.flush();
  }

  flush(): void {
    if (this.pending.length === 0) return;
    const data = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.write(data);
  }

  private write(data: Buffer): void {
    let off = 0;
    while (off < data.length) off += writeSync(this.fd, data, off);
    this.bytesWritten += data.length;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

export interface LogReaderOptions {
  /** Stop at the last whole frame instead of failing on a partial one at the end. */
  allowTruncated?: boolean;
}

/** Reads a log file frame by frame (incrementally: logs may be large). */
export class LogReader {
  readonly header: LogHeader;
  /** Byte offset of the next frame. */
  offset: number;
  /** Set when the reader stopped at a partial frame (with allowTruncated). */
  truncatedAt: number | undefined;
  private fd: number;
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  private readonly fileBytes: number;
  private index = 0;
  private previous: LogEntry | undefined;

  constructor(
    readonly path: string,
    private readonly options: LogReaderOptions = {},
  ) {
    try {
      this.fd = openSync(path, "r");
    } catch (e) {
      throw new LockstepError(ErrorCode.logMissing, `Log file ${path} cannot be opened: ${(e as NodeJS.ErrnoException).code}`);
    }
    this.fileBytes = fstatSync(this.fd).size;
    const prefix = this.read(0, prefixBytes);
    if (!prefix || !prefix.subarray(0, 8).equals(magic)) {
      this.close();
      throw new LockstepError(ErrorCode.logCorrupt, `${path} is not a lockstep log (no LOCKSTEP signature at offset 0)`);
    }
    const version = prefix.readUInt32BE(8);
    if (version !== logFormatVersion) {
      this.close();
      throw new LockstepError(
        ErrorCode.logVersion,
        `Log ${path} has format version ${version}; this lockstep reads version ${logFormatVersion}`,
        "replay it with the lockstep version that recorded it",
      );
    }
    const headerBytes = prefix.readUInt32BE(12);
    if (headerBytes > headerBytesMax) {
      this.close();
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${path} declares a header of ${headerBytes} bytes (at most ${headerBytesMax})`);
    }
    const body = this.read(prefixBytes, headerBytes);
    if (!body) {
      this.close();
      throw new LockstepError(ErrorCode.logTruncated, `Log ${path} ends inside its header (${this.fileBytes} bytes)`);
    }
    if (crc32(body) !== prefix.readUInt32BE(16)) {
      this.close();
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${path} has a corrupt header (checksum mismatch at offset ${prefixBytes})`);
    }
    let raw: unknown;
    try {
      raw = packr.unpack(body);
    } catch (e) {
      this.close();
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${path} has an undecodable header: ${(e as Error).message}`);
    }
    try {
      this.header = validateHeader(raw, `Log ${path}`);
      const bad = (field: string, want: string, value: unknown): never => {
        throw new LockstepError(ErrorCode.logCorrupt, `Log ${path} has a malformed header: ${field} must be ${want}, not ${describeValue(value)}`, undefined, { field });
      };
      if (this.header.format !== version) bad("format", `${version}, as its prefix says`, this.header.format);
      // the digest cadence bounds the distance between entries (see above): a file needs one
      if (this.header.digestEverySlices < 1) bad("digestEverySlices", `an integer from 1 to ${digestEverySlicesMax} in a log file`, this.header.digestEverySlices);
    } catch (e) {
      this.close();
      throw e;
    }
    this.offset = prefixBytes + headerBytes;
  }

  /** The next entry, or undefined at the end of the log. */
  next(): LogEntry | undefined {
    const at = this.offset;
    if (at >= this.fileBytes) return undefined;
    const frame = this.frame(at, this.index);
    if (typeof frame === "string") return this.truncated(at, frame);
    const entry = this.decodeFrame(frame, at, this.index);
    this.checkSequence(entry, at);
    this.previous = entry;
    this.offset = at + frameHeadBytes + frame.length;
    this.index++;
    return entry;
  }

  /**
   * How the log ends, found by walking the frames' lengths from the next frame on (only the last
   * whole frame is decoded): its last entry, and the offset of a partial frame after it. Leaves the
   * reader where it was.
   */
  findEnd(): { last: LogEntry | undefined; truncatedAt: number | undefined } {
    let at = this.offset;
    let index = this.index;
    let last: { at: number; index: number; payload: Buffer } | undefined;
    while (at < this.fileBytes) {
      const frame = this.frame(at, index);
      if (typeof frame === "string") return { last: last && this.decodeFrame(last.payload, last.at, last.index), truncatedAt: at };
      last = { at, index, payload: frame };
      at += frameHeadBytes + frame.length;
      index++;
    }
    return { last: last ? this.decodeFrame(last.payload, last.at, last.index) : this.previous, truncatedAt: undefined };
  }

  /** The checksummed payload of frame `index` at `at`, or why it is cut off. */
  private frame(at: number, index: number): Buffer | string {
    const head = this.read(at, frameHeadBytes);
    if (!head) return "its frame header is cut off";
    const length = head.readUInt32BE(0);
    if (length === 0 || length > frameBytesMax) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame length ${length} (1 to ${frameBytesMax})`, undefined, { offset: at });
    }
    const crc = head.readUInt32BE(4);
    const payload = this.read(at + frameHeadBytes, length);
    if (!payload) return `its ${length}-byte frame is cut off after ${this.fileBytes - at - frameHeadBytes} bytes`;
    if (crc32(payload) !== crc) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame ${index} fails its checksum`, undefined, { offset: at });
    }
    return payload;
  }

  private decodeFrame(payload: Buffer, at: number, index: number): LogEntry {
    let raw: unknown;
    try {
      raw = packr.unpack(payload);
    } catch (e) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame ${index} does not decode (${(e as Error).message})`, undefined, { offset: at });
    }
    return decodeEntry(raw, `${index} at offset ${at} of ${this.path}`);
  }

  /** Refuses an entry that cannot follow the previous one in a recorder's log (see above). */
  private checkSequence(e: LogEntry, at: number): void {
    const p = this.previous;
    const bad = (why: string): never => {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: entry ${this.index} (${e.kind}, slice ${e.slice}) ${why}`, undefined, {
        offset: at,
        index: this.index,
      });
    };
    if (p?.kind === "control" && p.action === "power-off") bad("follows power-off, the end of a recording");
    const from = p?.slice ?? 0;
    if (e.slice < from) bad(`comes after an entry of slice ${from}: slices never go back`);
    if (e.slice - from > this.header.digestEverySlices) {
      bad(`is ${e.slice - from} slices after ${p ? "the entry before it" : "power-on"}; the recorder logs a digest every ${this.header.digestEverySlices} slices`);
    }
    if (p && e.slice === p.slice && e.icount !== p.icount) bad(`has instruction count ${e.icount}, another entry of that slice ${p.icount}`);
    if (p && e.icount < p.icount) bad(`has instruction count ${e.icount}, below the ${p.icount} of an earlier slice`);
  }

  private truncated(at: number, why: string): undefined {
    if (this.options.allowTruncated) {
      this.truncatedAt = at;
      this.offset = this.fileBytes;
      return undefined;
    }
    throw new LockstepError(
      ErrorCode.logTruncated,
      `Log ${this.path} is truncated at offset ${at}: ${why}`,
      "pass --allow-truncated to replay up to the last whole frame",
      { offset: at },
    );
  }

  /** Bytes [pos, pos+len) of the file, or undefined when the file ends before them. */
  private read(pos: number, len: number): Buffer | undefined {
    if (pos + len > this.fileBytes) return undefined;
    if (pos < this.bufStart || pos + len > this.bufStart + this.buf.length) {
      const want = Math.max(len, 1 << 20);
      const size = Math.min(want, this.fileBytes - pos);
      const buf = Buffer.alloc(size);
      let got = 0;
      while (got < size) {
        const n = readSync(this.fd, buf, got, size - got, pos + got);
        if (n === 0) break;
        got += n;
      }
      if (got < len) return undefined;
      this.buf = buf.subarray(0, got);
      this.bufStart = pos;
    }
    return this.buf.subarray(pos - this.bufStart, pos - this.bufStart + len);
  }

  get fileSize(): number {
    return this.fileBytes;
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
  }
}
