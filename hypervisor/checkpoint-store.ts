/**
 * Periodic checkpoints of a recording, kept next to its log: `FILE.lslog.checkpoints/<slice>.lsckpt`.
 * Each marks a boundary where the log has a `control: checkpoint` entry; `lockstep replay --from
 * SLICE` starts at the nearest one at or before SLICE instead of at power-on.
 */
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeCheckpoint, encodeCheckpoint, type SessionCheckpoint } from "./checkpoint.js";

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

export async function loadCheckpoint(logPath: string, slice: number): Promise<SessionCheckpoint> {
  return decodeCheckpoint(loadCheckpointBytes(logPath, slice));
}

/** The encoded checkpoint (for a machine thread, which decodes it itself). */
export function loadCheckpointBytes(logPath: string, slice: number): Uint8Array {
  return readFileSync(join(checkpointDir(logPath), `${slice}.lsckpt`));
}
