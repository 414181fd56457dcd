// NodeCore, in two situations the simulation found: a primary that stalled while its backup took
// over must not write, on waking, what the backup had acknowledged (the write landed over a newer
// one of the new primary: a write the new primary's guest had seen completed was lost), and a
// joining backup whose checkpoint never arrived whole asks for another one — and one whose
// primary fell silent still gives up (its own retries used to reset the silence, so it asked for
// ever), and is never counted as caught up before its checkpoint went out.
import { describe, expect, it } from "vitest";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { checkpointRetryMs, NodeCore, type NodeEffect } from "../../ft/core/node-core.js";
import { notEligible } from "../../ft/core/primary-core.js";
import type { DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { DiskScheduler } from "../../hypervisor/disk/disk-scheduler.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { MachineBatch } from "../../hypervisor/machine-thread/machine-protocol.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const failureTimeoutMs = 150;
const config = { nodeId: "A", heartbeatIntervalMs: 20, failureTimeoutMs, primary: { unackedEntriesMax: 400, lagSlicesMax: 50 } };
const batch = (slice: number, atMs: number, disk: MachineBatch["disk"] = []): MachineBatch => ({ type: "batch", entries: [{ kind: "progress", slice, icount: slice * 1000 }], output: [], net: [], disk, slice, atWallMs: atMs });
const write: DiskRequest = { id: 1, op: "write", offset: 0, length: 512, data: new Uint8Array(512).fill(7) };

/** A protected primary carrying its disk effects out on a DiskScheduler whose clock the test sets. */
function primaryWithDisk() {
  const clock = { now: 0 };
  const writes: number[] = [];
  const backend: DiskBackend = {
    description: "test",
    bytes: 1 << 20,
    read: async (_offset, length) => new Uint8Array(length),
    write: async (offset) => void writes.push(offset),
    close: async () => {},
  };
  const disk = new DiskScheduler(backend, { onRead: () => {}, onWrite: () => {}, onStall: () => {}, now: () => clock.now });
  const core = new NodeCore(config);
  const run = (effects: NodeEffect[]) => {
    for (const e of effects) {
      if (e.type === "disk-submit") disk.submit(e.requests, e.slice);
      else if (e.type === "disk-release") disk.release(e.slice, e.untilMs);
    }
    return effects;
  };
  const at = (t: number) => (clock.now = t);
  run(core.startPrimary(1, header, 0));
  run(core.peerMessage({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0, true));
  run(core.machineBatch(batch(1, 0), 0));
  run(core.peerMessage({ type: "ack", epoch: 1, have: 1, complete: 1, executed: 1 }, 1));
  expect(core.primary!.state).toBe("protected");
  // a heartbeat at 10, echoed by the backup
  at(10);
  run(core.tick(10, 1));
  run(core.peerMessage({ type: "heartbeat", epoch: 1, nodeId: "B", echo: 10 }, 15));
  // the guest writes in slice 2; the log through slice 2 goes to the backup
  at(20);
  run(core.machineBatch(batch(2, 20, [{ slice: 2, requests: [write] }]), 20));
  expect(disk.heldWrites).toBe(1);
  return { core, disk, writes, run, at };
}

describe("a protected primary's disk writes", () => {
  it("go to the disk once the backup acknowledged their slice, while the lease lasts", () => {
    const { core, writes, run, at } = primaryWithDisk();
    at(25);
    run(core.peerMessage({ type: "ack", epoch: 1, have: 2, complete: 2, executed: 2, echo: 10 }, 25));
    expect(writes).toEqual([0]);
  });

  it("wait, after a stall, until the backup shows it still follows (it may have gone live meanwhile)", () => {
    const { core, disk, writes, run, at } = primaryWithDisk();
    // the primary stalls; the backup's ack (sent at 25) waits in its socket until it wakes at 400,
    // by when the backup may well have suspected it, won the next epoch and written the disk
    at(400);
    const effects = run(core.peerMessage({ type: "ack", epoch: 1, have: 2, complete: 2, executed: 2, echo: 10 }, 400));
    expect(effects).toContainEqual({ type: "disk-release", slice: 2, untilMs: 10 + failureTimeoutMs - failureTimeoutMs / 4 });
    expect(writes).toEqual([]);
    expect(disk.heldWrites).toBe(1);
    // the backup still follows after all: a fresh echo renews the lease and the write goes
    const hb = run(core.tick(405, 2)).find((e) => e.type === "send" && e.message.type === "heartbeat");
    expect(hb).toMatchObject({ message: { at: 405 } });
    at(410);
    run(core.peerMessage({ type: "heartbeat", epoch: 1, nodeId: "B", echo: 405 }, 410));
    expect(writes).toEqual([0]);
  });
});

describe("a joining backup", () => {
  it("asks again for a checkpoint when no part came for a while", () => {
    const core = new NodeCore({ ...config, nodeId: "B", join: true });
    core.startBackup();
    const hellos: number[] = [];
    const note = (t: number, effects: NodeEffect[]) => {
      for (const e of effects) if (e.type === "send" && e.message.type === "hello" && e.message.join) hellos.push(t);
    };
    note(0, core.peerConnected(0));
    note(5, core.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: notEligible }, 5));
    for (let t = 10; t <= 1000; t += 10) {
      note(t, core.peerMessage({ type: "heartbeat", epoch: 1, nodeId: "A", at: t }, t));
      // one part of a checkpoint in two arrives at 200; the other is lost
      if (t === 200) note(t, core.peerMessage({ type: "checkpoint", epoch: 1, first: 5, slice: 3, part: 0, parts: 2, data: new Uint8Array([1]), console: 0, inputs: [] }, t));
      note(t, core.tick(t, 0));
    }
    const retry = checkpointRetryMs(failureTimeoutMs);
    expect(hellos[0]).toBe(0);
    expect(hellos[1]).toBeGreaterThan(200 + retry);
    expect(hellos[1]).toBeLessThanOrEqual(200 + retry + 10);
    expect(core.backup!.state).toBe("following");
  });

  it("gives up when the primary falls silent: its own requests do not count as the primary's traffic", () => {
    const core = new NodeCore({ ...config, nodeId: "B", join: true });
    core.startBackup();
    core.peerConnected(0);
    core.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: notEligible }, 5);
    let asked = 0;
    for (let t = 10; t <= 3000 && core.role !== "halted"; t += 10) {
      for (const e of core.tick(t, 0)) if (e.type === "send" && e.message.type === "hello") asked++;
    }
    expect(asked).toBeGreaterThan(0);
    expect(core.role).toBe("halted");
    expect(core.haltReason).toMatch(/primary silent before this backup caught up/);
  });
});

