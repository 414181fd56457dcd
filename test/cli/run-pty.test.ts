// `lockstep run --image linux` on a real pseudo-terminal: the prompt shows, `uname -a` answers,
// the escape key quits cleanly and the disk given with --disk is written back.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { packageRoot } from "../../emulator/package-root.js";
import { cliPath } from "../support/cli.js";
import { TmuxSession } from "../support/tmux.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-pty-test-"));
const sessions: TmuxSession[] = [];
afterAll(() => {
  for (const s of sessions) s.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe("lockstep run on a terminal", () => {
  it("shows the prompt, answers uname -a, quits on Ctrl-] and flushes the disk", async () => {
    const disk = join(dir, "disk.ext2");
    writeDiskFile(disk, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
    const t = new TmuxSession([process.execPath, cliPath, "run", "--image", "linux", "--disk", disk], {
      cwd: packageRoot(),
      env: { LOCKSTEP_LOG_LEVEL: "warn" },
    });
    sessions.push(t);
    await t.waitFor((s) => /lockstep:\/root# /.test(s), 90_000, "the shell prompt");
    t.type("uname -a; echo pty-file > /mnt/pty.txt; sync\r");
    const screen = await t.waitFor((s) => /Linux lockstep 6\.1\.\d+ .*i[3-6]86/.test(s), 30_000, "uname output");
    expect(screen).toMatch(/Linux lockstep 6\.1\.\d+/);
    await t.waitFor((s) => (s.match(/lockstep:\/root# /g) ?? []).length >= 2, 30_000, "the next prompt");
    t.key("C-]");
    await t.waitFor(() => t.exitStatus() !== undefined, 30_000, "lockstep to exit");
    expect(t.exitStatus()).toBe(0);
    // the file written in the guest is in the flushed disk image
    expect(Buffer.from(readDiskFile(disk)).includes(Buffer.from("pty-file\n"))).toBe(true);
  });
});
