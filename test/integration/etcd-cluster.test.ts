// The etcd arbiter against a real three-member etcd cluster on loopback, opened from an
// `etcd://A,B,C/PREFIX` spec: exactly one of two racing claimants of an epoch wins, and every member
// answers the same epoch and holder; with the leader killed (listed first), holds are renewed, a
// holder keeps its hold past its lease's TTL, and the next epoch is claimed, each call well within
// its 2 s bound; with two of three killed (no quorum) claims, holds and reads answer "unreachable"
// (undefined) within the bound and nothing throws; once a member is back the claim succeeds.
// The tests run in order on one cluster.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdArbiter } from "../../ft/arbiter/etcd-arbiter.js";
import { openArbiter, parseArbiterSpec } from "../../ft/arbiter/open-arbiter.js";
import { EtcdCluster } from "../../ft/testing/etcd-server.js";

const boundMs = 2000; // an arbiter's call bound (the default of an arbiter opened from a spec)
let cluster: EtcdCluster;
let order: string[]; // the endpoints as the spec lists them
const arbiters: EtcdArbiter[] = [];
const uncaught: unknown[] = [];
const onUncaught = (e: unknown) => uncaught.push(e);

/** An arbiter (its own client) as a node opens it from `--arbiter etcd://A,B,C/PREFIX`. */
function open(prefix: string, hosts = order): EtcdArbiter {
  const spec = parseArbiterSpec(`etcd://${hosts.join(",")}/${prefix}`);
  expect(spec).toEqual({ kind: "etcd", hosts, prefix });
  const a = openArbiter(spec);
  if (!(a instanceof EtcdArbiter)) throw new Error("not an etcd arbiter");
  arbiters.push(a);
  return a;
}

async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: Math.round(performance.now() - t0) };
}

beforeAll(async () => {
  process.on("unhandledRejection", onUncaught);
  process.on("uncaughtException", onUncaught);
  cluster = await EtcdCluster.start(3);
  order = cluster.endpoints;
});
afterAll(async () => {
  await Promise.all(arbiters.map((a) => a.close()));
  await cluster?.stop();
  process.off("unhandledRejection", onUncaught);
  process.off("uncaughtException", onUncaught);
});

