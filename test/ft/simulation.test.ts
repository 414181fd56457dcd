// The whole pair in one process from a seed — the production NodeCore on each node, a scripted
// machine thread behind it — with faults (drop, delay/reorder, duplicate, partition, kills and
// restarts, restarts that join from a checkpoint, node pauses, arbiter outages), invariants checked
// after every tick: never two live primaries, no output released before its ack, the backup's digest equals the primary's at every
// acknowledged slice, the console stream has no gap, repeat or contradiction, and acknowledged input
// is applied exactly once. Seeds come in two files (this one and simulation-more.test.ts) so that
// they run on both cores; SIM_SEEDS sets how many per file (default 1000); SIM_SEED runs one.
import { describe, expect, it } from "vitest";
import { SimCluster, simOptionsFromSeed } from "../../ft/testing/sim-cluster.js";

const single = process.env.SIM_SEED !== undefined ? Number(process.env.SIM_SEED) : undefined;
const firstSeed = Number(process.env.SIM_FIRST_SEED ?? 1);
const seeds = single !== undefined ? [single] : Array.from({ length: Number(process.env.SIM_SEEDS ?? 1000) }, (_, i) => firstSeed + i);

describe("simulated lockstep pair", () => {
  it(`holds every invariant for ${seeds.length} seeds`, () => {
    const totals = { failovers: 0, kills: 0, pauses: 0, joins: 0, checkpointsRestored: 0, partitions: 0, halts: 0, messages: 0, dropped: 0, lost: 0 };
    for (const seed of seeds) {
      const sim = new SimCluster(simOptionsFromSeed(seed));
      try {
        sim.run();
      } catch (e) {
        // the seed reproduces the failure: SIM_SEED=<seed> npx vitest run test/ft/simulation.test.ts
        console.error(`simulation failed; reproduce with SIM_SEED=${seed}`);
        throw e;
      }
      for (const k of Object.keys(totals) as Array<keyof typeof totals>) totals[k] += sim.stats[k];
    }
    console.log(`simulation: ${seeds.length} seeds`, totals);
    if (seeds.length >= 100) {
      // the faults really happened
      expect(totals.failovers).toBeGreaterThan(10);
      expect(totals.kills).toBeGreaterThan(10);
      expect(totals.partitions).toBeGreaterThan(10);
      expect(totals.pauses).toBeGreaterThan(10);
      expect(totals.joins).toBeGreaterThan(10);
      expect(totals.checkpointsRestored).toBeGreaterThan(10);
      expect(totals.dropped).toBeGreaterThan(100);
      // with one failure at a time, no VM is ever lost
      expect(totals.lost).toBe(0);
    }
  });
});
