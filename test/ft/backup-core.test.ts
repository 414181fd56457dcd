// BackupCore's eligibility to take over, under reordering: found by simulation seed 1271, where a
// "not yet eligible" header sent while the backup was joining overtook the later "eligible" one and
// left the backup unable to take over from a dead primary.
import { describe, expect, it } from "vitest";
import { BackupCore } from "../../ft/core/backup-core.js";
import { defaultLogRetention } from "../../ft/core/retained-log.js";
import { notEligible } from "../../ft/core/primary-core.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { PeerMessage } from "../../ft/wire/peer-messages.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const headerMsg = (epoch: number, releasedThrough: number): PeerMessage => ({ type: "header", epoch, nodeId: "A", header, releasedThrough });
const config = { nodeId: "B", heartbeatIntervalMs: 20, failureTimeoutMs: 150, channelTimeoutMs: 1000, retention: defaultLogRetention };

describe("BackupCore eligibility", () => {
  it("ignores a stale 'not yet' of the same epoch that arrives after a number", () => {
    const b = new BackupCore(config);
    b.step(headerMsg(1, notEligible), 0);
    expect(b.eligibleAt).toBe(notEligible);
    b.step(headerMsg(1, 12), 1);
    expect(b.eligibleAt).toBe(12);
    b.step(headerMsg(1, notEligible), 2); // overtaken message
    expect(b.eligibleAt).toBe(12);
    b.step(headerMsg(1, 9), 3); // older number: output never un-leaves
    expect(b.eligibleAt).toBe(12);
    b.step(headerMsg(1, 20), 4);
    expect(b.eligibleAt).toBe(20);
  });

  it("starts over with a newer epoch's word", () => {
    const b = new BackupCore(config);
    b.step(headerMsg(1, 12), 0);
    b.step(headerMsg(2, notEligible), 1);
    expect(b.eligibleAt).toBe(notEligible);
    expect(b.epoch).toBe(2);
  });

  it("halts rather than take over while the log lacks output that already left, after the joining timeout", () => {
    const b = new BackupCore(config);
    b.step(headerMsg(1, 12), 0);
    const effects = [];
    // ticks every 10 ms (no stall of our own): past the failure timeout it still waits ...
    for (let t = 10; t <= 1000; t += 10) effects.push(...b.tick(t));
    expect(b.state).toBe("following");
    // ... a joining backup's timeout (10 × 150 ms), then gives up: it cannot take over
    for (let t = 1010; t <= 1600; t += 10) effects.push(...b.tick(t));
    expect(b.state).toBe("halted");
    expect(effects.some((e) => e.type === "halt")).toBe(true);
  });
});

// Found by the simulation once it checked that the guest still runs after the faults heal: an ack
// lost while nothing changed was never repeated (the primary's lag control then waited forever),
// and every log frame behind a gap asked for the whole log again.
describe("BackupCore under loss", () => {
  const progress = (slice: number) => ({ kind: "progress" as const, slice, icount: slice * 1000 });
  const acks = (effects: ReturnType<BackupCore["tick"]>) => effects.filter((e) => e.type === "send" && e.message.type === "ack");
  const hellos = (effects: ReturnType<BackupCore["tick"]>) => effects.filter((e) => e.type === "send" && e.message.type === "hello");

  it("repeats its ack every heartbeat interval, changed or not", () => {
    const b = new BackupCore(config);
    b.step(headerMsg(1, 0), 0);
    expect(acks(b.step({ type: "log", epoch: 1, first: 0, entries: [progress(1)] }, 1))).toHaveLength(1); // lost
    b.setExecuted(1);
    let repeated = 0;
    for (let t = 10; t <= 100; t += 10) {
      b.step({ type: "heartbeat", epoch: 1, nodeId: "A" }, t);
      repeated += acks(b.tick(t)).length;
    }
    expect(repeated).toBeGreaterThanOrEqual(4);
  });

  it("asks again for a gap once per heartbeat interval, not once per frame behind it", () => {
    const b = new BackupCore(config);
    b.step(headerMsg(1, 0), 0);
    let asked = 0;
    for (let first = 5; first < 15; first++) asked += hellos(b.step({ type: "log", epoch: 1, first, entries: [progress(first)] }, 1)).length;
    expect(asked).toBe(1);
    expect(hellos(b.step({ type: "log", epoch: 1, first: 20, entries: [progress(20)] }, 1 + config.heartbeatIntervalMs))).toHaveLength(1);
  });
});

// Found by the simulation's newcomer interleaving: a following backup whose connection the primary
// closed at every hello (it had won the next epoch meanwhile) redialed every 100 ms, and each new
// connection reset its silence clock, so it never claimed, never learned it had lost, and looped.
describe("BackupCore reconnecting", () => {
  it("still suspects a primary that answers no hello, however often it reconnects", () => {
    const b = new BackupCore(config);
    b.connected(0);
    b.step(headerMsg(1, 0), 0);
    const effects = [];
    for (let t = 10; t <= 400; t += 10) {
      effects.push(...b.connected(t)); // refused, redialed
      effects.push(...b.tick(t));
    }
    expect(b.state).toBe("claiming");
    expect(effects.some((e) => e.type === "claim-epoch")).toBe(true);
  });
});
