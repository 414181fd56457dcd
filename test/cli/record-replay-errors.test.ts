// A recorded log replays; damaged logs and logs for another machine are refused with a stable code
// naming what is wrong; --allow-truncated replays up to the last whole frame.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { runCli } from "../support/cli.js";
import { scratch } from "../support/record-replay.js";

const log = join(scratch, "tiny.lslog");
let recorded = "";

function variant(name: string, mutate: (b: Buffer) => Buffer): string {
  const path = join(scratch, name);
  writeFileSync(path, mutate(Buffer.from(readFileSync(log))));
  return path;
}

function expectError(args: string[], code: string, message?: RegExp) {
  const r = runCli(args);
  expect(r.status, r.stderr).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines.at(-1)).toContain(code);
  if (message) expect(lines.at(-1)).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe("lockstep record / replay / log dump", () => {
  beforeAll(() => {
    const r = runCli(["record", "--image", "tiny", "--out", log, "--force", "--digest-every", "10", "--input", join(packageRoot(), "test/fixtures/tiny-session.script")]);
    expect(r.status, r.stderr).toBe(0);
    recorded = r.stdout;
  });

  it("replays the recording with identical output", () => {
    const r = runCli(["replay", log]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(recorded);
    expect(recorded).toContain("kbd 9E");
  });

  it("refuses to overwrite a log without --force", () => {
    expectError(["record", "--image", "tiny", "--out", log, "--input", join(packageRoot(), "test/fixtures/tiny-session.script")], "LOCKSTEP_ERR_USAGE", /already exists/);
  });

  it("truncated log: a clear error with the offset, or a replay up to the last whole frame", () => {
    const cut = variant("cut.lslog", (b) => b.subarray(0, b.length - 5));
    expectError(["replay", cut], "LOCKSTEP_ERR_LOG_TRUNCATED", /truncated at offset \d+/);
    const r = runCli(["replay", "--json", "--allow-truncated", cut]);
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.complete).toBe(false);
    expect(s.truncatedAtOffset).toBeGreaterThan(0);
    expect(s.digestsChecked).toBeGreaterThan(0);
    const dump = runCli(["log", "dump", "--allow-truncated", cut]);
    expect(dump.stdout).toMatch(/# truncated at offset \d+/);
  });

  it("corrupted frame", () => {
    // flip a byte inside the payload of the third frame
    const bad = variant("bad.lslog", (b) => {
      let at = 20 + b.readUInt32BE(12);
      for (let i = 0; i < 2; i++) at += 8 + b.readUInt32BE(at);
      b[at + 9] = b[at + 9]! ^ 0xff;
      return b;
    });
    expectError(["replay", bad], "LOCKSTEP_ERR_LOG_CORRUPT", /corrupt at offset \d+/);
  });

  it("unknown format version", () => {
    const v = variant("v9.lslog", (b) => {
      b.writeUInt32BE(9, 8);
      return b;
    });
    expectError(["replay", v], "LOCKSTEP_ERR_LOG_VERSION", /format version 9/);
  });

  it("log made for another image or memory size; a disk to compare that cannot be this guest's", () => {
    expectError(["replay", "--image", "linux", log], "LOCKSTEP_ERR_LOG_MISMATCH", /machine kind/);
    const cfg = JSON.parse(readFileSync(join(packageRoot(), "disk-images/tiny/machine.json"), "utf8"));
    copyFileSync(join(packageRoot(), "disk-images/tiny/tiny.bin"), join(scratch, "tiny.bin"));
    cfg.memoryMiB = 64;
    writeFileSync(join(scratch, "tiny64.json"), JSON.stringify(cfg));
    expectError(["replay", "--image", join(scratch, "tiny64.json"), log], "LOCKSTEP_ERR_LOG_MISMATCH", /memory \(MiB\) is 32 in the log but 64 here/);
    // the same files under another config, at the log's memory size, are the same machine ...
    expect(runCli(["replay", "--json", "--image", join(scratch, "tiny64.json"), "--memory", "32", log]).status).toBe(0);
    // replay needs no disk, but a disk given to compare with must be the guest's size
    writeFileSync(join(scratch, "big.img"), Buffer.alloc(2 << 20, 1));
    expectError(["replay", "--disk", join(scratch, "big.img"), log], "LOCKSTEP_ERR_DISK_MISMATCH", /has 2097152 bytes; the recorded guest's disk had 1048576/);
    // ... and hold what the guest wrote (the recording wrote sector 2)
    writeFileSync(join(scratch, "other.img"), Buffer.alloc(1 << 20, 1));
    expectError(["replay", "--disk", join(scratch, "other.img"), log], "LOCKSTEP_ERR_DISK_MISMATCH", /differs from what the replayed guest wrote: 1 of 1 written sectors, the first is sector 2/);
    expectError(["replay", "--disk", join(scratch, "absent.img"), log], "LOCKSTEP_ERR_DISK_UNREADABLE", /absent.img cannot be read: ENOENT/);
  });

  it("missing log, not a log", () => {
    expectError(["replay", join(scratch, "absent.lslog")], "LOCKSTEP_ERR_LOG_MISSING");
    writeFileSync(join(scratch, "text.lslog"), "just some text\n");
    expectError(["replay", join(scratch, "text.lslog")], "LOCKSTEP_ERR_LOG_CORRUPT", /not a lockstep log/);
  });

  it("bad input scripts", () => {
    writeFileSync(join(scratch, "bad.script"), 'wait "tiny> "\nfrobnicate 3\n');
    expectError(["record", "--image", "tiny", "--out", join(scratch, "x.lslog"), "--force", "--input", join(scratch, "bad.script")], "LOCKSTEP_ERR_INPUT_SCRIPT", /line 2: unknown step "frobnicate"/);
    writeFileSync(join(scratch, "slow.script"), 'wait "never printed" 0.5\n');
    expectError(["record", "--image", "tiny", "--out", join(scratch, "y.lslog"), "--force", "--input", join(scratch, "slow.script")], "LOCKSTEP_ERR_INPUT_SCRIPT", /did not print "never printed" within 0.5 s/);
    // the log of a failed script is still a valid (complete) recording
    expect(runCli(["replay", "--json", join(scratch, "y.lslog")]).status).toBe(0);
  });
});
