// NodeProcess with a real node: it learns the port the OS picked, reads /status, runs pinned with
// taskset when given CPUs (the node itself, not a wrapper, holds the pid), and reports a SIGKILL
// as an exit that rejects events still awaited.
import { mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NodeProcess } from "../../ft/runtime/node-process.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-node-process-test-"));
const nodes: NodeProcess[] = [];
afterAll(async () => {
  for (const n of nodes) n.kill("SIGKILL");
  await Promise.all(nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
  rmSync(dir, { recursive: true, force: true });
});

describe("NodeProcess", () => {
  it("starts a pinned primary on a free port, reads its status, and sees it die", async () => {
    const a = await NodeProcess.start({ role: "primary", name: "A", sharedDir: dir, token: "node-process-test", args: ["--image", "tiny"], cpus: "0" });
    nodes.push(a);
    expect(a.port).toBeGreaterThan(0);
    expect(a.url).toBe(`ws://127.0.0.1:${a.port}`);
    expect(a.events[0]).toMatchObject({ event: "listening", role: "primary", nodeId: "A", port: a.port });
    expect(await a.status()).toMatchObject({ role: "primary", epoch: 1 });
    expect(readlinkSync(`/proc/${a.pid}/exe`)).toBe(realpathSync(process.execPath));
    expect(readFileSync(`/proc/${a.pid}/status`, "utf8")).toMatch(/^Cpus_allowed_list:\s+0$/m);
    const never = a.waitEvent("live", 60_000);
    a.kill("SIGKILL");
    expect(await a.waitExit()).toBeNull();
    expect(a.running).toBe(false);
    await expect(never).rejects.toThrow(/node A exited \(SIGKILL\) before "live"/);
  });
});
