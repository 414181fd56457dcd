// Checkpoint files next to a log are untrusted input too: one larger than any checkpoint of the
// machine can be is refused unread with LOCKSTEP_ERR_CHECKPOINT_CORRUPT (a file of 3 GiB crashed
// `replay --from` with a bare RangeError while being read whole into memory).
import { mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { checkpointDir, loadCheckpointBytes } from "../../hypervisor/checkpoint-store.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-ckpt-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("checkpoint files", () => {
  it("refuses a checkpoint file larger than its machine's checkpoint can be, without reading it (a 3 GiB one threw a bare RangeError)", () => {
    const log = join(dir, "big.lslog");
    mkdirSync(checkpointDir(log));
    const path = join(checkpointDir(log), "7.lsckpt");
    writeFileSync(path, "");
    truncateSync(path, 3 * 2 ** 30); // sparse: no disk space used
    let error: unknown;
    try {
      loadCheckpointBytes(log, 7, 32);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(LockstepError);
    expect((error as LockstepError).code).toBe(ErrorCode.checkpointCorrupt);
    expect((error as LockstepError).message).toMatch(/its 3221225472 bytes are more than a checkpoint of a machine of 32 MiB can take/);
  });
});
