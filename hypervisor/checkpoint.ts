/**
 * Session checkpoints: a machine (see V86Machine.captureCheckpoint), its virtual clock and its slice
 * driver at one boundary, such that a session restored from it and the original, fed the same log
 * from there on, stay bit-identical. The boundary is marked in the log by a `control: checkpoint`
 * entry, which clears the JIT cache on every machine that follows the log.
 *
 * On the wire and on disk: "LSCKPT" + u32 format + u32 crc32 of the body + gzip(msgpack body).
 * A corrupted or truncated checkpoint is refused with LOCKSTEP_ERR_CHECKPOINT_CORRUPT.
 */
import { promisify } from "node:util";
import { gunzip, gzip, constants as zlibConstants, crc32 } from "node:zlib";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import type { MachineCheckpoint } from "../emulator/v86-machine.js";
import { packr } from "./log-file.js";
import { MachineSession, type SessionOptions } from "./machine-session.js";
import type { DriverState, SliceDriver } from "./slice-driver.js";
import type { ClockState } from "./virtual-clock.js";

export interface SessionCheckpoint {
  machine: MachineCheckpoint;
  clock: ClockState;
  driver: DriverState;
}

export const checkpointFormat = 1;
const magic = Buffer.from("LSCKPT");
const headBytes = magic.length + 8;

/** Captures a machine, clock and driver at the boundary where the checkpoint entry was just applied. */
export function captureSession(driver: SliceDriver): SessionCheckpoint {
  return { machine: driver.machine.captureCheckpoint(), clock: driver.clock.save(), driver: driver.save() };
}

export async function encodeCheckpoint(c: SessionCheckpoint): Promise<Buffer> {
  const body = await promisify(gzip)(packr.pack(c), { level: 1, strategy: zlibConstants.Z_DEFAULT_STRATEGY });
  const head = Buffer.alloc(headBytes);
  magic.copy(head, 0);
  head.writeUInt32BE(checkpointFormat, magic.length);
  head.writeUInt32BE(crc32(body), magic.length + 4);
  return Buffer.concat([head, body]);
}

export async function decodeCheckpoint(bytes: Uint8Array): Promise<SessionCheckpoint> {
  const bad = (why: string): never => {
    throw new LockstepError(ErrorCode.checkpointCorrupt, `Checkpoint refused: ${why}`);
  };
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < headBytes || !b.subarray(0, magic.length).equals(magic)) bad("not a lockstep checkpoint");
  const format = b.readUInt32BE(magic.length);
  if (format !== checkpointFormat) bad(`format ${format}, this lockstep reads ${checkpointFormat}`);
  const body = b.subarray(headBytes);
  if (crc32(body) !== b.readUInt32BE(magic.length + 4)) bad(`checksum mismatch over ${body.length} bytes (corrupted or truncated)`);
  let raw: Buffer;
  try {
    raw = await promisify(gunzip)(body);
  } catch (e) {
    return bad(`cannot be decompressed: ${(e as Error).message}`);
  }
  const c = packr.unpack(raw) as SessionCheckpoint;
  if (!c || typeof c !== "object" || !c.machine || !(c.machine.memory instanceof Uint8Array) || !(c.machine.devices instanceof Uint8Array) || !c.clock || !c.driver) {
    bad("missing parts");
  }
  // msgpackr yields Buffers that view the whole body: copy into plain arrays
  c.machine.memory = new Uint8Array(c.machine.memory);
  c.machine.devices = new Uint8Array(c.machine.devices);
  return c;
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
