// Machine configs: bundled names resolve, and every kind of bad input is a LockstepError with a
// stable code that names what is wrong.
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { bundledImageNames, loadMachine, validateConfig } from "../../emulator/machine-config.js";
import { bundledImagesDir } from "../../emulator/package-root.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-config-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof LockstepError) return e.code;
    throw e;
  }
  throw new Error("expected a LockstepError");
}

/** A copy of the tiny config in a scratch folder, with its kernel beside it. */
function tinyCopy(mutate: (config: any) => void = () => {}): string {
  const config = JSON.parse(readFileSync(join(bundledImagesDir(), "tiny", "machine.json"), "utf8"));
  copyFileSync(join(bundledImagesDir(), "tiny", "tiny.bin"), join(dir, "tiny.bin"));
  mutate(config);
  const path = join(dir, `tiny-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

describe("machine configs", () => {
  it("lists and loads the bundled guests with verified files", () => {
    expect(bundledImageNames()).toEqual(["linux", "tiny", "vga"]);
    const linux = loadMachine("linux");
    expect(linux.config.kind).toBe("linux");
    expect(linux.files.bzimage!.byteLength).toBeGreaterThan(1_000_000);
    expect(loadMachine("tiny").files.multiboot!.byteLength).toBeGreaterThan(1000);
  });

  it("loads a config from a path", () => {
    expect(loadMachine(tinyCopy()).config.name).toBe("tiny");
  });

  it("rejects an unknown image", () => {
    expect(codeOf(() => loadMachine("nosuch"))).toBe(ErrorCode.imageUnknown);
  });

  it("rejects a missing config file and a missing image file", () => {
    expect(codeOf(() => loadMachine(join(dir, "absent.json")))).toBe(ErrorCode.imageMissing);
    const path = tinyCopy((c) => (c.files.multiboot.path = "absent.bin"));
    expect(codeOf(() => loadMachine(path))).toBe(ErrorCode.imageMissing);
  });

  it("rejects an image file whose sha256 does not match", () => {
    const path = tinyCopy((c) => (c.files.multiboot.sha256 = "0".repeat(64)));
    expect(codeOf(() => loadMachine(path))).toBe(ErrorCode.imageCorrupt);
  });

  it("rejects memory too small for the initrd, with the size that would work", () => {
    try {
      loadMachine("linux", { memoryMiB: 64 });
      throw new Error("expected an error");
    } catch (e) {
      expect((e as LockstepError).code).toBe(ErrorCode.memoryTooSmall);
      expect((e as LockstepError).hint).toMatch(/--memory \d+/);
    }
  });

  it("rejects malformed configs naming the field", () => {
    expect(() => validateConfig({ name: "x", kind: "pdp11", memoryMiB: 1, files: {} }, "t")).toThrow(/"kind"/);
    expect(() => validateConfig({ name: "x", kind: "multiboot", memoryMiB: 0.5, files: {} }, "t")).toThrow(/"memoryMiB"/);
    expect(() => validateConfig({ name: "x", kind: "multiboot", memoryMiB: 8, files: {} }, "t")).toThrow(/files.multiboot/);
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ not json");
    expect(codeOf(() => loadMachine(bad))).toBe(ErrorCode.configInvalid);
  });
});
