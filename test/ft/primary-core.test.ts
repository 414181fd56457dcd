// PrimaryCore under the faults the simulation found it could not live through: a log frame lost or
// overtaken with nothing sent after it (the guest then waited for an ack forever), a joining
// backup asking again for a checkpoint, and the disk lease (how long a protected primary's disk
// writes may start: the backup cannot have gone live before), and log frames batched by bytes with
// backpressure (frames batched by entry count were refused by the peer: a livelock).
import { describe, expect, it } from "vitest";
import { BackupCore } from "../../ft/core/backup-core.js";
import { defaultLogRetention, RetainedLog } from "../../ft/core/retained-log.js";
import { diskLeaseMarginMs, PrimaryCore, retransmitMs, type CoreEffect, type PrimaryConfig } from "../../ft/core/primary-core.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { decodePeerMessage, encodePeerMessage, type PeerMessage } from "../../ft/wire/peer-messages.js";
import { wireFrameBytesMax } from "../../ft/wire/envelope.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const failureTimeoutMs = 150;
const config: PrimaryConfig = { nodeId: "A", heartbeatIntervalMs: 20, failureTimeoutMs, channelTimeoutMs: 1000, unackedEntriesMax: 400, unackedBytesMax: 4 * 2 ** 20, lagSlicesMax: 50, lagMsMax: 30, retention: defaultLogRetention };
const progress = (slice: number): LogEntry => ({ kind: "progress", slice, icount: slice * 1000 });
const sent = (effects: CoreEffect[], type: PeerMessage["type"]) => effects.flatMap((e) => (e.type === "send" && e.message.type === type ? [e.message] : []));

/** A primary at slice 3 whose backup B acknowledged the log: protected. */
function protectedPrimary(): PrimaryCore {
  const p = new PrimaryCore(config, 1, header);
  for (let s = 1; s <= 3; s++) p.append(progress(s));
  p.noteSlice(3);
  p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
  p.step({ type: "ack", epoch: 1, have: 3, complete: 3, executed: 3 }, 1);
  expect(p.state).toBe("protected");
  return p;
}

describe("PrimaryCore retransmission", () => {
  it("sends unacknowledged entries again once the backup's acks stood still", () => {
    const p = new PrimaryCore(config, 1, header);
    p.append(progress(1));
    p.noteSlice(1);
    // the whole log goes out with the hello's answer, and is lost (or arrives before the header)
    expect(sent(p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0), "log")).toHaveLength(1);
    const resent: Array<{ at: number; first: number }> = [];
    for (let t = 10; t <= 100; t += 10) {
      // the backup is alive and says it has nothing
      p.step({ type: "ack", epoch: 1, have: 0, complete: 0, executed: 0 }, t);
      for (const m of sent(p.tick(t), "log")) resent.push({ at: t, first: m.type === "log" ? m.first : -1 });
    }
    expect(resent.length).toBeGreaterThan(0);
    expect(resent[0]!.first).toBe(0);
    expect(resent[0]!.at).toBeGreaterThan(retransmitMs(failureTimeoutMs));
  });

  it("sends nothing again while the acks move", () => {
    const p = protectedPrimary();
    let have = 3;
    for (let t = 10; t <= 200; t += 10) {
      p.append(progress(3 + t / 10));
      expect(sent(p.flush(), "log")).toHaveLength(1);
      have++;
      p.step({ type: "ack", epoch: 1, have, complete: 3 + t / 10, executed: 3 + t / 10 }, t);
      expect(sent(p.tick(t), "log")).toHaveLength(0);
    }
  });
});

describe("PrimaryCore and a joining backup that asks again", () => {
  it("ignores the question while its checkpoint is being taken or sent, and takes a new one after", () => {
    const p = new PrimaryCore(config, 1, header, new RetainedLog(0, defaultLogRetention, false));
    p.append(progress(1));
    const first = p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0, join: true }, 0);
    expect(first.some((e) => e.type === "checkpoint-wanted")).toBe(true);
    // asked again before the checkpoint was taken: that one is on its way
    let again = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 10);
    expect(again.some((e) => e.type === "checkpoint-wanted")).toBe(false);
    expect(sent(again, "header")).toHaveLength(1);
    p.checkpointTaken(1);
    again = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 20);
    expect(again.some((e) => e.type === "checkpoint-wanted")).toBe(false);
    p.checkpointSent();
    // sent, and the backup still asks: it never got it whole
    again = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, join: true }, 30);
    expect(again.some((e) => e.type === "checkpoint-wanted")).toBe(true);
  });
});

