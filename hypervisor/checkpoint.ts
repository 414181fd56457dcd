/**
 * Session checkpoints: a machine (see V86Machine.captureCheckpoint), its virtual clock and its slice
 * driver at one boundary, such that a session restored from it and the original, fed the same log
 * from there on, stay bit-identical. The boundary is marked in the log by a `control: checkpoint`
 * entry, which clears the JIT cache on every machine that follows the log.
 *
 * On the wire and on disk: "LSCKPT" + u32 format + u32 crc32 of the body + body, where the body is
 * gzip(u32 meta bytes | meta | wasm memory | device state) and meta is the msgpack of the
 * checkpoint with `machine.memory` and `machine.devices` replaced by their byte counts. The two big
 * parts stay out of msgpack: msgpackr keeps its largest encode buffer and its last decode source for
 * reuse, so every process that took or restored a checkpoint held two more copies of guest memory
 * for good.
 * A corrupted or truncated checkpoint is refused with LOCKSTEP_ERR_CHECKPOINT_CORRUPT, and so is one
 * that would decompress to more than the machine it is for can hold (its guest memory plus
 * `checkpointOverheadBytes`: a small gzip stream could otherwise expand to any size), or whose
 * decoded parts do not have the shapes a session is restored from.
 */
import { promisify } from "node:util";
import { once } from "node:events";
import { createGzip, gunzip, constants as zlibConstants, crc32 } from "node:zlib";
import { describeValue, ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import { memoryMiBMax } from "../emulator/machine-config.js";
import type { MachineCheckpoint } from "../emulator/v86-machine.js";
import { isRate } from "./event-log/clock-adjust.js";
import { packr } from "./log-file.js";
import { MachineSession, type SessionOptions } from "./machine-session.js";
import type { DriverState, SliceDriver } from "./slice-driver.js";
import type { ClockState } from "./virtual-clock.js";

export interface SessionCheckpoint {
  machine: MachineCheckpoint;
  clock: ClockState;
  driver: DriverState;
}

// 2: memory and devices outside the msgpack meta
export const checkpointFormat = 2;
const magic = Buffer.from("LSCKPT");
const headBytes = magic.length + 8;
/**
 * What a checkpoint holds beyond guest RAM: the rest of v86's wasm memory (CPU state, the JIT's and
 * the allocator's structures; about 13 MiB, growing a little as the guest runs) and its device state
 * (up to 15 MiB for the linux guest, most of it VGA memory). Generous: a checkpoint refused for its
 * size cannot be used at all.
 */
export const checkpointOverheadBytes = 256 * 2 ** 20;

/**
 * Inflated in chunks this large: allocations above the C library's largest mmap threshold (32 MiB)
 * go back to the system when freed, where thousands of small zlib chunks left the heap of the thread
 * that restored a checkpoint hundreds of MiB larger for good.
 */
const inflateChunkBytes = 64 * 2 ** 20;

/** Decompressed bytes at most of a checkpoint of a machine with this much guest memory. */
export function checkpointBytesMax(guestMemoryMiB: number): number {
  return guestMemoryMiB * 2 ** 20 + checkpointOverheadBytes;
}

/** Captures a machine, clock and driver at the boundary where the checkpoint entry was just applied. */
export function captureSession(driver: SliceDriver): SessionCheckpoint {
  return { machine: driver.machine.captureCheckpoint(), clock: driver.clock.save(), driver: driver.save() };
}

export async function encodeCheckpoint(c: SessionCheckpoint): Promise<Buffer> {
  // (anything else than bytes stays in the meta, where decoding refuses it: tests craft such ones)
  const bytesOf = (v: unknown) => (v instanceof Uint8Array ? v : new Uint8Array(0));
  const machine = (c as Partial<SessionCheckpoint> | null | undefined)?.machine as Partial<MachineCheckpoint> | null | undefined;
  const [memory, devices] = [bytesOf(machine?.memory), bytesOf(machine?.devices)];
  const sizeOr = (v: unknown) => (v instanceof Uint8Array ? v.byteLength : v);
  const plain = machine !== null && typeof machine === "object" && Object.getPrototypeOf(machine) === Object.prototype;
  const meta = packr.pack(plain ? { ...c, machine: { ...machine, memory: sizeOr(machine.memory), devices: sizeOr(machine.devices) } } : c);
  const metaBytes = Buffer.alloc(4);
  metaBytes.writeUInt32BE(meta.length);
  // streamed through gzip part by part: no copy of guest memory is made to compress it
  const gz = createGzip({ level: 1, strategy: zlibConstants.Z_DEFAULT_STRATEGY });
  const out: Buffer[] = [];
  gz.on("data", (chunk: Buffer) => out.push(chunk));
  const done = once(gz, "end");
  for (const part of [metaBytes, meta, memory, devices]) gz.write(part);
  gz.end();
  await done;
  const body = Buffer.concat(out);
  const head = Buffer.alloc(headBytes);
  magic.copy(head, 0);
  head.writeUInt32BE(checkpointFormat, magic.length);
  head.writeUInt32BE(crc32(body), magic.length + 4);
  return Buffer.concat([head, body]);
}

/**
 * Decodes and checks a checkpoint for a machine of `guestMemoryMiB` (default: the largest a machine
 * config allows). Throws LOCKSTEP_ERR_CHECKPOINT_CORRUPT saying what is wrong.
 */
export async function decodeCheckpoint(bytes: Uint8Array, guestMemoryMiB = memoryMiBMax): Promise<SessionCheckpoint> {
  const bad = (why: string): never => {
    throw new LockstepError(ErrorCode.checkpointCorrupt, `Checkpoint refused: ${why}`);
  };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < headBytes || !b.subarray(0, magic.length).equals(magic)) bad("not a lockstep checkpoint");
  const format = b.readUInt32BE(magic.length);
  if (format !== checkpointFormat) bad(`format ${format}, this lockstep reads ${checkpointFormat}`);
  const body = b.subarray(headBytes);
  if (crc32(body) !== b.readUInt32BE(magic.length + 4)) bad(`checksum mismatch over ${body.length} bytes (corrupted or truncated)`);
  const outputMax = checkpointBytesMax(guestMemoryMiB);
  let raw: Buffer;
  try {
    raw = await promisify(gunzip)(body, { maxOutputLength: outputMax, chunkSize: inflateChunkBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
      return bad(`it decompresses to more than ${outputMax} bytes, more than a machine of ${guestMemoryMiB} MiB can hold`);
    }
    return bad(`cannot be decompressed: ${(e as Error).message}`);
  }
  if (raw.length < 4 || raw.readUInt32BE(0) > raw.length - 4) return bad("its body is shorter than its meta says");
  const metaEnd = 4 + raw.readUInt32BE(0);
  let decoded: unknown;
  try {
    // a copy: msgpackr keeps its last source, which must not be the whole body
    decoded = packr.unpack(Buffer.from(raw.subarray(4, metaEnd)));
  } catch (e) {
    return bad(`its body does not decode: ${(e as Error).message}`);
  }
  const m = (decoded as { machine?: { memory?: unknown; devices?: unknown } } | null)?.machine;
  if (m && typeof m === "object") {
    const size = (v: unknown) => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : 0);
    const [memoryBytes, deviceBytes] = [size(m.memory), size(m.devices)];
    if (metaEnd + memoryBytes + deviceBytes !== raw.length) return bad(`its memory and device sizes (${describeValue(m.memory)}, ${describeValue(m.devices)}) do not add up to the ${raw.length - metaEnd} bytes after the meta`);
    const memoryEnd = metaEnd + memoryBytes;
    // (sizes that are not numbers stay what they are, and checkShape names them)
    if (typeof m.memory === "number") m.memory = raw.subarray(metaEnd, memoryEnd); // copied into wasm memory at restore; then the body goes
    if (typeof m.devices === "number") m.devices = new Uint8Array(raw.subarray(memoryEnd));
  }
  return checkShape(decoded, bad);
}

