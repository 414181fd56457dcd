// `npm start` (lockstep demo) on a real terminal: the linux guest's prompt shows, a command answers,
// Ctrl-] k SIGKILLs the primary, the status line reports the takeover, and the shell still answers;
// quitting while a new backup is starting stops it too and the demo exits by itself (it used to wait
// on that backup for ever, or leave it running).
import { spawnSync } from "node:child_process";
import { afterAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { cliPath } from "../support/cli.js";
import { TmuxSession } from "../support/tmux.js";

const sessions: TmuxSession[] = [];
/** Node processes of any demo (their arbiter directory is a lockstep-demo- one). */
const demoNodes = (): number[] => {
  const r = spawnSync("pgrep", ["-f", "--shared-dir [^ ]*lockstep-demo-"], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean).map(Number);
};
afterAll(() => sessions.forEach((s) => s.kill()));

describe("lockstep demo on a terminal", () => {
  it("boots, survives a SIGKILL of the primary, and quits cleanly", async () => {
    const before = new Set(demoNodes());
    const t = new TmuxSession([process.execPath, cliPath, "demo"], { cwd: packageRoot(), env: { LOCKSTEP_LOG_LEVEL: "warn" } });
    sessions.push(t);
    await t.waitFor((s) => /lockstep:\/root# /.test(s), 90_000, "the shell prompt");
    t.type("echo before''-kill\r");
    await t.waitFor((s) => s.includes("before-kill\n") || /before-kill\s*$/m.test(s), 20_000, "the first answer");
    // a backup still catching up cannot take over (it halts): kill only once the pair is protected
    await t.waitFor((s) => /primary A \(epoch 1\): protected by B/.test(s), 60_000, "protection by B");
    t.key("C-]");
    t.type("k");
    const screen = await t.waitFor((s) => /took over as primary \(epoch 2\) \d+ ms after the kill/.test(s), 20_000, "the takeover line");
    expect(screen).toMatch(/killed primary A/);
    t.type("echo after''-failover\r");
    await t.waitFor((s) => /^after-failover\s*$/m.test(s), 30_000, "an answer from the new primary");
    // a fresh backup joins the new primary from power-on; once it has caught up, kill again
    await t.waitFor((s) => /primary B \(epoch 2\): protected by C/.test(s), 60_000, "re-protection by C");
    t.key("C-]");
    t.type("k");
    await t.waitFor((s) => /backup C took over as primary \(epoch 3\)/.test(s), 20_000, "the second takeover");
    t.type("echo second''-failover\r");
    await t.waitFor((s) => /^second-failover\s*$/m.test(s), 30_000, "an answer from the third primary");
    // quit while a new backup is starting: it is stopped too, and the demo exits by itself
    await t.waitFor((s) => /started backup D/.test(s), 60_000, "the third backup");
    t.key("C-]");
    t.type("b");
    await t.waitFor((s) => /killed backup D/.test(s), 10_000, "the backup killed");
    t.key("C-]");
    t.type("j");
    t.key("C-]");
    t.type("q");
    await t.waitFor(() => t.exitStatus() !== undefined, 20_000, "the demo to exit");
    expect(t.exitStatus()).toBe(0);
    expect(demoNodes().filter((pid) => !before.has(pid))).toEqual([]);
  });
});
