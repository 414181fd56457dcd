/**
 * Disk files for `--disk`: read whole into a buffer the guest writes into, and written back
 * atomically (temporary file, then rename), so that a crash while flushing never leaves a torn
 * image behind.
 */
import { accessSync, constants, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { ErrorCode, LockstepError } from "./lockstep-error.js";

const sectorBytes = 512;

export function readDiskFile(path: string): Uint8Array {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new LockstepError(ErrorCode.diskUnreadable, `Disk ${path} is not a regular file`);
    size = st.size;
    accessSync(path, constants.R_OK);
  } catch (e) {
    if (e instanceof LockstepError) throw e;
    throw new LockstepError(ErrorCode.diskUnreadable, `Disk ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (size === 0 || size % sectorBytes !== 0) {
    throw new LockstepError(ErrorCode.diskUnreadable, `Disk ${path} has ${size} bytes, not a whole number of 512-byte sectors`);
  }
  const disk = new Uint8Array(new ArrayBuffer(size));
  disk.set(readFileSync(path));
  return disk;
}

export function writeDiskFile(path: string, disk: Uint8Array): void {
  const tmp = `${path}.lockstep-tmp`;
  try {
    writeFileSync(tmp, disk);
    renameSync(tmp, path);
  } catch (e) {
    throw new LockstepError(ErrorCode.diskUnwritable, `Disk ${path} cannot be written: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
