// Lag control in time: a protected primary pauses its guest while the oldest slice its backup has not
// executed ended more than lagMsMax ago, and goes on once the backup's ack brings that under half of it;
// the lag it measures is the age of the newest slice an ack covers.
import { describe, expect, it } from "vitest";
import { defaultPrimaryConfig, PrimaryCore } from "../../ft/core/primary-core.js";
import type { LogHeader } from "../../hypervisor/log-file.js";

const header = { recordedAt: "test" } as unknown as LogHeader;

function protectedPrimary(): PrimaryCore {
  const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagMsMax: 30, lagSlicesMax: 1000 }, 1, header);
  p.append({ kind: "progress", slice: 0, icount: 0 });
  p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0 }, 0);
  p.flush();
  p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 0 }, 1);
  expect(p.state).toBe("protected");
  return p;
}

describe("lag control in time", () => {
  it("pauses past lagMsMax and resumes within half of it once the backup has executed", () => {
    const p = protectedPrimary();
    for (let s = 1; s <= 10; s++) p.noteSlice(s, 100 + s); // slice s ended at 100 + s ms
    expect(p.mayRun(10, 120)).toBe(true); // the oldest unexecuted slice (1) is 19 ms old
    expect(p.lagMs(132)).toBe(31);
    expect(p.mayRun(10, 132)).toBe(false);
    // the backup executed through slice 8: slice 9 (ended at 109) is the oldest left
    p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 8 }, 133);
    expect(p.takeLagSample()).toBe(133 - 108);
    expect(p.takeLagSample()).toBeUndefined();
    expect(p.mayRun(10, 133)).toBe(false); // 24 ms > 15 ms: still paused (hysteresis)
    p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 10 }, 134);
    expect(p.lagMs(134)).toBe(0);
    expect(p.mayRun(10, 134)).toBe(true);
  });

  it("does not hold an unprotected primary", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagMsMax: 30 }, 1, header);
    for (let s = 1; s <= 10; s++) p.noteSlice(s, s);
    expect(p.lagMs(1000)).toBe(0);
    expect(p.mayRun(10, 1000)).toBe(true);
  });
});

describe("lag control while a backup joins from a checkpoint", () => {
  it("a joiner that only keeps pace, 150 slices behind, is protected: the guest waits for it at the protection bound (it sat joining for ever)", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagSlicesMax: 200, lagMsMax: 1e9 }, 1, header);
    p.append({ kind: "progress", slice: 0, icount: 0 });
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 0);
    expect(p.checkpointWanted).toBe(true);
    p.noteSlice(1000, 0);
    p.checkpointTaken(1);
    p.checkpointSent();
    // the checkpoint took a while to arrive and restore: the guest went on meanwhile
    let slice = 1150;
    p.noteSlice(slice, 0);
    let executed = 1000; // restored: it reports the checkpoint's slice
    let paused = 0;
    for (let t = 1; t <= 1000 && p.state === "joining"; t++) {
      // the primary runs a slice whenever it may; the joiner replays one slice a tick: it keeps pace
      if (p.mayRun(slice, t)) p.noteSlice(++slice, t);
      else paused++;
      executed = Math.min(slice, executed + 1);
      p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed }, t);
    }
    expect(p.state).toBe("protected");
    expect(paused).toBeGreaterThan(0);
    expect(paused).toBeLessThanOrEqual(50); // no longer than the joiner takes to replay down to the bound
  });
});

describe("lag control while a backup that joined from a checkpoint says hello again", () => {
  it("a reconnect is still a checkpoint joiner: the guest goes on waiting for it at the protection bound (it ran away from it)", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagSlicesMax: 200, lagMsMax: 1e9 }, 1, header);
    p.append({ kind: "progress", slice: 0, icount: 0 });
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true, run: "b1" }, 0);
    p.noteSlice(1000, 0);
    p.checkpointTaken(1);
    p.checkpointSent();
    p.noteSlice(1150, 0);
    p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 1000 }, 1);
    expect(p.mayRun(1150, 2)).toBe(false); // 150 behind: the guest waits for it
    // its connection drops and it says hello again, holding the log from the checkpoint on
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1, run: "b1" }, 3);
    expect(p.state).toBe("joining");
    expect(p.mayRun(1150, 4)).toBe(false);
    p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 1100 }, 5);
    expect(p.state).toBe("protected");
    // a join hello of the same run, overtaken on the way, is not a restart (no claim of the next epoch)
    const late = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true, run: "b1" }, 6);
    expect(late.some((e) => e.type === "claim-epoch")).toBe(false);
    expect(p.state).toBe("protected");
    // another run under the same node id is a restart
    expect(p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true, run: "b2" }, 7).some((e) => e.type === "claim-epoch")).toBe(true);
  });
});

describe("lag control while a backup replays from power-on", () => {
  it("a joiner that replays no faster than the guest runs catches up: the guest runs at half its pace meanwhile (it stayed joining for ever)", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagSlicesMax: 200, lagMsMax: 1e9 }, 1, header);
    p.append({ kind: "progress", slice: 0, icount: 0 });
    // the guest ran 1000 slices before the backup said hello
    let slice = 1000;
    p.noteSlice(slice, 0);
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1, run: "b1" }, 0);
    expect(p.state).toBe("joining");
    let executed = 0;
    let ran = 0;
    let t = 1;
    for (; t <= 10_000 && p.state === "joining"; t++) {
      // one slice a tick each, when the guest may run; the joiner's reconnects (same run) change nothing
      if (p.mayRun(slice, t)) {
        p.noteSlice(++slice, t);
        ran++;
      }
      executed = Math.min(slice, executed + 1);
      p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed }, t);
      if (t % 500 === 0) p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1, run: "b1" }, t);
    }
    expect(p.state).toBe("protected");
    // lag 1000 closes at half a slice a tick after the head start: about 2 × (1000 + 200) ticks
    expect(t).toBeLessThan(2 * (1000 + 200) + 200);
    expect(ran).toBeGreaterThan(t / 2 - 100); // the guest was slowed, not stopped
  });

  it("a joiner that never reports executing (its machine does not start) does not hold the guest", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagSlicesMax: 200, lagMsMax: 1e9 }, 1, header);
    p.append({ kind: "progress", slice: 0, icount: 0 });
    p.noteSlice(1000, 0);
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1, run: "b1" }, 0);
    for (let slice = 1001, t = 1; t <= 1000; t++, slice++) {
      expect(p.mayRun(slice - 1, t)).toBe(true);
      p.noteSlice(slice, t);
      p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed: 0 }, t);
    }
    expect(p.state).toBe("joining");
  });

  it("a joiner twice as fast as the guest never holds it", () => {
    const p = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: "A", lagSlicesMax: 200, lagMsMax: 1e9 }, 1, header);
    p.append({ kind: "progress", slice: 0, icount: 0 });
    let slice = 1000;
    p.noteSlice(slice, 0);
    p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1 }, 0);
    let executed = 0;
    for (let t = 1; p.state === "joining"; t++) {
      expect(p.mayRun(slice, t)).toBe(true);
      p.noteSlice(++slice, t);
      executed = Math.min(slice, executed + 2);
      p.step({ type: "ack", epoch: 1, have: 1, complete: 0, executed }, t);
    }
    expect(p.state).toBe("protected");
  });
});
