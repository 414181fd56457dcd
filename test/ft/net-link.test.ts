// The host link against a stand-in for passt (a UNIX socket speaking qemu's stream framing): frames
// both ways, a frame over the MTU from the host dropped and counted (LOCKSTEP_ERR_NET_FRAME), and a
// link whose passt goes away: logged, frames dropped meanwhile, reconnected when it is back.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { makeNetLink } from "../../ft/runtime/open-net-link.js";
import { withoutPadding } from "../../ft/runtime/passt-link.js";
import { until } from "../../ft/runtime/until.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-net-link-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const framed = (f: Uint8Array) => {
  const b = Buffer.alloc(4 + f.length);
  b.writeUInt32BE(f.length);
  b.set(f, 4);
  return b;
};

/** A fake passt: accepts one client, records the frames it gets. */
function fakePasst(path: string): Promise<{ server: Server; clients: Socket[]; got: Uint8Array[] }> {
  const clients: Socket[] = [];
  const got: Uint8Array[] = [];
  const server = createServer((s) => {
    clients.push(s);
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        const n = buf.readUInt32BE(0);
        got.push(new Uint8Array(buf.subarray(4, 4 + n)));
        buf = buf.subarray(4 + n);
      }
    });
    s.on("error", () => {});
  });
  return new Promise((resolve) => server.listen(path, () => resolve({ server, clients, got })));
}

describe("the host link (passt framing)", () => {
  it("carries frames both ways, drops frames over the MTU, and survives passt going away", async () => {
    const path = join(dir, "passt.sock");
    let fake = await fakePasst(path);
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const received: Uint8Array[] = [];
    const link = makeNetLink({ mode: "passt", path }, { logger, onFrames: (f) => received.push(...f) })!;
    link.start();
    await until(() => link.up && fake.clients.length === 1, 5000, "the link up");

    // out: a padded IPv4 frame leaves trimmed to its IP length (passt counts padding as payload)
    const ip = new Uint8Array(60);
    ip.set([0x08, 0x00], 12);
    ip.set([0x45, 0, 0, 40], 14); // 40 bytes of IP: a bare TCP segment
    link.send([ip, new Uint8Array(60).fill(1)]);
    await until(() => fake.got.length === 2, 5000, "frames at passt");
    expect(fake.got[0]!.length).toBe(54);
    expect(fake.got[1]!.length).toBe(60);
    expect(withoutPadding(ip).length).toBe(54);

    // in: whole frames in one chunk and split across chunks; one over the MTU is dropped
    const a = new Uint8Array(100).fill(2);
    const big = new Uint8Array(1600).fill(3);
    const b = new Uint8Array(1518).fill(4);
    const bytes = Buffer.concat([framed(a), framed(big), framed(b)]);
    fake.clients[0]!.write(bytes.subarray(0, 50));
    await new Promise((r) => setTimeout(r, 50));
    fake.clients[0]!.write(bytes.subarray(50));
    await until(() => received.length === 2, 5000, "frames from passt");
    expect(received.map((f) => f.length)).toEqual([100, 1518]);
    expect(link.counters.droppedSize).toBe(1);
    expect(lines.some((l) => l.code === "LOCKSTEP_ERR_NET_FRAME" && l.bytes === 1600)).toBe(true);

    // passt goes away: logged, frames dropped (counted), the guest side never waits
    fake.clients[0]!.destroy();
    await new Promise<void>((r) => fake.server.close(() => r()));
    await until(() => !link.up, 5000, "the link down");
    link.send([new Uint8Array(60)]);
    expect(link.counters.droppedDown).toBe(1);
    expect(lines.some((l) => typeof l.msg === "string" && l.msg.startsWith("network link down"))).toBe(true);
    // ... and comes back: the link reconnects by itself
    rmSync(path, { force: true });
    fake = await fakePasst(path);
    await until(() => link.up && fake.clients.length === 1, 10_000, "the link up again");
    // it counts as back once it has stayed up a second
    await until(() => link.counters.reconnects === 1, 5000, "the reconnect counted");
    link.send([new Uint8Array(60).fill(5)]);
    await until(() => fake.got.length === 1, 5000, "a frame after the reconnect");
    // closing twice (a node halts, then shuts down) is one close
    await Promise.all([link.close(), link.close()]);
    await new Promise<void>((r) => fake.server.close(() => r()));
  });

  it("a passt that takes the connection and drops it at once (another client holds it) is one outage, retried with backoff", async () => {
    const path = join(dir, "busy.sock");
    let accepted = 0;
    const server = createServer((s) => {
      accepted++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(path, () => r()));
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const link = makeNetLink({ mode: "passt", path }, { logger, onFrames: () => {} })!;
    link.start();
    await new Promise((r) => setTimeout(r, 2500));
    await link.close();
    await new Promise<void>((r) => server.close(() => r()));
    // backoff 100, 200, 400, 800 ms ...: a handful of attempts, not one every 100 ms
    expect(accepted).toBeGreaterThanOrEqual(3);
    expect(accepted).toBeLessThanOrEqual(7);
    expect(lines.filter((l) => typeof l.msg === "string" && l.msg.startsWith("network link down")).length).toBe(1);
    expect(link.counters.reconnects).toBe(0);
  });
});
