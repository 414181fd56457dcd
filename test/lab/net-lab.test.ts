// The test hosts themselves: namespaces on a bridge reach each other; a cut stops traffic both
// ways, a one-way cut only one way, isolation cuts a host from all others but not from the test;
// 100% loss drops everything; heal restores all; the delaying relay adds its delay to a round trip.
import { spawn, spawnSync } from "node:child_process";
import { createConnection, createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DelayRelay } from "../../ft/testing/delay-relay.js";
import { NetLab } from "../../ft/testing/net-lab.js";

let lab: NetLab;
const listeners: Array<{ kill: () => void }> = [];

/** Whether host `from` can open a TCP connection to host `to`'s port 9 listener (1 s). */
function reaches(from: string, to: string): boolean {
  const r = spawnSync("ip", ["netns", "exec", lab.host(from).netns, "timeout", "1", "bash", "-c", `exec 3<>/dev/tcp/${lab.host(to).ip}/9`]);
  return r.status === 0;
}

beforeAll(() => {
  if (!NetLab.available()) throw new Error("the lab tests need root, iproute2 and nftables (.ci/run installs them)");
  lab = NetLab.create(["a", "b", "s"]);
  for (const h of ["a", "b", "s"]) {
    const child = spawn("ip", ["netns", "exec", lab.host(h).netns, "socat", "TCP-LISTEN:9,fork,reuseaddr", "SYSTEM:true"], { stdio: "ignore" });
    listeners.push(child);
  }
  spawnSync("sleep", ["0.3"]);
});
afterAll(() => {
  for (const l of listeners) l.kill();
  lab?.destroy();
});

describe("NetLab", () => {
  it("cuts, one-way cuts, isolation, loss and heal", () => {
    expect(reaches("a", "b")).toBe(true);
    lab.cut("a", "b");
    expect(reaches("a", "b")).toBe(false);
    expect(reaches("b", "a")).toBe(false);
    expect(reaches("a", "s")).toBe(true);
    lab.heal();
    lab.cut("a", "b", { oneWay: true });
    expect(reaches("a", "b")).toBe(false); // a's SYN is dropped
    expect(reaches("b", "a")).toBe(false); // b's SYN arrives, a's SYN-ACK is dropped: one way is enough to break TCP
    lab.heal();
    lab.isolate("s");
    expect(reaches("a", "s")).toBe(false);
    expect(reaches("s", "b")).toBe(false);
    expect(reaches("a", "b")).toBe(true);
    lab.heal();
    lab.loss("b", 100);
    expect(reaches("a", "b")).toBe(false);
    lab.heal();
    expect(reaches("a", "b")).toBe(true);
    expect(reaches("s", "a")).toBe(true);
  });

  it("the relay delays a round trip by twice its one-way delay", async () => {
    const server = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const relay = new DelayRelay({ listenHost: "127.0.0.1", targetHost: "127.0.0.1", targetPort: (server.address() as { port: number }).port, delayMs: 20, jitterMs: 2 });
    const port = await relay.listen();
    const sock = createConnection(port, "127.0.0.1");
    await new Promise((r) => sock.once("connect", r));
    const rtts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      sock.write("x");
      await new Promise((r) => sock.once("data", r));
      rtts.push(performance.now() - t0);
    }
    sock.destroy();
    relay.close();
    server.close();
    expect(Math.min(...rtts)).toBeGreaterThanOrEqual(36);
  });
});
