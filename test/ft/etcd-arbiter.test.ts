// The etcd arbiter against a real single-node etcd on loopback: exactly one claimant of an epoch
// wins, also when many race; a winner that asks again still wins; a claimant that did not follow
// the holder waits until the holder's lease has run out; the hold is renewed only by the
// epoch's winner and answers "newer" once a later epoch exists; a node's announcement and hold go
// with its lease; a cluster that is down answers "unreachable" in bounded time, and the next call
// after it returns succeeds (no circuit breaker in the way).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdArbiter } from "../../ft/arbiter/etcd-arbiter.js";
import { parseArbiterSpec } from "../../ft/arbiter/open-arbiter.js";
import { EtcdServer } from "../../ft/testing/etcd-server.js";
import { errorOf } from "../support/lockstep-error-of.js";

let etcd: EtcdServer;
const arbiters: EtcdArbiter[] = [];
let prefixes = 0;
const arbiter = (prefix = `t${++prefixes}`, timeoutMs = 1000) => {
  const a = new EtcdArbiter({ hosts: [etcd.endpoint], prefix, timeoutMs, leaseTtlS: 1 });
  arbiters.push(a);
  return a;
};

beforeAll(async () => {
  etcd = await EtcdServer.start();
});
afterAll(async () => {
  for (const a of arbiters) await a.close();
  await etcd?.stop();
});

describe("EtcdArbiter", () => {
  it("one winner among 20 racing claimants, on 20 clients", async () => {
    const prefix = `race${++prefixes}`;
    const clients = Array.from({ length: 20 }, () => arbiter(prefix));
    const answers = await Promise.all(clients.map((a, i) => a.claim(1, `node-${i}`)));
    expect(answers.filter((x) => x === true)).toHaveLength(1);
    expect(answers.filter((x) => x === false)).toHaveLength(19);
    expect(await clients[0]!.current()).toBe(1);
    expect(await clients[0]!.holder()).toBe(`node-${answers.indexOf(true)}`);
  });

  it("a winner that asks again still wins; an epoch already passed is lost", async () => {
    const a = arbiter();
    expect(await a.claim(1, "A")).toBe(true);
    expect(await a.claim(1, "A")).toBe(true);
    expect(await a.claim(1, "B")).toBe(false);
    expect(await a.claim(2, "B", "A")).toBe(true); // B followed A as its backup
    expect(await a.claim(2, "A")).toBe(false);
    expect(await a.claim(1, "C")).toBe(false);
    expect(await a.current()).toBe(2);
  });

  it("a claimant that did not follow the holder gets no answer until the holder's lease ran out", async () => {
    const prefix = `wait${++prefixes}`;
    const a = arbiter(prefix);
    const c = arbiter(prefix);
    expect(await a.claim(1, "A")).toBe(true);
    expect(await c.claim(2, "C")).toBeUndefined(); // A holds epoch 1 and renews its lease
    expect(await c.claim(2, "C", "X")).toBeUndefined(); // following someone else is no excuse
    a.client.close(); // A dies: nothing renews its lease any more (1 s)
    const t0 = performance.now();
    await expect.poll(() => c.claim(2, "C"), { timeout: 5000, interval: 100 }).toBe(true);
    expect(performance.now() - t0).toBeGreaterThan(300);
    expect(await c.holder()).toBe("C");
  });

  it("both nodes of a prefix see one identity; another prefix has another", async () => {
    const prefix = `id${++prefixes}`;
    const [x, y] = await Promise.all([arbiter(prefix).identity(), arbiter(prefix).identity()]);
    expect(x).toMatch(/^etcd:[0-9a-f-]{36}$/);
    expect(y).toBe(x);
    expect(await arbiter().identity()).not.toBe(x);
  });

  it("the hold: only the epoch's winner renews it, and a newer epoch is reported", async () => {
    const prefix = `hold${++prefixes}`;
    const a = arbiter(prefix);
    const b = arbiter(prefix);
    expect(await a.claim(1, "A")).toBe(true);
    expect(await a.hold("A", 1)).toEqual({ type: "held", leaseMs: 1000 });
    expect(await b.hold("B", 1)).toBeUndefined(); // B never won epoch 1
    expect(await b.claim(2, "B", "A")).toBe(true);
    expect(await a.hold("A", 1)).toEqual({ type: "newer", epoch: 2 });
    expect(await a.holder()).toBe("B");
  });

  it("a node's announcement and hold go with it: closing revokes its lease, an expired one is re-granted", async () => {
    const prefix = `lease${++prefixes}`;
    const a = arbiter(prefix);
    const watcher = arbiter(prefix);
    expect(await a.claim(1, "A")).toBe(true);
    await a.announce("A", "ws://127.0.0.1:1");
    expect(await watcher.announced()).toEqual([{ nodeId: "A", url: "ws://127.0.0.1:1" }]);
    await a.close();
    expect(await watcher.announced()).toEqual([]);
    expect(await watcher.holder()).toBeNull();
    expect(await watcher.current()).toBe(1); // the epoch itself is never leased
    // a node whose lease expired at etcd (cut off longer than the TTL) holds again once it is back
    const c = arbiter(prefix);
    expect(await c.claim(2, "C", "A")).toBe(true);
    await c.client.leaseClient.leaseRevoke({ ID: await c.leaseFor() });
    expect(await watcher.holder()).toBeNull();
    expect(await c.hold("C", 2)).toEqual({ type: "held", leaseMs: 1000 });
    expect(await watcher.holder()).toBe("C");
  });

  it("a cluster that is down is unreachable in bounded time; the first call after it is back succeeds", async () => {
    const server = await EtcdServer.start();
    const [host, port] = server.endpoint.split(":");
    const a = new EtcdArbiter({ hosts: [server.endpoint], prefix: "down", timeoutMs: 300, leaseTtlS: 1 });
    arbiters.push(a);
    expect(await a.claim(1, "A")).toBe(true);
    await server.stop();
    const t0 = performance.now();
    expect(await a.claim(2, "A")).toBeUndefined();
    expect(await a.hold("A", 1)).toBeUndefined();
    expect(await a.current()).toBeUndefined();
    expect(performance.now() - t0).toBeLessThan(3000);
    const again = await EtcdServer.start({ host, clientPort: Number(port) });
    try {
      await expect.poll(() => a.current(), { timeout: 5000, interval: 50 }).toBe(0); // a fresh cluster
      expect(await a.claim(1, "A")).toBe(true);
    } finally {
      await again.stop();
    }
  });
});

describe("--arbiter", () => {
  it("parses file: and etcd:// and refuses anything else with a stable code", () => {
    expect(parseArbiterSpec("file:/tmp/x")).toEqual({ kind: "file", dir: "/tmp/x" });
    expect(parseArbiterSpec("etcd://10.0.0.1:2379,10.0.0.2/vm1")).toEqual({ kind: "etcd", hosts: ["10.0.0.1:2379", "10.0.0.2:2379"], prefix: "vm1" });
    expect(parseArbiterSpec("etcd://h")).toEqual({ kind: "etcd", hosts: ["h:2379"], prefix: "lockstep" });
    for (const bad of ["", "etcd://", "etcd:///x", "zk://h/x", "etcd://h:99999/x", "etcd://h/a b", "file:"]) {
      expect(errorOf(() => parseArbiterSpec(bad)).code, bad).toBe("LOCKSTEP_ERR_ARBITER");
    }
  });
});
