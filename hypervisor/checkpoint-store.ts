/**
 * Periodic checkpoints of a recording, kept next to its log: `FILE.lslog.checkpoints/<slice>.lsckpt`.
 * Each marks a boundary where the log has a `control: checkpoint` entry; `lockstep replay --from
 * SLICE` starts at the nearest one at or before SLICE instead of at power-on.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import { memoryMiBMax } from "../emulator/machine-config.js";
import { checkpointBytesMax, decodeCheckpoint, encodeCheckpoint, type SessionCheckpoint } from "./checkpoint.js";

export const checkpointDir = (logPath: string) => `${logPath}.checkpoints`;

/** Slices that have a checkpoint, ascending. */
export function listCheckpoints(logPath: string): number[] {
  let names: string[];
  try {
    names = readdirSync(checkpointDir(logPath));
  } catch {
    return [];
  }
  return names
    .map((n) => /^(\d+)\.lsckpt$/.exec(n)?.[1])
    .filter((s): s is string => s !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/** Writes a checkpoint (atomically: temporary file, then rename); returns its size in bytes. */
export async function saveCheckpoint(logPath: string, c: SessionCheckpoint): Promise<number> {
  const dir = checkpointDir(logPath);
  mkdirSync(dir, { recursive: true });
  const bytes = await encodeCheckpoint(c);
  const path = join(dir, `${c.driver.slice}.lsckpt`);
  writeFileSync(`${path}.tmp`, bytes);
  renameSync(`${path}.tmp`, path);
  return bytes.length;
}

export async function loadCheckpoint(logPath: string, slice: number, guestMemoryMiB = memoryMiBMax): Promise<SessionCheckpoint> {
  return decodeCheckpoint(loadCheckpointBytes(logPath, slice, guestMemoryMiB), guestMemoryMiB);
}

/**
 * The encoded checkpoint (for a machine thread, which decodes it itself). A file larger than a
 * checkpoint of a machine of `guestMemoryMiB` can be even when nothing compresses (gzip then adds
 * a little) is refused unread.
 */
export function loadCheckpointBytes(logPath: string, slice: number, guestMemoryMiB = memoryMiBMax): Uint8Array {
  const path = join(checkpointDir(logPath), `${slice}.lsckpt`);
  const bytesMax = Math.ceil(checkpointBytesMax(guestMemoryMiB) * 1.01) + 2 ** 20;
  try {
    const size = statSync(path).size;
    if (size > bytesMax) {
      throw new LockstepError(ErrorCode.checkpointCorrupt, `Checkpoint ${path} refused: its ${size} bytes are more than a checkpoint of a machine of ${guestMemoryMiB} MiB can take (${bytesMax})`);
    }
    return readFileSync(path);
  } catch (e) {
    if (e instanceof LockstepError) throw e;
    throw new LockstepError(ErrorCode.checkpointCorrupt, `Checkpoint ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
