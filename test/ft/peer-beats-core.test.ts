// Failure detection with heartbeat datagrams beside the logging channel. A TCP connection on a lossy
// link can stall for longer than the failure timeout (a retransmission lost again backs off 200 ms,
// 400 ms, ...): while the peer's datagrams still arrive, that stall is ridden out, up to the channel
// timeout; silence on both paths is still a failure after the failure timeout.
import { describe, expect, it } from "vitest";
import { BackupCore, type BackupEffect } from "../../ft/core/backup-core.js";
import { defaultLogRetention } from "../../ft/core/retained-log.js";
import { PrimaryCore, type PrimaryConfig } from "../../ft/core/primary-core.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { SimCluster } from "../../ft/testing/sim-cluster.js";
import { simOptionsWithoutFaults } from "../../ft/testing/sim-options.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const failureTimeoutMs = 150;
const channelTimeoutMs = 1000;
const primaryConfig: PrimaryConfig = { nodeId: "A", heartbeatIntervalMs: 20, failureTimeoutMs, channelTimeoutMs, unackedEntriesMax: 400, unackedBytesMax: 4 * 2 ** 20, lagSlicesMax: 50, lagMsMax: 30, retention: defaultLogRetention };
const backupConfig = { nodeId: "B", heartbeatIntervalMs: 20, failureTimeoutMs, channelTimeoutMs, retention: defaultLogRetention };
const claimed = (effects: BackupEffect[]) => effects.some((e) => e.type === "claim-epoch");

function protectedPrimary(): PrimaryCore {
  const p = new PrimaryCore(primaryConfig, 1, header);
  p.append({ kind: "progress", slice: 1, icount: 1000 });
  p.noteSlice(1);
  p.step({ type: "hello", epoch: 0, nodeId: "B", have: 0 }, 0);
  p.step({ type: "ack", epoch: 1, have: 1, complete: 1, executed: 1 }, 1);
  expect(p.state).toBe("protected");
  return p;
}

function followingBackup(): BackupCore {
  const b = new BackupCore(backupConfig);
  b.step({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: 0 }, 0);
  b.step({ type: "log", epoch: 1, first: 0, entries: [{ kind: "progress", slice: 1, icount: 1000 }] }, 1);
  expect(b.state).toBe("following");
  return b;
}

/** Ticks every 10 ms from `from` to `to`; `beat(t)` says whether the peer's datagram arrives at t. */
function run(core: { tick(t: number): BackupEffect[]; beat(nodeId: string, epoch: number, t: number): void }, peer: string, from: number, to: number, beat: (t: number) => boolean): { effects: BackupEffect[]; claimedAt?: number } {
  const effects: BackupEffect[] = [];
  for (let t = from; t <= to; t += 10) {
    if (beat(t)) core.beat(peer, 1, t);
    const e = core.tick(t);
    effects.push(...e);
    if (claimed(e)) return { effects, claimedAt: t };
  }
  return { effects };
}

describe("failure detection with heartbeat datagrams", () => {
  it("both sides send a datagram to the peer with every heartbeat", () => {
    const p = protectedPrimary();
    expect(p.tick(30)).toContainEqual({ type: "beat", epoch: 1, to: "B" });
    const b = followingBackup();
    expect(b.tick(30)).toContainEqual({ type: "beat", epoch: 1, to: "A" });
  });

  for (const side of ["primary", "backup"] as const) {
    const make = () => (side === "primary" ? { core: protectedPrimary(), peer: "B" } : { core: followingBackup(), peer: "A" });

    it(`${side}: without datagrams, channel silence past the failure timeout is a failure`, () => {
      const { core, peer } = make();
      const { claimedAt } = run(core, peer, 10, 2000, () => false);
      expect(claimedAt).toBeGreaterThan(failureTimeoutMs);
      expect(claimedAt).toBeLessThanOrEqual(failureTimeoutMs + 20);
    });

    it(`${side}: a channel stalled while datagrams arrive is ridden out, up to the channel timeout`, () => {
      const { core, peer } = make();
      const { claimedAt } = run(core, peer, 10, 3000, (t) => t % 50 === 0);
      expect(claimedAt).toBeGreaterThan(channelTimeoutMs);
      expect(claimedAt).toBeLessThanOrEqual(channelTimeoutMs + 20);
      expect(core.stalls.ridden).toBe(1);
    });

    it(`${side}: when the datagrams stop too, the failure timeout counts from the last one`, () => {
      const { core, peer } = make();
      const { claimedAt } = run(core, peer, 10, 3000, (t) => t <= 400 && t % 50 === 0);
      expect(claimedAt).toBeGreaterThan(400 + failureTimeoutMs);
      expect(claimedAt).toBeLessThanOrEqual(400 + failureTimeoutMs + 20);
    });

    it(`${side}: datagrams of another node or another epoch do not count`, () => {
      const { core } = make();
      let claimedAt: number | undefined;
      for (let t = 10; t <= 2000 && claimedAt === undefined; t += 10) {
        core.beat("C", 1, t);
        core.beat(side === "primary" ? "B" : "A", 2, t);
        if (claimed(core.tick(t))) claimedAt = t;
      }
      expect(claimedAt).toBeLessThanOrEqual(failureTimeoutMs + 20);
    });
  }

  it("a second backup's hello is refused while the first one's channel is stalled but its datagrams arrive", () => {
    const p = protectedPrimary();
    run(p, "B", 10, 600, (t) => t % 50 === 0);
    const effects = p.step({ type: "hello", epoch: 0, nodeId: "C", have: 0 }, 600);
    expect(effects).toContainEqual(expect.objectContaining({ msg: "hello from a second backup rejected while the first is alive" }));
    expect(p.state).toBe("protected");
    expect(p.backupId).toBe("B");
  });
});

describe("channel stalls in simulation", () => {
  // only channel stalls, each shorter than the channel timeout (600 ticks) but most longer than the
  // failure timeout (150): with datagrams no failover at all; without them, the same seeds fail over
  const stallsOnly = (seed: number, beats: boolean) => ({
    ...simOptionsWithoutFaults(seed),
    stallRate: 0.003,
    stallMaxTicks: 500,
    beats,
  });
  const run = (beats: boolean) => {
    const totals = { stalls: 0, failovers: 0, stallsRiddenOut: 0 };
    for (let seed = 1; seed <= 10; seed++) {
      const sim = new SimCluster(stallsOnly(seed, beats));
      sim.run();
      totals.stalls += sim.stats.stalls;
      totals.failovers += sim.stats.failovers;
      totals.stallsRiddenOut += sim.stats.stallsRiddenOut;
    }
    return totals;
  };

  it("stalls shorter than the channel timeout are ridden out when the datagrams arrive, and fail over when they do not", () => {
    const withBeats = run(true);
    expect(withBeats.stalls).toBeGreaterThan(20);
    expect(withBeats.stallsRiddenOut).toBeGreaterThan(10);
    expect(withBeats.failovers).toBe(0);
    const without = run(false);
    expect(without.failovers).toBeGreaterThan(2); // of about 70 stalls, the ones past the failure timeout with no datagram
  });
});
