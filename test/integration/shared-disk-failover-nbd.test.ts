// The shared disk on an NBD export (nbdkit) across failovers: DISK_RUNS_NBD runs (default 1) of two
// SIGKILLs of the primary each; e2fsck clean and every durable record on the disk after each run.
// (In its own file so that it runs beside the file-backend runs.)
import { describe, it } from "vitest";
import { killsPerRun, writeRecordsThroughKills } from "../support/shared-disk-runs.js";

const runs = Number(process.env.DISK_RUNS_NBD ?? 1);

describe("shared disk across failovers", () => {
  it(`NBD backend (nbdkit): ${runs * killsPerRun} SIGKILLs of the primary in ${runs} runs; e2fsck clean, every durable record on the disk`, async () => {
    for (let r = 0; r < runs; r++) await writeRecordsThroughKills("nbd", killsPerRun);
  }, 1_800_000);
});