describe("disk lease", () => {
  const lease = (echo: number) => echo + failureTimeoutMs - diskLeaseMarginMs(failureTimeoutMs);

  it("lasts from the newest heartbeat time the backup echoed, never from the future", () => {
    const p = protectedPrimary();
    expect(p.diskWritableUntilMs()).toBe(Number.NEGATIVE_INFINITY); // nothing echoed yet
    const hb = sent(p.tick(100), "heartbeat")[0]!;
    expect(hb).toMatchObject({ at: 100 });
    p.step({ type: "heartbeat", epoch: 1, nodeId: "B", echo: 100 }, 110);
    expect(p.diskWritableUntilMs()).toBe(lease(100));
    p.step({ type: "ack", epoch: 1, have: 3, complete: 3, executed: 3, echo: 90 }, 120); // older echo
    expect(p.diskWritableUntilMs()).toBe(lease(100));
    p.step({ type: "heartbeat", epoch: 1, nodeId: "B", echo: 10_000 }, 130); // no echo is newer than now
    expect(p.diskWritableUntilMs()).toBe(lease(130));
    p.step({ type: "heartbeat", epoch: 1, nodeId: "C", echo: 140 }, 140); // not its backup
    expect(p.diskWritableUntilMs()).toBe(lease(130));
  });

  it("is unbounded without a backup that could go live, and over once halted", () => {
    const p = new PrimaryCore(config, 1, header);
    expect(p.diskWritableUntilMs()).toBe(Number.POSITIVE_INFINITY);
    p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0); // joining: not eligible to take over
    expect(p.state).toBe("joining");
    expect(p.diskWritableUntilMs()).toBe(Number.POSITIVE_INFINITY);
    p.step({ type: "log", epoch: 2, first: 0, entries: [] }, 1); // a newer primary exists
    expect(p.state).toBe("halted");
    expect(p.diskWritableUntilMs()).toBe(Number.NEGATIVE_INFINITY);
  });

  it("a backup echoes the newest heartbeat time of its primary in its heartbeats and acks", () => {
    const b = new BackupCore({ nodeId: "B", heartbeatIntervalMs: 20, failureTimeoutMs, channelTimeoutMs: 1000, retention: defaultLogRetention });
    b.step({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: 0 }, 0);
    b.step({ type: "heartbeat", epoch: 1, nodeId: "A", at: 42 }, 1);
    b.step({ type: "heartbeat", epoch: 1, nodeId: "A", at: 40 }, 2); // overtaken
    const acks = b.step({ type: "log", epoch: 1, first: 0, entries: [progress(1)] }, 3);
    expect(acks).toContainEqual({ type: "send", message: expect.objectContaining({ type: "ack", echo: 42 }) });
    expect(b.tick(30)).toContainEqual({ type: "send", message: expect.objectContaining({ type: "heartbeat", echo: 42 }) });
  });
});

describe("PrimaryCore log frames", () => {
  const part = (slice: number, id: number): LogEntry => ({ kind: "disk-read", slice, icount: slice * 1000, id, at: 0, data: new Uint8Array(256 * 1024).fill(id & 0xff) });

  it("never builds a frame the peer would refuse: frames are batched by bytes", () => {
    const p = protectedPrimary();
    // 12 MiB of logged disk reads at one boundary (a join from power-on after heavy reads looks the same)
    for (let id = 1; id <= 48; id++) p.append(part(4, id));
    p.append(progress(4));
    let frames = sent(p.flush(), "log");
    let next = 3;
    let count = 0;
    for (let t = 2; frames.length > 0; t++) {
      for (const f of frames) {
        const bytes = encodePeerMessage(f);
        expect(bytes.byteLength).toBeLessThanOrEqual(wireFrameBytesMax);
        const back = decodePeerMessage(bytes);
        expect(back.type === "log" && back.first).toBe(next);
        next += back.type === "log" ? back.entries.length : 0;
        count++;
      }
      frames = sent(p.step({ type: "ack", epoch: 1, have: next, complete: 3, executed: 3 }, t), "log");
    }
    expect(next).toBe(3 + 49);
    expect(count).toBeGreaterThan(1);
  });

  it("stops sending, and pauses the guest, past unackedBytesMax; goes on as acks arrive", () => {
    const p = protectedPrimary();
    for (let id = 1; id <= 40; id++) p.append(part(4, id)); // 10 MiB, the bound is 4 MiB
    p.append(progress(4));
    p.noteSlice(4);
    const first = sent(p.flush(), "log");
    const sentThrough = (frames: PeerMessage[]) => Math.max(...frames.map((f) => (f.type === "log" ? f.first + f.entries.length : 0)));
    const through = sentThrough(first);
    expect(through).toBeLessThan(3 + 41);
    expect(sent(p.flush(), "log")).toEqual([]); // nothing more until acks
    expect(p.mayRun(4, 2)).toBe(false);
    // the backup acknowledges what it got: the rest goes out
    const rest = sent(p.step({ type: "ack", epoch: 1, have: through, complete: 3, executed: 3 }, 3), "log");
    expect(rest.length).toBeGreaterThan(0);
    expect(rest[0]!.type === "log" && rest[0]!.first).toBe(through);
    p.step({ type: "ack", epoch: 1, have: 3 + 41, complete: 4, executed: 4 }, 4);
    expect(p.mayRun(4, 5)).toBe(true);
  });
});