describe("the etcd arbiter on a three-member cluster", () => {
  const killed: number[] = [];
  const prefixes = Array.from({ length: 10 }, (_, i) => `held${i}`);
  const holders: EtcdArbiter[] = [];

  it("claims work; of two racing claimants of an epoch exactly one wins; every member agrees", async () => {
    await expect.poll(() => cluster.leader(), { timeout: 5000, interval: 50 }).toBeDefined();
    const leader = await cluster.leader();
    // the leader listed first: the member killed next is both the leader and the first listed
    order = [cluster.endpoints[leader!]!, ...cluster.endpoints.filter((_, i) => i !== leader)];
    let holder: string | undefined;
    for (let epoch = 1; epoch <= 5; epoch++) {
      const [x, y] = [open("race"), open("race")];
      const answers = await Promise.all([x.claim(epoch, `X${epoch}`, holder), y.claim(epoch, `Y${epoch}`, holder)]);
      expect(answers.slice().sort()).toEqual([false, true]);
      holder = answers[0] ? `X${epoch}` : `Y${epoch}`;
      expect(await x.current()).toBe(epoch);
      expect(await y.holder()).toBe(holder);
    }
    // each member alone (an arbiter naming only it) sees the same: the claims went through the cluster
    for (const endpoint of cluster.endpoints) {
      const one = open("race", [endpoint]);
      expect(await one.current()).toBe(5);
      expect(await one.holder()).toBe(holder);
      expect(await one.claim(5, holder!)).toBe(true); // the winner asking again still wins
      expect(await one.claim(5, "Z")).toBe(false);
    }
    // nodes that will hold across the leader's death
    for (const prefix of prefixes) {
      const a = open(prefix);
      expect(await a.claim(1, "A")).toBe(true);
      expect(await a.hold("A", 1)).toEqual({ type: "held", leaseMs: 2000 });
      holders.push(a);
    }
    expect(uncaught).toEqual([]);
  });

  it("the leader, listed first, killed: holds are renewed, kept past the TTL, and the next epoch is claimed, within the bound", async () => {
    const first = cluster.endpoints.indexOf(order[0]!);
    console.log(`killing member ${first} (listed first; the leader now: ${await cluster.leader()})`);
    await cluster.members[first]!.stop(); // SIGKILL
    killed.push(first);
    // each holder's first call since: renewing its hold
    const holds = [];
    for (const a of holders) holds.push(await timed(() => a.hold("A", 1)));
    console.log(`leader killed: hold renewals took ${holds.map((h) => h.ms).join(", ")} ms`);
    for (const h of holds) {
      expect(h.value).toEqual({ type: "held", leaseMs: 2000 });
      expect(h.ms).toBeLessThan(boundMs);
    }
    await expect.poll(() => cluster.leader(), { timeout: 5000, interval: 50 }).toBeDefined();
    expect(await cluster.leader()).not.toBe(first);
    // past the lease's TTL (2 s) the holders hold still: their leases were renewed through the others
    await new Promise((r) => setTimeout(r, 2500));
    for (const a of holders) expect(await a.holder()).toBe("A");
    // each holder's backup (its own client, first call since the kill) claims the next epoch
    const claims = [];
    const holds2 = [];
    for (const prefix of prefixes) {
      const b = open(prefix);
      claims.push(await timed(() => b.claim(2, "B", "A")));
      holds2.push(await timed(() => b.hold("B", 2)));
    }
    console.log(`leader killed: claims of the next epoch took ${claims.map((c) => c.ms).join(", ")} ms; the new holders' holds ${holds2.map((h) => h.ms).join(", ")} ms`);
    for (const c of claims) {
      expect(c.value).toBe(true);
      expect(c.ms).toBeLessThan(boundMs);
    }
    for (const h of holds2) {
      expect(h.value).toEqual({ type: "held", leaseMs: 2000 });
      expect(h.ms).toBeLessThan(boundMs);
    }
    for (const a of holders) expect(await a.hold("A", 1)).toEqual({ type: "newer", epoch: 2 });
    expect(await holders[0]!.holder()).toBe("B");
    expect(uncaught).toEqual([]);
  });

  it("two of three killed (no quorum): unreachable within the bound, nothing thrown; a member back: the claim succeeds", async () => {
    const second = cluster.members.findIndex((m, i) => m.running && !killed.includes(i));
    await cluster.members[second]!.stop();
    killed.push(second);
    const b = open(prefixes[0]!);
    const c = open(prefixes[0]!);
    const { value, ms } = await timed(() => Promise.all([c.claim(3, "C", "B"), b.hold("B", 2), c.current(), c.holder(), c.identity()]));
    console.log(`no quorum: claim, hold, current, holder, identity answered ${JSON.stringify(value)} in ${ms} ms`);
    expect(value).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(ms).toBeLessThan(boundMs + 500);
    const again = await timed(() => c.claim(3, "C", "B"));
    console.log(`no quorum: a second claim answered ${again.value} in ${again.ms} ms`);
    expect(again.value).toBeUndefined();
    expect(again.ms).toBeLessThan(boundMs + 500);
    // the member killed last starts again (its data kept): a quorum of two
    await cluster.members[second]!.start();
    const t0 = performance.now();
    await expect.poll(() => c.claim(3, "C", "B"), { timeout: 10_000, interval: 100 }).toBe(true);
    console.log(`a member back: the claim succeeded ${Math.round(performance.now() - t0)} ms after it answered healthy`);
    expect(await c.hold("C", 3)).toEqual({ type: "held", leaseMs: 2000 });
    // a client that failed on every member lately skips each for a second (its circuit breakers)
    const t1 = performance.now();
    await expect.poll(() => holders[0]!.current(), { timeout: 5000, interval: 100 }).toBe(3);
    console.log(`a member back: an old client answered again ${Math.round(performance.now() - t1)} ms later`);
    expect(await open(prefixes[0]!, [cluster.endpoints[second]!]).holder()).toBe("C");
    expect(uncaught).toEqual([]);
  });
});
