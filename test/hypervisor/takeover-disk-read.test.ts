// A disk read logged in parts, cut by a failover: the old primary's log gave the guest the first part,
// then it died; the new primary issues the read again and its recorder must supply only the rest
// (before, it supplied the read from offset 0 into the half-filled request, which threw, and the new
// primary halted).
import { describe, expect, it } from "vitest";
import { BounceDisk } from "../../emulator/bounce-disk.js";
import { diskDataChunkBytes } from "../../hypervisor/event-log/disk-completion.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { Recorder } from "../../hypervisor/recorder.js";
import type { SliceDriver } from "../../hypervisor/slice-driver.js";

describe("a disk read split across a takeover", () => {
  it("the new primary supplies only the part the guest has not got", () => {
    const disk = new BounceDisk(4 * diskDataChunkBytes);
    const length = 2 * diskDataChunkBytes + 4096;
    const sectors = Uint8Array.from({ length }, (_, i) => (i * 31 + (i >> 12)) & 0xff);
    let got: Uint8Array | undefined;
    disk.get(0, length, (d) => (got = Uint8Array.from(d)));
    const [request] = disk.takeIssued();
    // replayed on the backup from the old primary's log: the first part only
    disk.supplyRead(request!.id, 0, sectors.subarray(0, diskDataChunkBytes));
    expect(disk.readFilled(request!.id)).toBe(diskDataChunkBytes);

    // the backup took over: its recorder gets the whole read again from the disk
    const logged: LogEntry[] = [];
    const driver = {
      slice: 7,
      icount: 1000,
      halted: false,
      clock: { peekMs: () => 0 },
      machine: { disk },
      apply: (e: LogEntry) => {
        if (e.kind === "disk-read") disk.supplyRead(e.id, e.at, e.data);
      },
    } as unknown as SliceDriver;
    const recorder = new Recorder(driver, { digestEverySlices: 0, sink: (e) => logged.push(e) });
    recorder.queueDiskRead(request!.id, sectors);
    expect(recorder.boundary(undefined)).toEqual({ action: "run" });
    expect(logged.map((e) => (e.kind === "disk-read" ? [e.at, e.data.length] : e.kind))).toEqual([
      [diskDataChunkBytes, diskDataChunkBytes],
      [2 * diskDataChunkBytes, 4096],
    ]);
    expect(got).toEqual(sectors);
    expect(disk.inFlight).toBe(0);
  });
});
