// A recorded log replays; damaged logs and logs for another machine are refused with a stable code
// naming what is wrong; --allow-truncated replays up to the last whole frame.
import { createHash } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { packr } from "../../hypervisor/msgpack.js";
import { runCli } from "../support/cli.js";
import { scratch } from "../support/record-replay.js";

const log = join(scratch, "tiny.lslog");
let recorded = "";

function variant(name: string, mutate: (b: Buffer) => Buffer): string {
  const path = join(scratch, name);
  writeFileSync(path, mutate(Buffer.from(readFileSync(log))));
  return path;
}

/** Byte offsets of a log's frames (after the 20-byte prefix and the header). */
function frameOffsets(b: Buffer): number[] {
  const at: number[] = [];
  for (let o = 20 + b.readUInt32BE(12); o < b.length; o += 8 + b.readUInt32BE(o)) at.push(o);
  return at;
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

  it("replays a recording made with the JIT off the same way (the header says so)", () => {
    // linux: how many instructions a slice holds depends on the JIT (without the header saying so,
    // the replay ran the JIT and diverged at slice 73 of this session)
    const noJit = join(scratch, "linux-no-jit.lslog");
    const script = join(scratch, "linux-short.script");
    writeFileSync(script, 'wait "lockstep:/root# " 300\nsendline "echo done-$((1+1))"\nwait "done-2"\n');
    const r = runCli(["record", "--image", "linux", "--no-jit", "--fast", "--out", noJit, "--force", "--digest-every", "100", "--input", script]);
    expect(r.status, r.stderr).toBe(0);
    const replay = runCli(["replay", "--json", noJit]);
    expect(replay.status, replay.stderr).toBe(0);
    const report = JSON.parse(replay.stdout) as { end: string; slices: number; digestsChecked: number; serialSha256: string };
    expect(report.end).toBe("power-off");
    expect(report.slices).toBeGreaterThan(500);
    expect(report.digestsChecked).toBeGreaterThan(5);
    expect(report.serialSha256).toBe(createHash("sha256").update(r.stdout).digest("hex"));
    expect(runCli(["log", "dump", noJit]).stdout).toMatch(/^# clock .*; JIT off$/m);
  }, 120_000);

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

  it("a log that ends without power-off exits 2 saying where it ends (it replayed and exited 0), unless --allow-truncated", () => {
    // cut at a frame boundary before the final digest and power-off: every frame is whole
    const cut = variant("no-power-off.lslog", (b) => b.subarray(0, frameOffsets(b).at(-2)));
    expectError(["replay", cut], "LOCKSTEP_ERR_LOG_TRUNCATED", /ends at slice \d+ without power-off: cut short\? .*\(pass --allow-truncated to replay what is there\)$/);
    const r = runCli(["replay", "--json", "--allow-truncated", cut]);
    expect(r.status, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.complete).toBe(false);
    expect(s.end).toBe("end-of-log");
    expect(s.truncatedAtOffset).toBeNull();
    expect(runCli(["log", "dump", cut]).stdout).toMatch(/# ends at slice \d+ without power-off \(cut short\)\n$/);
    expect(runCli(["replay", "--help"]).stdout).toMatch(/--allow-truncated\s+replay a log that ends without power-off/);
  });

  it("a crafted log header exits 2 naming the field (replay and log dump crashed with a TypeError, exit 1)", () => {
    const crafted = variant("crafted-header.lslog", (b) => {
      const header = packr.unpack(b.subarray(20, 20 + b.readUInt32BE(12))) as { machine: { files: unknown } };
      header.machine.files = null;
      const body = packr.pack(header);
      const prefix = Buffer.from(b.subarray(0, 20));
      prefix.writeUInt32BE(body.length, 12);
      prefix.writeUInt32BE(crc32(body), 16);
      return Buffer.concat([prefix, body, b.subarray(20 + b.readUInt32BE(12))]);
    });
    expectError(["replay", crafted], "LOCKSTEP_ERR_LOG_CORRUPT", /has a malformed header: machine\.files must be a map, not null/);
    expectError(["log", "dump", crafted], "LOCKSTEP_ERR_LOG_CORRUPT", /has a malformed header: machine\.files must be a map, not null/);
  });

  it("a log entry far beyond the digest cadence exits 2 with its offset (replay ran for ever)", () => {
    const far = variant("far-slice.lslog", (b) => {
      // the first frame moved to slice 10^15 (its count and checksum made to fit)
      const at = frameOffsets(b)[0]!;
      const entry = packr.unpack(b.subarray(at + 8, at + 8 + b.readUInt32BE(at))) as unknown[];
      entry[1] = 10 ** 15;
      const payload = packr.pack(entry);
      const head = Buffer.alloc(8);
      head.writeUInt32BE(payload.length, 0);
      head.writeUInt32BE(crc32(payload), 4);
      return Buffer.concat([b.subarray(0, at), head, payload, b.subarray(at + 8 + b.readUInt32BE(at))]);
    });
    const r = runCli(["replay", "--allow-truncated", far], { timeoutMs: 60_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr.trim().split("\n").at(-1)).toMatch(/LOCKSTEP_ERR_LOG_CORRUPT: Log .* is corrupt at offset \d+: entry 0 \(\w+, slice 1000000000000000\) is 1000000000000000 slices after power-on; the recorder logs a digest every 10 slices/);
  });

  it("--digest-every beyond what a reader accepts is refused when recording (the log could not be replayed)", () => {
    const r = runCli(["record", "--image", "tiny", "--out", join(scratch, "rare.lslog"), "--force", "--digest-every", "100001"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("--digest-every must be at most 100000");
  });
});
