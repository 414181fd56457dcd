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
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { crc32 } from "node:zlib";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import type { DiskSpec, MachineConfig } from "../emulator/machine-config.js";
import { decodeEntry, encodeEntry, logFormatVersion, type LogEntry } from "./event-log/log-entry.js";
import type { ClockParams } from "./virtual-clock.js";
import { packr } from "./msgpack.js";

const magic = Buffer.from("LOCKSTEP", "ascii");
const prefixBytes = 8 + 4 + 4 + 4;
const frameHeadBytes = 8;
/** Bounds: a header or a frame larger than this is corrupt, not data. */
export const headerBytesMax = 16 * 2 ** 20;
export const frameBytesMax = 4 * 2 ** 20;

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
    try {
      this.header = packr.unpack(body) as LogHeader;
    } catch (e) {
      this.close();
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${path} has an undecodable header: ${(e as Error).message}`);
    }
    this.offset = prefixBytes + headerBytes;
  }

  /** The next entry, or undefined at the end of the log. */
  next(): LogEntry | undefined {
    const at = this.offset;
    if (at >= this.fileBytes) return undefined;
    const head = this.read(at, frameHeadBytes);
    if (!head) return this.truncated(at, "its frame header is cut off");
    const length = head.readUInt32BE(0);
    if (length === 0 || length > frameBytesMax) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame length ${length} (1 to ${frameBytesMax})`, undefined, { offset: at });
    }
    const payload = this.read(at + frameHeadBytes, length);
    if (!payload) return this.truncated(at, `its ${length}-byte frame is cut off after ${this.fileBytes - at - frameHeadBytes} bytes`);
    if (crc32(payload) !== head.readUInt32BE(4)) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame ${this.index} fails its checksum`, undefined, { offset: at });
    }
    let raw: unknown;
    try {
      raw = packr.unpack(payload);
    } catch (e) {
      throw new LockstepError(ErrorCode.logCorrupt, `Log ${this.path} is corrupt at offset ${at}: frame ${this.index} does not decode (${(e as Error).message})`, undefined, { offset: at });
    }
    const entry = decodeEntry(raw, `${this.index} at offset ${at} of ${this.path}`);
    this.offset = at + frameHeadBytes + length;
    this.index++;
    return entry;
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
