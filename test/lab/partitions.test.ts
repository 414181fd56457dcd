// Partitions between hosts that share only a network (NetLab namespaces: a and b run the nodes, s
// runs nbdkit and etcd), with a linux guest writing numbered records to the NBD disk with `sync`
// after each and reporting each durable one on the console. One pair goes through every kind of
// partition in turn, at seeded moments and for seeded lengths: the nodes cut from each other (both
// ways, and each one way), the primary cut from everything, the backup cut from everything, and the
// storage-and-arbiter host cut from both. After each: the side that can reach the arbiter and the
// disk goes on (or, with the arbiter gone, the pair waits and goes on after), the other halts once
// the partition heals, and a new backup on its host joins the survivor.
//
// Checked throughout: no epoch in which two nodes released console output (from every node's
// /status every 50 ms) or wrote the disk (from the nodes' write journal), and no release or write
// of an older epoch after a newer epoch's first one; never two nodes primary at the same epoch;
// while the arbiter host is cut off, once the primary's hold has run out, no output and no writes; the console stream contiguous, every record reported once and in order; at the
// end e2fsck finds the disk clean and every record reported durable is on it.
// PARTITION_RUNS=n repeats the whole sequence (default 1; `npm run soak:partitions` runs 10).
import { afterEach, describe, expect, it } from "vitest";
import type { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { SeededRandom } from "../../ft/testing/seeded-random.js";
import { LabPair } from "../../ft/testing/lab-pair.js";

const runs = Number(process.env.PARTITION_RUNS ?? 1);
const seed0 = process.env.LOCKSTEP_TEST_SEED !== undefined ? Number(process.env.LOCKSTEP_TEST_SEED) : Math.floor(Math.random() * 2 ** 31);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Kind = "nodes cut" | "primary -> backup cut" | "backup -> primary cut" | "primary isolated" | "backup isolated" | "arbiter and disk isolated";
const kinds: Kind[] = ["nodes cut", "primary isolated", "arbiter and disk isolated", "backup isolated", "primary -> backup cut", "backup -> primary cut"];

let pair: LabPair | undefined;
afterEach(async () => {
  await pair?.stop();
  pair = undefined;
});

const summary = { runs: 0, partitions: 0, doubleLive: 0, epochsWithOutput: 0, epochsWithWrites: 0, survivors: {} as Record<string, number> };

async function run(seed: number): Promise<void> {
  const random = new SeededRandom(seed);
  const p = (pair = new LabPair());
  await p.startStorage();
  let primary: NodeProcess = await p.start("A0", "primary", "a", ["--image", "linux", "--disk", p.nbd]);
  let backup: NodeProcess = await p.start("B0", "backup", "b", ["--connect", primary.url]);
  const hostOf = new Map<NodeProcess, string>([
    [primary, "a"],
    [backup, "b"],
  ]);
  p.startPolling();
  const protectedBy = (pr: NodeProcess, b: NodeProcess) =>
    until(async () => (await pr.status()).protected === true, 90_000, () => `${b.name} to protect ${pr.name}: ${b.stderr.slice(-1500)}`);
  await p.startWriter();
  await protectedBy(primary, backup);
  let generation = 0;
  for (const kind of kinds) {
    await p.recordsAfter(3, `before "${kind}"`);
    await sleep(random.int(0, 1500));
    const epoch = Number((await primary.status()).epoch);
    const [hp, hb] = [hostOf.get(primary)!, hostOf.get(backup)!];
    const cutAtMs = Date.now();
    if (kind === "nodes cut") p.lab.cut(hp, hb);
    else if (kind === "primary -> backup cut") p.lab.cut(hp, hb, { oneWay: true });
    else if (kind === "backup -> primary cut") p.lab.cut(hb, hp, { oneWay: true });
    else if (kind === "primary isolated") p.lab.isolate(hp);
    else if (kind === "backup isolated") p.lab.isolate(hb);
    else p.lab.isolate("s");
    // (cut off from the arbiter, a pair must wait: long enough to see it wait once its hold ran out)
    const lengthMs = kind === "arbiter and disk isolated" ? random.int(3500, 5000) : random.int(1500, 4000);
    await sleep(lengthMs);
    const healAtMs = Date.now();
    p.lab.heal();
    summary.partitions++;
    const why = () => `after "${kind}" (${lengthMs} ms, seed ${seed}): ${primary.name}: ${primary.stderr.slice(-1200)}\n${backup.name}: ${backup.stderr.slice(-1200)}`;
    if (kind === "arbiter and disk isolated") {
      // nobody could win an epoch: the pair waited and goes on as it was. From a little after its
      // hold ran out (at most 1.8 s after the cut, plus a poll) until the heal nothing left it.
      expect(p.actsBetween(cutAtMs + 2500, healAtMs), why()).toEqual([]);
      await p.recordsAfter(3, `the pair going on after "${kind}"`);
      const s = await primary.status();
      expect([s.role, s.epoch], why()).toEqual(["primary", epoch]);
      expect((await backup.status()).role, why()).toBe("backup");
      summary.survivors[kind] = (summary.survivors[kind] ?? 0) + 1;
      continue;
    }
    // exactly one goes on at a newer epoch; the other halts once it learns of it
    await until(() => !primary.running || !backup.running, 30_000, () => `one node to halt ${why()}`);
    const [survivor, loser] = primary.running ? [primary, backup] : [backup, primary];
    expect(loser.events.some((e) => e.event === "halted"), why()).toBe(true);
    const s = await survivor.status();
    expect(s.role, why()).toBe("primary");
    expect(Number(s.epoch), why()).toBeGreaterThan(epoch);
    if (kind === "primary isolated") expect(survivor, why()).toBe(backup);
    if (kind === "backup isolated") expect(survivor, why()).toBe(primary);
    summary.survivors[`${kind}: ${survivor === primary ? "primary" : "backup"} went on`] = (summary.survivors[`${kind}: ${survivor === primary ? "primary" : "backup"} went on`] ?? 0) + 1;
    await p.recordsAfter(3, `the survivor going on after "${kind}"`);
    // a new backup on the loser's host joins the survivor
    const host = hostOf.get(loser)!;
    const fresh = await p.start(`${host.toUpperCase()}${++generation}`, "backup", host, ["--connect", survivor.url, "--join"]);
    hostOf.set(fresh, host);
    primary = survivor;
    backup = fresh;
    await protectedBy(primary, backup);
  }
  await p.recordsAfter(3, "the end");
  const epochs = Number((await primary.status()).epoch);
  const { fsck, records } = await p.finishDisk();
  const doubleLive = p.doubleLive();
  summary.doubleLive += doubleLive.length;
  summary.runs++;
  expect(doubleLive).toEqual([]);
  // the checks saw something to check: output released and disk writes in every epoch that had a live primary
  summary.epochsWithOutput += p.releasers.size;
  summary.epochsWithWrites += p.writers().size;
  expect(p.releasers.size, "epochs in which output was seen released").toBeGreaterThanOrEqual(kinds.length);
  expect(p.writers().size, "epochs in which the journal recorded writes").toBeGreaterThanOrEqual(kinds.length);
  expect(Math.max(...p.writers().keys())).toBe(epochs);
  expect(p.gaps).toEqual([]);
  expect(p.contradictions).toEqual([]);
  const seen = p.durable();
  seen.forEach((n, i) => expect(n, `durable line ${i}`).toBe(i + 1));
  expect(fsck.status, fsck.output).toBe(0);
  expect(records.length).toBeGreaterThanOrEqual(seen.length);
  records.forEach((r, i) => expect(r, `record line ${i}`).toBe(`rec${i + 1}`));
}

describe("partitions between hosts (network namespaces, etcd, NBD)", () => {
  it(`${runs} run(s) of ${kinds.length} partitions: never two live, the side with the arbiter and disk goes on`, async () => {
    for (let r = 0; r < runs; r++) {
      console.log(`partition run ${r + 1}/${runs}, seed ${seed0 + r} (LOCKSTEP_TEST_SEED=${seed0 + r} repeats it)`);
      await run(seed0 + r);
      await pair!.stop();
      pair = undefined;
    }
    console.log(`partitions: ${JSON.stringify(summary)}`);
  }, 600_000 * runs);
});
