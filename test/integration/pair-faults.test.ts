// Real processes: killing the backup leaves the primary going, reported unprotected; cutting the
// channel while both reach the arbiter lets exactly one go on; with the arbiter unreachable nobody
// goes live until it returns; garbage, oversized, wrong-version, wrong-token and old-epoch input on
// the channel and the console is rejected without harming the running pair.
import { renameSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { packr } from "../../ft/wire/envelope.js";
import { encodePeerMessage } from "../../ft/wire/peer-messages.js";
import { CuttableProxy, TestCluster, token } from "../support/cluster.js";

let cluster: TestCluster;
afterEach(() => cluster?.stop());

async function protectedPair(viaProxy = false): Promise<{ a: NodeProcess; b: NodeProcess; proxy?: CuttableProxy }> {
  cluster = new TestCluster();
  const a = await cluster.start("A", "primary", ["--image", "tiny"]);
  let proxy: CuttableProxy | undefined;
  let target = a.url;
  if (viaProxy) {
    proxy = new CuttableProxy(a.port);
    target = `ws://127.0.0.1:${await proxy.listen()}`;
  }
  const b = await cluster.start("B", "backup", ["--connect", target]);
  await until(async () => (await a.status()).protected === true, 15_000, "the pair to be protected");
  return { a, b, ...(proxy ? { proxy } : {}) };
}

describe("pair faults with real processes", () => {
  it("killing the backup: the primary goes on, reported unprotected", async () => {
    const { a, b } = await protectedPair();
    b.kill("SIGKILL");
    await until(
      async () => {
        const s = await a.status();
        return s.role === "primary" && s.protected === false && s.epoch === 2;
      },
      15_000,
      "the primary to report unprotected",
    );
    const s1 = (await a.status()).slice as number;
    await new Promise((r) => setTimeout(r, 300));
    expect((await a.status()).slice as number).toBeGreaterThan(s1);
  });

  it("cutting the channel while both reach the arbiter: exactly one goes on", async () => {
    const { a, b, proxy } = await protectedPair(true);
    proxy!.cut();
    await until(() => a.exitCode !== undefined || b.exitCode !== undefined, 10_000, "one side to halt");
    await new Promise((r) => setTimeout(r, 1000));
    const alive = [a, b].filter((n) => n.exitCode === undefined);
    expect(alive).toHaveLength(1);
    const halted = [a, b].find((n) => n.exitCode !== undefined)!;
    expect(halted.exitCode).toBe(3);
    expect(halted.events.some((e) => e.event === "halted")).toBe(true);
    const s = await alive[0]!.status();
    expect(s).toMatchObject({ role: "primary", epoch: 2, protected: false });
    proxy!.close();
  });

  it("arbiter unreachable: nobody goes live until it returns", async () => {
    const { a, b } = await protectedPair();
    const away = `${cluster.dir}.away`;
    renameSync(cluster.dir, away);
    a.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 1500));
    expect((await b.status()).role).toBe("backup");
    expect((await b.status()).state).toBe("claiming");
    renameSync(away, cluster.dir);
    await b.waitEvent("live", 5000);
    expect(await b.status()).toMatchObject({ role: "primary", epoch: 2 });
  });

  it("bad input on the channel and the console is rejected; the pair stays protected", async () => {
    const { a, b } = await protectedPair();
    const open = (path: string, tok = path === "/peer" ? `${token}-peer` : token, inUrl = false) =>
      new Promise<WebSocket | number>((resolve) => {
        const ws = inUrl ? new WebSocket(`${a.url}${path}?token=${tok}`) : new WebSocket(`${a.url}${path}`, { headers: { authorization: `Bearer ${tok}` } });
        ws.on("open", () => resolve(ws));
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("error", () => {});
      });
    expect(await open("/peer", "wrong-token-xyz")).toBe(401);
    expect(await open("/console", "wrong-token-xyz")).toBe(401);
    // the console credential does not open the logging channel (a console user posing as the backup)
    expect(await open("/peer", token)).toBe(401);
    // a credential in the URL is refused (URLs end up in logs)
    expect(await open("/console", token, true)).toBe(401);
    const closed = (ws: WebSocket) => new Promise<number>((resolve) => ws.on("close", (code) => resolve(code)));
    const frames: Uint8Array[] = [
      new Uint8Array([0xc1, 0xff, 0x00]), // not msgpack
      packr.pack({ v: 99, type: "hello", epoch: 0, nodeId: "x", have: 0 }), // wrong version
      packr.pack({ v: 1, type: "ack", epoch: "one" }), // malformed
      new Uint8Array(9 * 2 ** 20), // oversized
    ];
    for (const f of frames) {
      const ws = (await open("/peer")) as WebSocket;
      const done = closed(ws);
      ws.send(f);
      expect(await done).toBeGreaterThanOrEqual(1008);
    }
    // a replayed hello of an old epoch, and a second backup while the first is alive
    for (const hello of [
      { type: "hello" as const, epoch: 7, nodeId: "intruder", have: 0 },
      { type: "hello" as const, epoch: 1, nodeId: "intruder", have: 0 },
    ]) {
      const ws = (await open("/peer")) as WebSocket;
      const done = closed(ws);
      ws.send(encodePeerMessage(hello));
      expect(await done).toBe(4003);
    }
    for (const f of [new Uint8Array([1, 2, 3]), packr.pack({ v: 1, type: "input", seq: -1, data: "x" })]) {
      const ws = (await open("/console")) as WebSocket;
      const done = closed(ws);
      ws.send(f);
      expect(await done).toBe(1008);
    }
    await new Promise((r) => setTimeout(r, 500));
    const s = await a.status();
    expect(s).toMatchObject({ role: "primary", protected: true, backup: "B", epoch: 1 });
    expect((await b.status()).state).toBe("following");
    expect(a.stderr).toMatch(/peer frame rejected/);
    expect(a.stderr).toMatch(/LOCKSTEP_ERR_WIRE_VERSION/);
  });
});