describe("a primary and a backup joining early in the run", () => {
  it("is not protected before the checkpoint went out, whatever the backup says it executed", () => {
    const core = new NodeCore(config);
    core.startPrimary(1, header, 0);
    core.machineBatch(batch(20, 0), 0); // slice 20: within lag bounds of slice 0
    core.peerMessage({ type: "hello", epoch: 0, nodeId: "B", have: 0, join: true }, 1, true);
    core.peerMessage({ type: "ack", epoch: 1, have: 0, complete: 0, executed: 0 }, 2);
    expect(core.primary!.state).toBe("joining");
    // its request again, while the checkpoint is taken: no epoch claimed for a "restarted" backup
    const again = core.peerMessage({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 3, true);
    expect(again.some((e) => e.type === "claim-epoch")).toBe(false);
    expect(core.primary!.state).toBe("joining");
  });
});

describe("a backup of another arbiter", () => {
  it("is refused for good at hello, before it becomes the peer", () => {
    const core = new NodeCore({ ...config, arbiterId: "arbiter-one" });
    core.startPrimary(1, header, 0);
    const effects = core.peerMessage({ type: "hello", epoch: 0, nodeId: "B", have: 0, arbiter: "arbiter-two" }, 1, true);
    expect(effects).toContainEqual(expect.objectContaining({ type: "peer-refuse", fatal: true }));
    expect(core.primary!.peerId).toBeUndefined();
    const same = core.peerMessage({ type: "hello", epoch: 0, nodeId: "B", have: 0, arbiter: "arbiter-one" }, 2, true);
    expect(same).toContainEqual({ type: "peer-accept" });
  });
});

describe("the pause a join costs the guest", () => {
  it("is measured from the backup's request to protection: the time the guest was held meanwhile", () => {
    const core = new NodeCore(config);
    core.startPrimary(1, header, 0);
    core.machineBatch(batch(1, 0), 0);
    expect(core.peerMessage({ type: "hello", epoch: 0, nodeId: "B", have: 0, join: true }, 1, true)).toContainEqual({ type: "machine-checkpoint" });
    core.checkpointTaken(0);
    core.checkpointSent();
    // the backup builds its machine: the guest goes on meanwhile (a checkpoint lost on the way
    // would otherwise hold it until another one arrived)
    for (let s = 2; s <= 60; s++) core.machineBatch(batch(s, 20), 20);
    core.tick(120, 60);
    expect(core.status().guestHeldMs).toBe(0);
    // it runs from the checkpoint (slice 1): now lag control holds the guest until it caught up
    core.peerMessage({ type: "ack", epoch: 1, have: core.primary!.logLength, complete: 60, executed: 1 }, 130);
    core.tick(200, 60);
    expect(core.primary!.state).toBe("joining");
    core.peerMessage({ type: "ack", epoch: 1, have: core.primary!.logLength, complete: 60, executed: 60 }, 230);
    expect(core.primary!.state).toBe("protected");
    expect(core.lastJoin).toEqual({ ms: 229, guestHeldMs: 100 });
  });
});

describe("a primary on a leased arbiter (etcd)", () => {
  const output = (slice: number, atMs: number): MachineBatch => ({ ...batch(slice, atMs), output: [{ slice, data: new TextEncoder().encode(`out${slice}`) }] });
  const gates = (effects: NodeEffect[]) => effects.filter((e) => e.type === "machine-gate").map((e) => (e as { open: boolean }).open);

  it("releases output and runs its guest only while its hold lasts; a renewal lets both go on", () => {
    const core = new NodeCore({ ...config, arbiterHold: true });
    expect(gates(core.startPrimary(1, header, 0))).toEqual([]); // no hold yet: the gate stays shut
    core.machineBatch(output(1, 0), 0);
    expect(core.stream.released).toBe(0);
    const held = core.arbiterHeld(1000, 5, 1);
    expect(gates(held)).toEqual([true]);
    expect(core.stream.released).toBe(4); // "out1" left once the hold was confirmed
    expect(core.status().arbiterHeld).toBe(true);
    core.machineBatch(output(2, 900), 900);
    expect(core.stream.released).toBe(8);
    // the hold runs out (no renewal came): nothing more leaves, disk writes may not start, the guest waits
    const lapsed = core.tick(1000, 2);
    expect(gates(lapsed)).toEqual([false]);
    expect(lapsed).toContainEqual(expect.objectContaining({ type: "log", level: "warn", msg: expect.stringMatching(/hold on the epoch at the arbiter ran out/) }));
    core.machineBatch(output(3, 1001), 1001);
    expect(core.stream.released).toBe(8);
    expect(core.machineBatch(output(4, 1002), 1002)).toContainEqual({ type: "disk-release", slice: 4, untilMs: 1000 });
    expect(core.status().arbiterHeld).toBe(false);
    // renewed: what waited leaves, the guest goes on
    const renewed = core.arbiterHeld(2500, 1100, 1);
    expect(gates(renewed)).toEqual([true]);
    expect(core.stream.released).toBe(16);
  });

  it("halts when the arbiter holds a newer epoch; an older or equal one changes nothing", () => {
    const core = new NodeCore({ ...config, arbiterHold: true });
    core.startPrimary(3, header, 0);
    expect(core.arbiterNewer(3)).toEqual([]);
    expect(core.arbiterNewer(2)).toEqual([]);
    expect(core.role).toBe("primary");
    expect(core.arbiterNewer(4)).toContainEqual(expect.objectContaining({ type: "halt", reason: expect.stringMatching(/epoch 4 exists at the arbiter/) }));
    expect(core.role).toBe("halted");
  });

  it("without a leased arbiter nothing waits for a hold", () => {
    const core = new NodeCore(config);
    expect(gates(core.startPrimary(1, header, 0))).toEqual([true]);
    core.machineBatch(output(1, 0), 0);
    expect(core.stream.released).toBe(4);
    expect(core.status().arbiterHeld).toBeNull();
  });
});

describe("keys typed at the screen's console", () => {
  it("reach the keyboard with their (client, seq); once logged, a resend is acknowledged, not applied again", () => {
    const core = new NodeCore(config);
    core.startPrimary(1, header, 0);
    core.consoleOpened(1);
    core.consoleAttach(1, "screen-client", 0);
    const keys = Uint8Array.from([0x1e, 0x9e]);
    const first = core.consoleInput(1, 1, keys, true);
    expect(first).toContainEqual({ type: "machine-input", data: keys, source: { client: "screen-client", seq: 1 }, keys: true });
    // the machine logged them at slice 1 (unprotected: released at once)
    const logged: MachineBatch = { type: "batch", entries: [{ kind: "keys", slice: 1, icount: 1000, data: keys, source: { client: "screen-client", seq: 1 } }, { kind: "progress", slice: 1, icount: 1000 }], output: [], net: [], disk: [], slice: 1, atWallMs: 0 };
    core.machineBatch(logged, 0);
    core.machineBatch(batch(2, 1), 1);
    // the client did not see the ack and sends seq 1 again: not applied twice
    const again = core.consoleInput(1, 1, keys, true);
    expect(again.some((e) => e.type === "machine-input")).toBe(false);
    expect(again).toContainEqual({ type: "console-send", session: 1, message: { type: "inack", seq: 1 } });
  });
});

describe("console input the machine refused", () => {
  it("gives its bytes back: the client's resend goes to the machine (the budget leaked, and input stopped for good)", () => {
    const core = new NodeCore(config);
    core.startPrimary(1, header, 0);
    core.consoleOpened(1);
    core.consoleAttach(1, "typist", 0);
    const big = new Uint8Array(4096).fill(0x61);
    for (let round = 0; round < 100; round++) {
      const sent = core.consoleInput(1, 1, big);
      expect(sent.some((e) => e.type === "machine-input"), `round ${round}`).toBe(true);
      core.inputRefused({ client: "typist", seq: 1 }); // the machine's queue was full
    }
  });
});
