// A replay heading for an entry whose instruction count its machine has already passed can never
// meet it (counts never go down): it stops there with a divergence, instead of running on to the
// entry's slice, which a damaged log or a confused primary may put arbitrarily far ahead.
import { describe, expect, it } from "vitest";
import { errorOf } from "../support/lockstep-error-of.js";
import { ErrorCode } from "../../emulator/lockstep-error.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { Replayer } from "../../hypervisor/replayer.js";
import type { SliceDriver } from "../../hypervisor/slice-driver.js";

/** A machine that runs 1000 instructions per slice. */
function fakeDriver(): SliceDriver {
  const d = {
    slice: 0,
    icount: 0,
    machine: { digest: () => "0000000000000000" },
    apply: () => {},
    runSlice: () => {
      d.slice++;
      d.icount += 1000;
      return { icount: d.icount, instructions: 1000, halted: false, nextDeadlineMs: 0, serial: null, diskRequests: [] };
    },
  };
  return d as unknown as SliceDriver;
}

const far: LogEntry[] = [
  { kind: "progress", slice: 2, icount: 2000 },
  { kind: "keys", slice: 10 ** 15, icount: 4500, data: Uint8Array.from([0x1e]) },
];

describe("an entry the machine has run past", () => {
  it("stops an offline replay at once instead of running on towards the entry's far-future slice", () => {
    const driver = fakeDriver();
    let i = 0;
    const replayer = new Replayer(driver, () => far[i++]);
    const e = errorOf(() => replayer.step(10_000));
    expect(e.code).toBe(ErrorCode.divergence);
    expect(e.message).toMatch(/diverged before slice 1000000000000000: the log's next entry is at instruction count 4500 but replay is at 5000 already, at slice 5/);
    // the entry before it was met at exactly its count
    expect(e.details).toMatchObject({ slice: 5, log: 4500, replay: 5000, lastVerifiedSlice: 2 });
    expect(driver.slice).toBe(5);
  });

  it("stops a following backup at once too", () => {
    const driver = fakeDriver();
    let i = 0;
    const replayer = new Replayer(driver, () => far[i++]);
    expect(errorOf(() => replayer.follow(10 ** 15, 10_000)).code).toBe(ErrorCode.divergence);
    expect(driver.slice).toBe(5);
  });
});
