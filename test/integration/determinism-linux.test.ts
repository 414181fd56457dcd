// Linux booting and running a scripted shell session (serial commands, sleep 2, date, a file
// written and read back on the disk, a CPU-bound loop), recorded live by `lockstep record`, replays
// with every digest verified and byte-identical serial output: in a separate process (the CLI) and
// in this one.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { runCli } from "../support/cli.js";
import { readRecording, replayEntries, scratch } from "../support/record-replay.js";

const log = join(scratch, "linux-session.lslog");
let recordedOut = "";

describe("deterministic record and replay: linux", () => {
  beforeAll(() => {
    const r = runCli(
      ["record", "--image", "linux", "--out", log, "--force", "--digest-every", "500", "--input", join(packageRoot(), "test/fixtures/linux-session.script")],
      { timeoutMs: 240_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    recordedOut = r.stdout;
  }, 300_000);

  it("recorded the whole session", () => {
    for (const step of ["step-1", "step-2", "step-3", "step-4", "loop 20000", "step-6"]) expect(recordedOut).toContain(step);
    expect(recordedOut).toMatch(/^500\r?$/m);
  });

  it("replays in a separate process with byte-identical serial output", () => {
    const r = runCli(["replay", log], { timeoutMs: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(recordedOut);
    expect(r.stderr).toMatch(/\d+ digests verified/);
  });

  it("reports a JSON summary: complete, every digest checked", () => {
    const r = runCli(["replay", "--json", log], { timeoutMs: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    const { entries } = readRecording(log);
    expect(s).toMatchObject({ end: "power-off", complete: true, truncatedAtOffset: null });
    expect(s.digestsChecked).toBe(entries.filter((e) => e.kind === "digest").length);
    expect(s.digestsChecked).toBeGreaterThan(2);
    expect(s.instructions).toBeGreaterThan(100_000_000);
    expect(s.serialBytes).toBe(Buffer.byteLength(recordedOut));
  });

  it("replays in this process with identical digests", async () => {
    const { header, entries } = readRecording(log);
    const r = await replayEntries(header, entries);
    expect(r.summary.end).toBe("power-off");
    expect(r.serial).toBe(recordedOut);
  });

  it("`--until` stops at a slice, and log dump lists every entry", () => {
    const r = runCli(["replay", "--json", "--until", "1000", log]);
    expect(JSON.parse(r.stdout)).toMatchObject({ end: "until", slices: 1000 });
    const dump = runCli(["log", "dump", log]);
    expect(dump.status).toBe(0);
    const lines = dump.stdout.trim().split("\n").filter((l) => !l.startsWith("#"));
    expect(lines.length).toBe(readRecording(log).entries.length);
    expect(dump.stdout).toMatch(/serial "uname -a; echo 'step'-1\\r"/);
    expect(readFileSync(log).subarray(0, 8).toString()).toBe("LOCKSTEP");
  });
});
