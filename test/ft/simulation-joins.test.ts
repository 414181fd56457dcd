// Joins end: a pair whose backups replay no faster than the guest runs (one slice a tick each, as an
// idle guest costs the replay about what it costs the primary), killed now and then, protects every
// backup that comes back. Before, a backup replaying from power-on was never held to and could stay
// "joining" for ever, and a hello it sent before its first frame arrived, overtaken by its acks, was
// taken for a restart: the primary claimed the next epoch and went on unprotected for good.
import { describe, expect, it } from "vitest";
import { SimCluster } from "../../ft/testing/sim-cluster.js";
import { simOptionsWithoutFaults } from "../../ft/testing/sim-options.js";

describe("joins of backups no faster than the guest", () => {
  it("every backup that comes back is protected again, from power-on and from a checkpoint", () => {
    const totals = { kills: 0, protections: 0, joinTicksMax: 0, runs: 0 };
    for (const joinRate of [0, 1]) {
      for (let seed = 1; seed <= 12; seed++) {
        const sim = new SimCluster({
          ...simOptionsWithoutFaults(seed, 2000),
          killRate: 0.002,
          joinRate,
          backupSlicesPerTick: 1,
        });
        sim.run();
        const s = sim.stats;
        // the first backup and one after each kill, each protected in its turn
        expect(s.protections, `seed ${seed} joinRate ${joinRate}: ${s.kills} kills`).toBe(s.kills + 1);
        totals.kills += s.kills;
        totals.protections += s.protections;
        totals.joinTicksMax = Math.max(totals.joinTicksMax, s.joinTicksMax);
        totals.runs++;
      }
    }
    expect(totals.kills).toBeGreaterThan(10);
    console.log(`joins: ${totals.runs} runs, ${totals.kills} kills, ${totals.protections} protections; the longest join took ${totals.joinTicksMax} ticks`);
  });
});
