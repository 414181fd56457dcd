// The linux guest boots to a shell, writes a file to its ext2 disk, and after a restart from the
// written disk file the file is there with the same checksum.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { GuestDriver } from "../support/guest-driver.js";

const prompt = /lockstep:\/\S*# /;
const dir = mkdtempSync(join(tmpdir(), "lockstep-linux-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a shell command and returns its output (between the echoed line and the end marker). */
function sh(g: GuestDriver, cmd: string): string {
  // The marker is quoted so that the echoed command line cannot match it.
  const out = g.command(`${cmd}; echo "@@""END@@"`, /\r\n@@END@@\r\n/);
  const lines = out.split(/\r\n/);
  return lines.slice(1, -2).join("\n").trim();
}

describe("linux guest", () => {
  it("boots to a shell, persists a file on its disk across a restart", async () => {
    const diskPath = join(dir, "disk.ext2");
    const g = await GuestDriver.boot({ image: "linux", disk: "fresh" });
    let sum: string;
    try {
      g.runUntil(prompt);
      expect(sh(g, "uname -sr")).toMatch(/^Linux 6\.1\.\d+$/);
      expect(sh(g, "mount | grep /mnt")).toMatch(/^\/dev\/sda on \/mnt type ext2/);
      sh(g, "seq 1 2000 > /mnt/numbers.txt; sync");
      sum = sh(g, "md5sum /mnt/numbers.txt | cut -d' ' -f1");
      expect(sum).toMatch(/^[0-9a-f]{32}$/);
      writeDiskFile(diskPath, g.disk!);
    } finally {
      g.close();
    }

    const g2 = await GuestDriver.boot({ image: "linux", disk: readDiskFile(diskPath) });
    try {
      g2.runUntil(prompt);
      expect(sh(g2, "md5sum /mnt/numbers.txt | cut -d' ' -f1")).toBe(sum);
      expect(sh(g2, "tail -n 1 /mnt/numbers.txt")).toBe("2000");
    } finally {
      g2.close();
    }
  });
});
