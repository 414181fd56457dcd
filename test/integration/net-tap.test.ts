// Bridged networking (--net tap:NAME) under fault tolerance, in a network namespace the test makes
// (`unshare -rn`): nothing touches the host's network. scripts/net-tap-check.ts does the work (a
// bridge, a TAP device per node, a client on the namespace's own Linux TCP that only reads the
// guest's numbered lines, a SIGKILL of the primary) and reports; here its report is checked.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";

describe("bridged networking", () => {
  it("a stream only the guest sends and an HTTP loop go on through a takeover; the bridge moves the guest's MAC to the new primary's TAP", () => {
    const script = join(packageRoot(), "dist", "scripts", "net-tap-check.js");
    const r = spawnSync("unshare", ["-rn", process.execPath, script], { encoding: "utf8", timeout: 240_000, env: { ...process.env, LOCKSTEP_LOG_LEVEL: "info" } });
    if (r.error) throw new Error(`unshare (util-linux) is needed: ${r.error.message}`);
    const line = r.stdout.trim().split("\n").at(-1) ?? "";
    expect(line, `stdout: ${r.stdout}\nstderr: ${r.stderr.slice(-3000)}`).toMatch(/^\{/);
    const report = JSON.parse(line) as { numbers: number; inOrder: boolean; reset: boolean; macPortBefore: string; macPortAfter: string; takeoverAt: number; requests: number; answeredInOrder: boolean; failures: string[] };
    console.log(`tap: ${report.numbers} numbers and ${report.requests} requests, the primary killed at ${report.takeoverAt}`);
    // every HTTP request answered, the guest's counts 1..N: none lost, none applied twice
    expect(report.failures).toEqual([]);
    expect(report.answeredInOrder).toBe(true);
    expect(report.requests).toBeGreaterThan(3);
    expect(report.inOrder).toBe(true);
    expect(report.reset).toBe(false);
    expect(report.numbers).toBeGreaterThanOrEqual(report.takeoverAt + 30);
    expect(report.macPortBefore).toBe("tapA");
    expect(report.macPortAfter).toBe("tapB");
    expect(r.status).toBe(0);
  }, 300_000);
});
