// The shared disk (file backend) across failovers: DISK_RUNS runs (default 1) of two SIGKILLs of
// the primary each; e2fsck clean and every durable record on the disk after each run (see
// test/support/shared-disk-runs.ts). `npm run soak:disk` runs 10 × 2 on each backend.
import { describe, it } from "vitest";
import { killsPerRun, writeRecordsThroughKills } from "../support/shared-disk-runs.js";

const runs = Number(process.env.DISK_RUNS ?? 1);

describe("shared disk across failovers", () => {
  it(`file backend: ${runs * killsPerRun} SIGKILLs of the primary in ${runs} runs; e2fsck clean, every durable record on the disk`, async () => {
    for (let r = 0; r < runs; r++) await writeRecordsThroughKills("file", killsPerRun);
  }, 1_800_000);
});
