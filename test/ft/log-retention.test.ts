// A pair that runs for weeks keeps a bounded log. Both nodes used to keep every entry since power-on
// (every byte of disk-read data with it): memory grew with everything the guest ever read, and past
// logEntriesMax the backup dropped entries while it went on heartbeating, so flow control paused
// the guest and output was held for good. Now the primary holds what its backup has not
// acknowledged, the backup what its machine has not been given, both keep the log whole from
// power-on only while it is young, and a backup that asks for a log no longer held is sent a
// checkpoint instead.
import { describe, expect, it } from "vitest";
import { BackupCore } from "../../ft/core/backup-core.js";
import { NodeCore } from "../../ft/core/node-core.js";
import { PrimaryCore, type CoreEffect, type PrimaryConfig } from "../../ft/core/primary-core.js";
import { RetainedLog, type LogRetention } from "../../ft/core/retained-log.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { PeerMessage } from "../../ft/wire/peer-messages.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const retention: LogRetention = { powerOnLogBytesMax: 1 << 20, powerOnLogEntriesMax: 1000 };
const config: PrimaryConfig = { nodeId: "A", heartbeatIntervalMs: 20, failureTimeoutMs: 150, channelTimeoutMs: 1000, unackedEntriesMax: 400, unackedBytesMax: 4 << 20, lagSlicesMax: 50, lagMsMax: 30, retention };
const sent = (effects: CoreEffect[], type: PeerMessage["type"]) => effects.flatMap((e) => (e.type === "send" && e.message.type === type ? [e.message] : []));

/** Slice s: a 4 KiB disk read (what made memory grow) and the progress entry after it. */
function slice(s: number): LogEntry[] {
  return [
    { kind: "disk-read", slice: s, icount: s * 1000, id: s, at: 0, data: new Uint8Array(4096) },
    { kind: "progress", slice: s, icount: s * 1000 },
  ];
}

describe("RetainedLog", () => {
  it("keeps a young log whole, then forgets on request; numbering and byte counts survive compaction", () => {
    const log = new RetainedLog(0, { powerOnLogBytesMax: 1 << 30, powerOnLogEntriesMax: 10 });
    for (let s = 1; s <= 5; s++) for (const e of slice(s)) log.append(e);
    expect(log.forgetBefore(6)).toBe(0); // 10 entries: still young
    log.append({ kind: "progress", slice: 6, icount: 6000 });
    expect(log.fromPowerOn).toBe(false);
    expect(log.forgetBefore(6)).toBe(6);
    expect(log.base).toBe(6);
    expect(log.slice(6, 8).map((e) => e.slice)).toEqual([4, 4]);
    expect(log.bytesBetween(6, 8)).toBe(64 + 4096 + 64);
    expect(() => log.slice(5)).toThrow(/dropped/);
    for (let s = 7; s < 20_000; s++) for (const e of slice(s)) log.append(e);
    log.forgetBefore(log.end - 3);
    expect(log.count).toBe(3);
    expect(log.bytes).toBe(64 + (64 + 4096) + 64);
    expect(log.slice(log.end - 1)[0]).toMatchObject({ kind: "progress", slice: 19_999 });
  });
});

