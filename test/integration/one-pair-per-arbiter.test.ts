// Both nodes of a pair must use the same arbiter, and one arbiter serves one pair, with real
// processes: a backup started with another --shared-dir than its primary (each would win epochs
// the other never sees: both could go live) is refused at hello and halts with the reason instead
// of dialing for ever; a second `lockstep primary` on the shared directory of a running pair (it
// would win the next epoch and run a second guest on the same disk) is refused with a stable code.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { NodeProcess } from "../../ft/runtime/node-process.js";
import { runCli } from "../support/cli.js";

const token = "one-pair-test-token";
const dirs = [0, 1].map(() => mkdtempSync(join(tmpdir(), "lockstep-one-pair-")));
const nodes: NodeProcess[] = [];
afterAll(async () => {
  for (const n of nodes) n.kill("SIGKILL");
  await Promise.all(nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("one pair per arbiter", () => {
  it("refuses a backup of another arbiter, and a second primary on a running pair's arbiter", async () => {
    const a = await NodeProcess.start({ role: "primary", name: "A", sharedDir: dirs[0]!, token, args: ["--image", "tiny"] });
    nodes.push(a);
    const b = await NodeProcess.start({ role: "backup", name: "B", sharedDir: dirs[1]!, token, args: ["--connect", a.url] });
    nodes.push(b);
    const halted = await b.waitEvent("halted", 30_000);
    expect(String(halted.reason)).toMatch(/refused this backup: another arbiter .*same --arbiter \(or --shared-dir\)/);
    expect((await a.status()).backup).toBeNull();

    const second = runCli(["primary", "--shared-dir", dirs[0]!, "--listen", "127.0.0.1:0", "--token", token, "--peer-token", `${token}-peer`, "--image", "tiny"], { timeoutMs: 30_000 });
    expect(second.status).not.toBe(0);
    expect(second.stderr).toMatch(/LOCKSTEP_ERR_PAIR_RUNNING: A lockstep pair is already running on this arbiter: A at http:\/\/127\.0\.0\.1:\d+ is its primary/);
    expect((await a.status()).epoch).toBe(1); // the running pair lost nothing to it
  }, 120_000);
});
