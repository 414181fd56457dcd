/**
 * The event log's closed union of entries. Every entry names the slice boundary it belongs to
 * (`slice`: how many slices had completed) and the 64-bit instruction count there (`icount`); the
 * replayer refuses to apply an entry whose boundary does not match its own machine's.
 *
 * On the wire and in files an entry is a msgpack array `[kindCode, slice, icount, ...fields]`.
 * FORMAT VERSION: bump `logFormatVersion` whenever a kind is added or removed, a code changes, or
 * the shape or meaning of any entry changes (QEMU replay's rule).
 */
import { describeValue, ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { clockAdjust, type ClockAdjustEntry } from "./clock-adjust.js";
import { control, type ControlEntry } from "./control.js";
import { digestCheck, type DigestEntry } from "./digest-check.js";
import { diskRead, diskWrite, type DiskReadEntry, type DiskWriteEntry } from "./disk-completion.js";
import { keyboardInput, type KeyboardInputEntry } from "./keyboard-input.js";
import { netFrame, type NetFrameEntry } from "./net-frame.js";
import { describeFrame } from "./frame-summary.js";
import { serialInput, type SerialInputEntry } from "./serial-input.js";
import { sliceProgress, type SliceProgressEntry } from "./slice-progress.js";

// 2: serial entries may carry their console source (client, seq).
// 3: disk-read and disk-write completions; the disk is a bounce disk (replay needs no disk file);
//    control "checkpoint" (the JIT cache is cleared there).
// 4: net frames (the machine config may have a NIC).
export const logFormatVersion = 4;

export type LogEntry =
  | SerialInputEntry
  | KeyboardInputEntry
  | ClockAdjustEntry
  | SliceProgressEntry
  | DigestEntry
  | ControlEntry
  | DiskReadEntry
  | DiskWriteEntry
  | NetFrameEntry;

export type EntryKind = LogEntry["kind"];

/** What each kind module provides: its wire code and its encode/decode halves. */
export interface EntryCodec<E extends LogEntry> {
  kind: E["kind"];
  code: number;
  /** Fields after [code, slice, icount]. */
  encodeFields(entry: E): unknown[];
  /** Validates and builds the entry from the fields after [code, slice, icount]; throws a string on bad input. */
  decodeFields(slice: number, icount: number, fields: unknown[]): E;
}

const codecs = [serialInput, keyboardInput, clockAdjust, sliceProgress, digestCheck, control, diskRead, diskWrite, netFrame] as const;
const byCode = new Map<number, EntryCodec<LogEntry>>(codecs.map((c) => [c.code, c as unknown as EntryCodec<LogEntry>]));
const byKind = new Map<string, EntryCodec<LogEntry>>(codecs.map((c) => [c.kind, c as unknown as EntryCodec<LogEntry>]));

/**
 * Bytes an entry takes on the wire at most, near enough to batch by: the fixed fields of any kind
 * fit in 64 bytes; data and a console source's client id come on top.
 */
export function entryBytes(entry: LogEntry): number {
  let n = 64;
  if ("data" in entry) n += entry.data.length;
  if ("source" in entry && entry.source) n += entry.source.client.length;
  return n;
}

export function encodeEntry(entry: LogEntry): unknown[] {
  const codec = byKind.get(entry.kind)!;
  return [codec.code, entry.slice, entry.icount, ...codec.encodeFields(entry)];
}

/** Decodes one entry; `where` names its position for the error message. */
export function decodeEntry(raw: unknown, where: string): LogEntry {
  const bad = (why: string): never => {
    throw new LockstepError(ErrorCode.logCorrupt, `Log entry ${where} is malformed: ${why}`);
  };
  if (!Array.isArray(raw) || raw.length < 3) bad("not an array of at least 3 items");
  const [code, slice, icount, ...fields] = raw as unknown[];
  if (typeof code !== "number") bad("kind code is not a number");
  const codec = byCode.get(code as number) ?? bad(`unknown kind code ${describeValue(code)}`);
  if (!isCount(slice)) bad(`slice ${describeValue(slice)} is not a non-negative integer`);
  if (!isCount(icount)) bad(`instruction count ${describeValue(icount)} is not a non-negative integer`);
  try {
    return codec.decodeFields(slice as number, icount as number, fields);
  } catch (e) {
    if (typeof e === "string") bad(`${codec.kind}: ${e}`);
    throw e;
  }
}

export function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

/** One line per entry, like `rr dump`. */
export function describeEntry(entry: LogEntry): string {
  const at = `slice ${entry.slice} icount ${entry.icount}`;
  switch (entry.kind) {
    case "serial":
      return `${at} serial ${JSON.stringify(new TextDecoder().decode(entry.data))}${entry.source ? ` from ${entry.source.client}#${entry.source.seq}` : ""}`;
    case "keys":
      return `${at} keys ${Array.from(entry.data, (b) => b.toString(16).padStart(2, "0")).join(" ")}`;
    case "clock": {
      const parts: string[] = [];
      if (entry.advanceMs !== undefined) parts.push(`advance ${entry.advanceMs.toFixed(6)} ms`);
      if (entry.msPerInstruction !== undefined) parts.push(`rate ${(1 / entry.msPerInstruction / 1000).toFixed(3)} MIPS`);
      return `${at} clock ${parts.join(", ")}`;
    }
    case "progress":
      return `${at} progress (complete through slice ${entry.slice})`;
    case "digest":
      return `${at} digest ${entry.digest}`;
    case "control":
      return `${at} control ${entry.action}`;
    case "disk-read":
      return `${at} disk-read #${entry.id} +${entry.at} ${entry.data.length} bytes`;
    case "disk-write":
      return `${at} disk-write #${entry.id} done`;
    case "net":
      return `${at} net in ${describeFrame(entry.data)}`;
  }
}