/** Checks every part a session is restored from; `bad` throws naming the field. */
function checkShape(raw: unknown, bad: (why: string) => never): SessionCheckpoint {
  const field = (name: string, want: string, v: unknown): never => bad(`${name} must be ${want}, not ${describeValue(v)}`);
  const map = (v: unknown, name: string): Record<string, unknown> => {
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Uint8Array || v instanceof Date) field(name, "a map", v);
    return v as Record<string, unknown>;
  };
  const count = (v: unknown, name: string, most = Number.MAX_SAFE_INTEGER): void => {
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0 || v > most) field(name, `an integer from 0 to ${most}`, v);
  };
  const finite = (v: unknown, name: string): void => {
    if (typeof v !== "number" || !Number.isFinite(v)) field(name, "a finite number", v);
  };
  const bytes = (v: unknown, name: string): void => {
    if (!Array.isArray(v) || !v.every((b) => typeof b === "number" && Number.isInteger(b) && b >= 0 && b <= 255)) field(name, "a list of bytes", v);
  };
  const boolean = (v: unknown, name: string): void => {
    if (typeof v !== "boolean") field(name, "true or false", v);
  };

  const c = map(raw, "the checkpoint");
  const m = map(c.machine, "machine");
  if (!(m.memory instanceof Uint8Array) || m.memory.byteLength % 65536 !== 0) field("machine.memory", "whole 64 KiB pages of wasm memory", m.memory);
  if (!(m.devices instanceof Uint8Array)) field("machine.devices", "bytes", m.devices);
  count(m.icount, "machine.icount");
  count(m.counter, "machine.counter", 0xffffffff);
  const h = map(m.hidden, "machine.hidden");
  bytes(h.kbd, "machine.hidden.kbd");
  bytes(h.mouse, "machine.hidden.mouse");
  const ps2 = map(h.ps2, "machine.hidden.ps2");
  boolean(ps2.nextByteIsReady, "machine.hidden.ps2.nextByteIsReady");
  boolean(ps2.nextByteIsAux, "machine.hidden.ps2.nextByteIsAux");
  finite(ps2.wheelMovement, "machine.hidden.ps2.wheelMovement");
  finite(ps2.lastMousePacket, "machine.hidden.ps2.lastMousePacket");
  if (!Array.isArray(h.uartInput) || h.uartInput.length > 4) field("machine.hidden.uartInput", "a list of at most 4 UARTs' input", h.uartInput);
  (h.uartInput as unknown[]).forEach((u, i) => bytes(u, `machine.hidden.uartInput[${i}]`));
  count(h.fwPointer, "machine.hidden.fwPointer");
  if (h.cdromEjected !== undefined && h.cdromEjected !== true) field("machine.hidden.cdromEjected", "true or absent", h.cdromEjected);
  if (m.diskNextId !== null) count(m.diskNextId, "machine.diskNextId");
  const k = map(c.clock, "clock");
  finite(k.baseMs, "clock.baseMs");
  count(k.baseIcount, "clock.baseIcount");
  if (!isRate(k.msPerInstruction)) field("clock.msPerInstruction", "a rate a log allows", k.msPerInstruction);
  finite(k.lastReadMs, "clock.lastReadMs");
  if (!Array.isArray(k.rng) || k.rng.length !== 4 || !k.rng.every((w) => typeof w === "number" && Number.isInteger(w) && w >= 0 && w <= 0xffffffff)) {
    field("clock.rng", "four 32-bit words", k.rng);
  }
  const d = map(c.driver, "driver");
  count(d.slice, "driver.slice");
  boolean(d.halted, "driver.halted");
  finite(d.nextDeadlineMs, "driver.nextDeadlineMs");
  return c as unknown as SessionCheckpoint;
}

/** Opens a session of the same machine config and makes it the checkpointed one. */
export async function sessionFromCheckpoint(options: SessionOptions, c: SessionCheckpoint): Promise<MachineSession> {
  const session = await MachineSession.open(options);
  try {
    session.machine.restoreCheckpoint(c.machine);
    session.clock.restore(c.clock);
    session.driver.restore(c.driver);
  } catch (e) {
    session.close();
    throw new LockstepError(ErrorCode.checkpointCorrupt, `Checkpoint does not fit this machine: ${(e as Error).message}`);
  }
  return session;
}
