// Offline replay of a disk-heavy recording reproduces the guest's view exactly without opening the
// disk (the log carries every read's data), and a disk can be checked against what the guest wrote.
import { createHash } from "node:crypto";
import { copyFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { packageRoot } from "../../emulator/package-root.js";
import { runCli } from "../support/cli.js";
import { readRecording, scratch } from "../support/record-replay.js";

const disk = join(scratch, "disk-heavy.img");
const log = join(scratch, "disk-heavy.lslog");
let recorded = "";

describe("disk-heavy recording", () => {
  beforeAll(() => {
    writeFileSync(disk, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
    copyFileSync(disk, `${disk}.orig`);
    const script = join(packageRoot(), "test/fixtures/linux-disk.script");
    const r = runCli(["record", "--image", "linux", "--disk", disk, "--write-back", "--fast", "--out", log, "--force", "--input", script], { timeoutMs: 300_000 });
    expect(r.status, r.stderr).toBe(0);
    recorded = r.stdout;
  }, 300_000);

  it("logs the disk traffic: reads with their data, writes as completions", () => {
    const { entries } = readRecording(log);
    const readBytes = entries.filter((e) => e.kind === "disk-read").reduce((n, e) => n + (e as { data: Uint8Array }).data.length, 0);
    const writes = entries.filter((e) => e.kind === "disk-write").length;
    // the file (its size printed by wc -c) was read back after the remount, so its data is in the log
    const size = Number(/\/mnt\/data\r?\n(\d+)\r?\n/.exec(recorded)?.[1]);
    expect(size).toBeGreaterThan(1_500_000);
    expect(readBytes).toBeGreaterThan(size);
    expect(writes).toBeGreaterThan(5);
    expect(recorded).toMatch(/[0-9a-f]{32}\s+\/mnt\/data/);
  });

  it("replays without the disk: same output, every digest checked, and the disk matches what the guest wrote", () => {
    // the recording's disk is not where it was (replay must not need it); a copy of it, given as
    // --disk, is only compared at the end with what the replayed guest wrote
    copyFileSync(disk, `${disk}.copy`);
    renameSync(disk, `${disk}.away`);
    try {
      const r = runCli(["replay", "--json", "--disk", `${disk}.copy`, log], { timeoutMs: 300_000 });
      expect(r.status, r.stderr).toBe(0);
      const summary = JSON.parse(r.stdout);
      expect(summary.complete).toBe(true);
      expect(summary.digestsChecked).toBeGreaterThan(0);
      expect(summary.diskSectorsWritten).toBeGreaterThan(3000);
      expect(summary.serialSha256).toBe(createHash("sha256").update(recorded, "latin1").digest("hex"));
      // the written-back disk holds exactly what the replayed guest wrote ...
      expect(summary.diskCheck).toMatchObject({ mismatchedSectors: 0 });
    } finally {
      renameSync(`${disk}.away`, disk);
    }
    // ... and the disk as it was before the recording does not
    const stale = runCli(["replay", "--json", "--disk", `${disk}.orig`, log], { timeoutMs: 300_000 });
    expect(stale.status).toBe(2);
    expect(stale.stderr).toMatch(/LOCKSTEP_ERR_DISK_MISMATCH: .* differs from what the replayed guest wrote/);
  }, 300_000);
});
