// Recordings can carry periodic checkpoints; `replay --from SLICE` starts at the nearest one at or
// before SLICE and reproduces the rest of the recording exactly (same final digest check, same tail
// of serial output), and a damaged checkpoint is refused with a stable code.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { checkpointDir, listCheckpoints } from "../../hypervisor/checkpoint-store.js";
import { runCli } from "../support/cli.js";
import { scratch } from "../support/record-replay.js";

const log = join(scratch, "with-checkpoints.lslog");

describe("replay --from a checkpoint", () => {
  beforeAll(() => {
    const script = join(packageRoot(), "test/fixtures/tiny-session.script");
    const r = runCli(["record", "--image", "tiny", "--out", log, "--force", "--digest-every", "2", "--checkpoint-every", "4", "--input", script]);
    expect(r.status, r.stderr).toBe(0);
  });

  it("starts at the nearest checkpoint and verifies every digest after it", () => {
    const slices = listCheckpoints(log);
    expect(slices.length).toBeGreaterThan(1);
    const full = JSON.parse(runCli(["replay", "--json", log]).stdout);
    const target = slices[Math.floor(slices.length / 2)]! + 3;
    const r = runCli(["replay", "--json", "--from", String(target), log]);
    expect(r.status, r.stderr).toBe(0);
    const from = JSON.parse(r.stdout);
    expect(from.startSlice).toBe(slices[Math.floor(slices.length / 2)]);
    expect(from.complete).toBe(true);
    expect(from.slices).toBe(full.slices);
    expect(from.instructions).toBe(full.instructions);
    expect(from.digestsChecked).toBeGreaterThan(0);
    expect(from.digestsChecked).toBeLessThan(full.digestsChecked);
    // the output it prints is the tail of the recording's
    const tail = runCli(["replay", "--from", String(target), log]).stdout;
    const all = runCli(["replay", log]).stdout;
    expect(tail.length).toBeGreaterThan(0);
    expect(all.endsWith(tail)).toBe(true);
  });

  it("refuses a damaged checkpoint with a stable code", () => {
    const slice = listCheckpoints(log)[0]!;
    const path = join(checkpointDir(log), `${slice}.lsckpt`);
    const bytes = readFileSync(path);
    writeFileSync(path, bytes.subarray(0, bytes.length - 100));
    const r = runCli(["replay", "--from", String(slice), log]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/LOCKSTEP_ERR_CHECKPOINT_CORRUPT: Checkpoint refused: checksum mismatch/);
    writeFileSync(path, bytes);
  });
});
