// Bad input to the CLI: one line with a stable code on stderr, exit status 2, no stack trace.
import { chmodSync, copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bundledImagesDir } from "../../emulator/package-root.js";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-cli-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectOneLineError(args: string[], code: string) {
  const r = runCli(args);
  expect(r.status, r.stderr).toBe(2);
  const lines = r.stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(code);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
}

describe("lockstep run with bad input", () => {
  it("unknown image", () => expectOneLineError(["run", "--image", "nosuch"], "LOCKSTEP_ERR_IMAGE_UNKNOWN"));

  it("missing image file", () => {
    const config = JSON.parse(readFileSync(join(bundledImagesDir(), "tiny", "machine.json"), "utf8"));
    config.files.multiboot.path = join(dir, "gone.bin");
    writeFileSync(join(dir, "missing.json"), JSON.stringify(config));
    expectOneLineError(["run", "--image", join(dir, "missing.json")], "LOCKSTEP_ERR_IMAGE_MISSING");
  });

  it("corrupt image file (sha256 mismatch)", () => {
    const config = JSON.parse(readFileSync(join(bundledImagesDir(), "tiny", "machine.json"), "utf8"));
    const bin = join(dir, "tiny-corrupt.bin");
    copyFileSync(join(bundledImagesDir(), "tiny", "tiny.bin"), bin);
    const bytes = readFileSync(bin);
    bytes[100] = bytes[100]! ^ 0xff;
    writeFileSync(bin, bytes);
    config.files.multiboot.path = bin;
    writeFileSync(join(dir, "corrupt.json"), JSON.stringify(config));
    expectOneLineError(["run", "--image", join(dir, "corrupt.json")], "LOCKSTEP_ERR_IMAGE_CORRUPT");
  });

  it("memory too small for the initrd", () => expectOneLineError(["run", "--image", "linux", "--memory", "64"], "LOCKSTEP_ERR_MEMORY_TOO_SMALL"));

  it("unreadable disk: missing, a directory, not whole sectors, no permission", () => {
    expectOneLineError(["run", "--image", "tiny", "--disk", join(dir, "nodisk.img")], "LOCKSTEP_ERR_DISK_UNREADABLE");
    expectOneLineError(["run", "--image", "tiny", "--disk", dir], "LOCKSTEP_ERR_DISK_UNREADABLE");
    writeFileSync(join(dir, "odd.img"), Buffer.alloc(1000));
    expectOneLineError(["run", "--image", "tiny", "--disk", join(dir, "odd.img")], "LOCKSTEP_ERR_DISK_UNREADABLE");
    if (process.getuid?.() !== 0) {
      writeFileSync(join(dir, "locked.img"), Buffer.alloc(1024));
      chmodSync(join(dir, "locked.img"), 0);
      expectOneLineError(["run", "--image", "tiny", "--disk", join(dir, "locked.img")], "LOCKSTEP_ERR_DISK_UNREADABLE");
    }
  });

  it("bad flag values are usage errors, not crashes", () => {
    const r = runCli(["run", "--memory", "lots"]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain("--memory must be a positive integer");
    const t = runCli(["--wasm-tier", "fastest", "run", "--image", "tiny"]);
    expect(t.status).not.toBe(0);
    expect(t.stderr).toContain("Allowed choices are baseline, optimizing");
  });
});

describe("lockstep images", () => {
  it("lists the bundled guests with sizes and descriptions", () => {
    const r = runCli(["images"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^linux\s+linux\s+files\s+[\d.]+ MiB/m);
    expect(r.stdout).toMatch(/^tiny\s+multiboot/m);
    const json = JSON.parse(runCli(["images", "--json"]).stdout);
    expect(json.map((r: { name: string }) => r.name)).toEqual(["linux", "tiny", "vga"]);
  });
});