describe("PrimaryCore, a backup asking to join a protected pair", () => {
  const claims = (effects: CoreEffect[]) => effects.flatMap((e) => (e.type === "claim-epoch" ? [e.epoch] : []));

  it("a second backup while the first is alive is rejected; once it is silent, the next epoch is won before the newcomer is taken", () => {
    const p = protectedPrimary();
    // B acked at t=1; C says hello while B is within the failure timeout: rejected, nothing changes
    expect(sent(p.step({ type: "hello", epoch: 0, nodeId: "C", have: 0 }, 50), "header")).toEqual([]);
    expect(p.state).toBe("protected");
    // B fell silent (partitioned, and may claim epoch 2 itself): C's hello must not slide the pair
    // over to C at epoch 1 — B could go live at epoch 2 while this side releases output C acked
    const effects = p.step({ type: "hello", epoch: 0, nodeId: "C", have: 0 }, 1 + failureTimeoutMs + 1);
    expect(claims(effects)).toEqual([2]);
    expect(sent(effects, "header")).toEqual([]);
    expect(p.state).toBe("claiming");
    expect(p.backupId).toBeUndefined();
    // C's acks count for nothing meanwhile
    p.step({ type: "ack", epoch: 1, have: 3, complete: 3, executed: 3 }, 200);
    expect(p.releasableSlice()).toBe(3);
    // won: alone at epoch 2; C may now join (B, at epoch 1, can never go live: epoch 2 is taken)
    p.arbiterAnswer(2, true);
    expect(p.state).toBe("unprotected");
    expect(sent(p.step({ type: "hello", epoch: 0, nodeId: "C", have: 0 }, 300), "header")).toHaveLength(1);
    expect(p.backupId).toBe("C");
  });

  it("the protecting backup, restarted under its node id, joins again after the next epoch is won (it used to keep protection and hold output for ever)", () => {
    for (const join of [true, false]) {
      const p = protectedPrimary();
      const effects = p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0, ...(join ? { join: true } : {}) }, 5);
      expect(claims(effects)).toEqual([2]);
      expect(p.state).toBe("claiming");
      p.arbiterAnswer(2, true);
      const again = p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0, ...(join ? { join: true } : {}) }, 10);
      expect(p.state).toBe("joining");
      expect(again.some((e) => e.type === "checkpoint-wanted")).toBe(join);
      if (join) expect(p.checkpointWanted).toBe(true);
      // joining from scratch: output is not held for it, and lag control does not pause the guest
      p.append(progress(4));
      p.noteSlice(4, 11);
      expect(p.releasableSlice()).toBe(4);
      expect(p.mayRun(4, 1000)).toBe(true);
    }
  });

  it("a reconnect of the protecting backup that kept its log stays protected", () => {
    const p = protectedPrimary();
    expect(claims(p.step({ type: "hello", epoch: 1, nodeId: "B", have: 3 }, 5))).toEqual([]);
    expect(p.state).toBe("protected");
  });

  it("a hello the backup sent before anything arrived, overtaken by its acks, is not a restart: the same run stays protected (the next epoch was claimed and the pair left unprotected for good)", () => {
    const p = new PrimaryCore(config, 1, header);
    for (const s of [1, 2, 3]) p.append(progress(s));
    p.noteSlice(3, 0);
    p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0, run: "r1" }, 0);
    p.step({ type: "ack", epoch: 1, have: 3, complete: 3, executed: 3 }, 1);
    expect(p.state).toBe("protected");
    // its second hello (it saw a gap before the first frame arrived) comes in now
    const effects = p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, run: "r1" }, 2);
    expect(claims(effects)).toEqual([]);
    expect(p.state).toBe("protected");
    expect(sent(effects, "log")).toEqual([]); // it holds all 3: nothing to send again
    // the same node id in another run (a restart that kept --node-id) is a restart
    expect(claims(p.step({ type: "hello", epoch: 1, nodeId: "B", have: 0, run: "r2" }, 3))).toEqual([2]);
  });
});
