/**
 * Fresh disks for machines whose user named none: zeros, or an empty ext2 filesystem made by
 * mke2fs (e2fsprogs) with a fixed UUID, hash seed and time, so that two fresh disks of the same
 * size are byte-identical (a log header can then name the disk by its sha256).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, LockstepError } from "./lockstep-error.js";
import type { DiskSpec } from "./machine-config.js";

const fixedUuid = "6c6f636b-7374-6570-0000-000000000001";

export function makeBlankDisk(spec: DiskSpec): Uint8Array {
  const bytes = spec.sizeMiB * 1024 * 1024;
  if (spec.format === "raw") return new Uint8Array(new ArrayBuffer(bytes));
  const dir = mkdtempSync(join(tmpdir(), "lockstep-disk-"));
  const path = join(dir, "disk.ext2");
  try {
    execFileSync(
      "mke2fs",
      ["-q", "-F", "-t", "ext2", "-L", "lockstep", "-U", fixedUuid, "-E", `hash_seed=${fixedUuid},root_owner=0:0`, "-m", "0", path, `${spec.sizeMiB}M`],
      { env: { ...process.env, E2FSPROGS_FAKE_TIME: "1700000000" }, stdio: ["ignore", "ignore", "pipe"] },
    );
    const data = readFileSync(path);
    const disk = new Uint8Array(new ArrayBuffer(data.byteLength));
    disk.set(data);
    return disk;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === "ENOENT") {
      throw new LockstepError(ErrorCode.diskToolMissing, "mke2fs was not found, so no fresh ext2 disk can be made", "install e2fsprogs, or pass --disk FILE");
    }
    throw new LockstepError(ErrorCode.diskUnwritable, `mke2fs failed: ${err.message}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
