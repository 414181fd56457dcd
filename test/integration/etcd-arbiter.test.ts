// A pair whose arbiter is etcd (no shared directory between the nodes: each has its own), with real
// processes and a real single-node etcd on loopback: the backup takes over when the primary is
// killed, winning the next epoch in etcd; a backup naming another prefix is refused at hello; a
// primary that cannot renew its hold (etcd frozen) releases nothing until it can, and goes on after;
// a primary that learns of a newer epoch at the arbiter halts.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { EtcdArbiter } from "../../ft/arbiter/etcd-arbiter.js";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { NodeProcess, type NodeRole } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { EtcdServer } from "../../ft/testing/etcd-server.js";

const token = "etcd-arbiter-test-token";
let etcd: EtcdServer;
const nodes: NodeProcess[] = [];
const dirs: string[] = [];
let pairs = 0;

beforeAll(async () => {
  etcd = await EtcdServer.start();
});
afterEach(async () => {
  etcd.resume();
  for (const n of nodes.splice(0)) n.kill("SIGKILL");
});
afterAll(async () => {
  await etcd?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A node with its own directory (its disk, never another node's) and the pair's etcd prefix. */
async function start(name: string, role: NodeRole, prefix: string, args: string[]): Promise<NodeProcess> {
  const dir = mkdtempSync(join(tmpdir(), `lockstep-etcd-${name}-`));
  dirs.push(dir);
  const node = await NodeProcess.start({ role, name, sharedDir: dir, token, args: ["--arbiter", `etcd://${etcd.endpoint}/${prefix}`, ...args] });
  nodes.push(node);
  return node;
}

function console(url: string[]): { client: ConsoleClient; out: () => string } {
  const client = new ConsoleClient({ urls: url, token });
  let out = "";
  client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
  client.start();
  return { client, out: () => out };
}

describe("a pair with the etcd arbiter", () => {
  it("takeover: the backup wins epoch 2 in etcd and holds it; the console goes on", async () => {
    const prefix = `pair${++pairs}`;
    const a = await start("A", "primary", prefix, ["--image", "tiny"]);
    const b = await start("B", "backup", prefix, ["--connect", a.url]);
    await until(async () => (await a.status()).protected === true, 30_000, "B to protect A");
    expect((await a.status()).arbiterHeld).toBe(true);
    const c = console([a.url, b.url]);
    try {
      await until(() => c.out().includes("tiny> "), 10_000, "the prompt");
      a.kill("SIGKILL");
      expect((await b.waitEvent("live", 15_000)).epoch).toBe(2);
      const arbiter = new EtcdArbiter({ hosts: [etcd.endpoint], prefix });
      try {
        expect(await arbiter.current()).toBe(2);
        await until(async () => (await arbiter.holder()) === "B", 5000, "B to hold epoch 2");
      } finally {
        await arbiter.close();
      }
      await until(async () => (await b.status()).arbiterHeld === true, 5000, "B's hold");
      c.client.send(Buffer.from("ping\r"));
      await until(() => c.out().includes("pong"), 10_000, () => `pong after the takeover: ${JSON.stringify(c.out().slice(-200))}`);
    } finally {
      c.client.close();
    }
  }, 90_000);

  it("a backup naming another prefix is refused at hello and halts", async () => {
    const a = await start("A", "primary", `pair${++pairs}`, ["--image", "tiny"]);
    const b = await start("B", "backup", `pair${++pairs}`, ["--connect", a.url]);
    expect(String((await b.waitEvent("halted", 30_000)).reason)).toMatch(/another arbiter .*same --arbiter/);
    expect((await a.status()).backup).toBeNull();
  }, 60_000);

  it("etcd frozen: the primary's hold runs out and nothing is released until it is renewed", async () => {
    const a = await start("A", "primary", `pair${++pairs}`, ["--image", "tiny"]);
    const c = console([a.url]);
    try {
      await until(() => c.out().includes("tiny> "), 10_000, "the prompt");
      await until(async () => (await a.status()).arbiterHeld === true, 5000, "A's hold");
      etcd.pause();
      await until(async () => (await a.status()).arbiterHeld === false, 10_000, "A's hold to run out");
      const metrics = await (await fetch(`http://127.0.0.1:${a.port}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      expect(metrics).toMatch(/^lockstep_arbiter_held 0$/m);
      const released = (await a.status()).releasedBytes;
      c.client.send(Buffer.from("ping\r"));
      await new Promise((r) => setTimeout(r, 1500));
      expect(c.out()).not.toContain("pong");
      expect((await a.status()).releasedBytes).toBe(released);
      etcd.resume();
      await until(() => c.out().includes("pong"), 15_000, () => `pong once etcd is back: ${JSON.stringify(c.out().slice(-200))}`);
      expect((await a.status()).role).toBe("primary");
    } finally {
      c.client.close();
    }
  }, 60_000);

  it("a primary that finds a newer epoch at the arbiter halts", async () => {
    const prefix = `pair${++pairs}`;
    const a = await start("A", "primary", prefix, ["--image", "tiny"]);
    await until(async () => (await a.status()).arbiterHeld === true, 10_000, "A's hold");
    const intruder = new EtcdArbiter({ hosts: [etcd.endpoint], prefix });
    try {
      expect(await intruder.claim(2, "X", "A")).toBe(true); // as a backup of A that took over while A could not see it
    } finally {
      await intruder.close();
    }
    expect(String((await a.waitEvent("halted", 10_000)).reason)).toMatch(/epoch 2 exists at the arbiter/);
  }, 60_000);

  it("no arbiter and no shared directory, or an etcd that does not answer: clear errors", async () => {
    const { runCli } = await import("../support/cli.js");
    const none = runCli(["primary", "--listen", "127.0.0.1:0", "--token", token, "--peer-token", `${token}-peer`, "--image", "tiny"], { timeoutMs: 30_000 });
    expect(none.stderr).toMatch(/LOCKSTEP_ERR_USAGE: lockstep primary needs an arbiter/);
    const noDisk = runCli(["primary", "--arbiter", `etcd://${etcd.endpoint}/x`, "--listen", "127.0.0.1:0", "--token", token, "--peer-token", `${token}-peer`], { timeoutMs: 30_000 });
    expect(noDisk.stderr).toMatch(/LOCKSTEP_ERR_USAGE: lockstep primary needs a disk both hosts reach/);
    const dir = mkdtempSync(join(tmpdir(), "lockstep-etcd-down-"));
    dirs.push(dir);
    const down = runCli(["primary", "--arbiter", "etcd://127.0.0.1:1/x", "--shared-dir", dir, "--listen", "127.0.0.1:0", "--token", token, "--peer-token", `${token}-peer`, "--image", "tiny"], { timeoutMs: 30_000 });
    expect(down.status).toBe(2);
    expect(down.stderr).toMatch(/LOCKSTEP_ERR_ARBITER: The arbiter cannot be reached/);
    const bad = runCli(["backup", "--arbiter", "zk://h/x", "--connect", "ws://127.0.0.1:1", "--listen", "127.0.0.1:0", "--token", token, "--peer-token", `${token}-peer`], { timeoutMs: 30_000 });
    expect(bad.stderr).toMatch(/LOCKSTEP_ERR_ARBITER: --arbiter "zk:\/\/h\/x"/);
  }, 120_000);
});