describe("PrimaryCore log retention", () => {
  it("holds only what the backup has not acknowledged: memory stays flat over a long protected run", () => {
    const p = new PrimaryCore(config, 1, header);
    p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
    let peak = 0;
    for (let s = 1; s <= 20_000; s++) {
      for (const e of slice(s)) p.append(e);
      p.noteSlice(s);
      p.flush();
      // the backup acknowledges every 10 slices
      if (s % 10 === 0) p.step({ type: "ack", epoch: 1, have: p.logLength, complete: s, executed: s }, s / 10);
      peak = Math.max(peak, p.heldLog.bytes);
    }
    expect(p.state).toBe("protected");
    expect(p.logLength).toBe(40_000); // 80 MiB of reads logged ...
    expect(p.heldLog.fromPowerOn).toBe(false);
    expect(peak).toBeLessThan(retention.powerOnLogBytesMax + 64 * 1024); // ... about 1 MiB ever held
    expect(p.heldLog.count).toBeLessThanOrEqual(20);
  });

  it("holds nothing past the young log with no backup attached", () => {
    const p = new PrimaryCore(config, 1, header);
    for (let s = 1; s <= 5000; s++) for (const e of slice(s)) p.append(e);
    expect(p.heldLog.count).toBe(0);
    expect(p.heldLog.base).toBe(10_000);
  });

  it("sends a checkpoint to a backup that asks for the log from power-on once that is no longer held", () => {
    const p = new PrimaryCore(config, 1, header);
    for (let s = 1; s <= 600; s++) for (const e of slice(s)) p.append(e);
    const effects = p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
    expect(effects.some((e) => e.type === "checkpoint-wanted")).toBe(true);
    expect(sent(effects, "header")[0]).toMatchObject({ checkpoint: true });
    expect(sent(effects, "log")).toHaveLength(0);
    p.checkpointTaken(p.logLength);
    for (const e of slice(601)) p.append(e);
    const log = sent(p.checkpointSent(), "log");
    expect(log[0]).toMatchObject({ first: 1200 });
  });

  it("serves a young log from power-on without a checkpoint", () => {
    const p = new PrimaryCore(config, 1, header);
    for (let s = 1; s <= 100; s++) for (const e of slice(s)) p.append(e);
    const effects = p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
    expect(effects.some((e) => e.type === "checkpoint-wanted")).toBe(false);
    expect(sent(effects, "log")[0]).toMatchObject({ first: 0 });
  });

  it("goes on from what the backup acknowledged when its hello was overtaken by its later acks", () => {
    const p = new PrimaryCore(config, 1, header);
    p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
    for (let s = 1; s <= 600; s++) for (const e of slice(s)) p.append(e);
    p.flush();
    p.step({ type: "ack", epoch: 1, have: 1200, complete: 600, executed: 600 }, 1);
    for (const e of slice(601)) p.append(e);
    // an older hello (a gap it asked about before the ack) arrives now: entry 1100 is gone
    const effects = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1100 }, 2);
    expect(effects.some((e) => e.type === "checkpoint-wanted")).toBe(false);
    expect(sent(effects, "log")[0]).toMatchObject({ first: 1200 });
  });

  it("keeps the log of an earlier checkpoint while the backup may have built its machine from it", () => {
    const p = new PrimaryCore(config, 1, header);
    for (let s = 1; s <= 600; s++) for (const e of slice(s)) p.append(e);
    p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0, join: true }, 0);
    p.checkpointTaken(1200);
    p.checkpointSent();
    for (const e of slice(601)) p.append(e);
    // its retried hello crossed the checkpoint: a second one is taken, from entry 1202
    expect(p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 100).some((e) => e.type === "checkpoint-wanted")).toBe(true);
    p.checkpointTaken(1202);
    p.checkpointSent();
    for (const e of slice(602)) p.append(e);
    // it built its machine from the first one and asks for the log from there
    p.step({ type: "ack", epoch: 1, have: 1200, complete: 600, executed: 600 }, 101);
    const effects = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 1200 }, 102);
    expect(effects.some((e) => e.type === "checkpoint-wanted")).toBe(false);
    expect(sent(effects, "log")[0]).toMatchObject({ first: 1200 });
  });
});

describe("BackupCore log retention", () => {
  const backupConfig = { nodeId: "B", heartbeatIntervalMs: 20, failureTimeoutMs: 150, channelTimeoutMs: 1000, retention };

  it("forgets what it handed to the machine once the log is no longer young", () => {
    const b = new BackupCore(backupConfig);
    b.step({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: 0 }, 0);
    let first = 0;
    for (let s = 1; s <= 5000; s++) {
      const entries = slice(s);
      b.step({ type: "log", epoch: 1, first, entries }, s);
      first += entries.length;
      expect(b.takeForMachine()).toHaveLength(2);
    }
    expect(b.have).toBe(10_000);
    expect(b.log.count).toBe(0);
  });

  it("joins from a checkpoint when the primary says the log it lacks is no longer held", () => {
    const b = new BackupCore(backupConfig);
    const effects = b.step({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: Number.MAX_SAFE_INTEGER, checkpoint: true }, 0);
    expect(effects.map((e) => e.type)).toEqual(["join-from-checkpoint", "header"]);
    expect(b.join).toBe(true);
    // the log before its checkpoint is not its own
    b.step({ type: "log", epoch: 1, first: 500, entries: slice(250) }, 1);
    expect(b.have).toBe(0);
  });
});

describe("NodeCore: a backup told to join from a checkpoint", () => {
  const node = () => {
    const n = new NodeCore({ nodeId: "B", heartbeatIntervalMs: 20, failureTimeoutMs: 150, primary: { retention } });
    n.startBackup();
    return n;
  };

  it("builds its machine from the checkpoint, not from power-on", () => {
    const n = node();
    const effects = n.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: Number.MAX_SAFE_INTEGER, checkpoint: true }, 0);
    expect(effects.some((e) => e.type === "start-machine")).toBe(false);
    expect(n.role).toBe("backup");
  });

  it("halts with the reason when its machine was already built from power-on", () => {
    const n = node();
    expect(n.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: Number.MAX_SAFE_INTEGER }, 0).some((e) => e.type === "start-machine")).toBe(true);
    n.machineStarted(0);
    n.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: Number.MAX_SAFE_INTEGER, checkpoint: true }, 1);
    expect(n.role).toBe("halted");
    expect(n.haltReason).toMatch(/no longer holds the log .* start the backup again/);
  });
});
